"""Tools: interface validation and normalisation; the implementation must match the interface."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from engine.config import Synthesis
from engine.errors import ReplyError
from engine.stages.synthesis import build_task_stages, task_item
from engine.stages.synthesis.tool import ToolRecord, implementation, interface

IFACE = {
    "name": "plan_hive_inspection",
    "description": "Plans the next hive inspection from the weather and the colony's state.",
    "parameters": {"type": "object", "properties": {
        "hive_id": {"type": "string", "description": "The hive's label."},
        "days_ahead": {"type": "integer", "description": "How far ahead to look."},
        "checks": {"type": "array", "items": {"type": "string"}, "description": "What to check."}},
        "required": ["hive_id"]},
    "returns": {"type": "object", "description": "The date and a checklist."},
    "dependencies": ["weather_api"],
}
GOOD = '''Here you go:
```python
import datetime

def plan_hive_inspection(hive_id: str, days_ahead: int = 7, checks: list | None = None) -> dict:
    """Plan it."""
    return {"hive": hive_id, "date": str(datetime.date.today() + datetime.timedelta(days=days_ahead))}
```
'''


def _stages(**tool: Any) -> dict[str, Any]:
    cfg = msgspec.convert({"tasks": ["tool"], "mode": "zero_shot", "tool": tool}, Synthesis)
    return build_task_stages(cfg, model="gen", solver_model="gen", solver_endpoint="ep", endpoint="ep",
                             structured=True, demo_personas={})


def test_interface_then_implementation(kit: SimpleNamespace) -> None:
    stages = _stages()
    out = stages["tool"].parse(task_item("tool", kit.persona), kit.reply(json.dumps(IFACE)))
    assert out.records == []
    [impl] = out.follow
    assert impl.stage == "tool.implement" and impl.payload["interface"] == IFACE
    req = stages["tool.implement"].request(impl)
    ask = req.messages[-1].content
    assert "plan_hive_inspection(hive_id, days_ahead=..., checks=...)" in ask and '"weather_api"' in ask
    assert req.response_format is None
    [(sink, rec)] = stages["tool.implement"].parse(impl, kit.reply(GOOD)).records
    assert sink == "tool" and isinstance(rec, ToolRecord)
    assert rec.name == IFACE["name"] and rec.parameters == IFACE["parameters"] and rec.dependencies == ["weather_api"]
    assert rec.returns == IFACE["returns"]
    assert rec.implementation is not None and rec.implementation.startswith("import datetime")
    assert rec.usage.total_tokens == 30 and rec.constraints == {} and rec.task == "tool"


def test_without_implement_the_interface_is_the_record(kit: SimpleNamespace) -> None:
    out = _stages(implement=False)["tool"].parse(task_item("tool", kit.persona), kit.reply(json.dumps(IFACE)))
    assert out.follow == []
    assert out.records[0][1].implementation is None


def test_interface_is_normalised(kit: SimpleNamespace) -> None:
    raw = json.dumps({
        "name": "planHiveInspection", "description": "  Plans.  ",
        "parameters": [{"name": "hive_id", "type": "str", "required": True},
                       {"name": "weights", "type": ["array", "null"], "items": "float", "default": [1, "x"]},
                       {"name": "mode", "type": "string", "enum": ["quick", "full"]},
                       {"name": "level", "type": "int", "enum": [1, 2]}],
        "returns": "dict"})
    iface = interface(json.loads(raw), raw)
    assert iface["name"] == "plan_hive_inspection" and iface["description"] == "Plans."
    props = iface["parameters"]["properties"]
    assert props == {"hive_id": {"type": "string", "description": ""},
                     "weights": {"type": "array", "description": "", "items": {"type": "number"}},
                     "mode": {"type": "string", "description": "", "enum": ["quick", "full"]},
                     "level": {"type": "integer", "description": ""}}  # only string enums are kept
    assert iface["parameters"]["required"] == ["hive_id"]
    assert iface["returns"] == {"type": "object", "description": ""} and iface["dependencies"] == []


BAD_INTERFACES = [
    ({**IFACE, "name": "2fast"}, "snake_case"),
    ({**IFACE, "name": "class"}, "snake_case"),
    ({**IFACE, "description": ""}, "description"),
    ({**IFACE, "parameters": {"properties": {"hive id": {"type": "string"}}}}, "identifier"),
    ({**IFACE, "parameters": {"properties": {"x": {"type": "thing"}}}}, "type"),
    ({**IFACE, "parameters": {"properties": {"x": {"type": "string"}}, "required": ["y"]}}, "required"),
    ({**IFACE, "parameters": "hive_id"}, "parameters"),
    ({**IFACE, "returns": {"description": "something"}}, "returns"),
    ({**IFACE, "dependencies": {"a": 1}}, "dependencies"),
]


@pytest.mark.parametrize(("doc", "match"), BAD_INTERFACES)
def test_bad_interfaces(doc: dict[str, Any], match: str, kit: SimpleNamespace) -> None:
    with pytest.raises(ReplyError, match=match) as e:
        _stages()["tool"].parse(task_item("tool", kit.persona), kit.reply(json.dumps(doc)))
    assert e.value.raw == json.dumps(doc)


MISMATCHES = [
    ("def plan_inspection(hive_id, days_ahead=7, checks=None):\n    pass", "no top-level function"),
    ("def plan_hive_inspection(hive_id, days=7, checks=None):\n    pass", "does not match"),
    ("def plan_hive_inspection(hive_id, days_ahead=7):\n    pass", "does not match"),
    ("def plan_hive_inspection(hive_id, days_ahead, checks=None):\n    pass", "default"),
    ("def plan_hive_inspection(hive_id, /, days_ahead=7, checks=None):\n    pass", "positional-only"),
    ("def plan_hive_inspection(hive_id, days_ahead=7, checks=None, *args):\n    pass", r"\*args"),
    ("def plan_hive_inspection(hive_id, days_ahead=7, checks=None, **extra):\n    pass", r"\*\*kwargs"),
    ("def plan_hive_inspection(hive_id, days_ahead=7, checks=None)\n    pass", "does not parse"),
    ("class X:\n    def plan_hive_inspection(self, hive_id, days_ahead=7, checks=None):\n        pass", "top-level"),
    ("I cannot write code.", "does not parse"),
]


@pytest.mark.parametrize(("code", "match"), MISMATCHES)
def test_implementation_mismatch_is_a_reply_error(code: str, match: str, kit: SimpleNamespace) -> None:
    stages = _stages()
    impl = stages["tool"].parse(task_item("tool", kit.persona), kit.reply(json.dumps(IFACE))).follow[0]
    reply = f"```python\n{code}\n```" if "cannot" not in code else code
    with pytest.raises(ReplyError, match=match) as e:
        stages["tool.implement"].parse(impl, kit.reply(reply))
    assert e.value.raw == reply


def test_implementation_forms() -> None:
    iface = interface(IFACE, "")
    bare = "async def plan_hive_inspection(*, hive_id, checks=None, days_ahead=1):\n    return {}\n"
    assert implementation(bare, iface) == bare.strip()  # no fence: the whole reply
    cut = "```py\ndef plan_hive_inspection(hive_id, days_ahead=7, checks=None):\n    return 1\n"
    assert implementation(cut, iface).endswith("return 1")  # a reply cut off before the closing fence
    two = "```python\nprint('usage')\n```\nand\n```python\n" + GOOD.split("```python\n")[1]
    assert implementation(two, iface).startswith("import datetime")  # the block that implements it
