"""Text-to-Persona: the prompt it sends and the replies it accepts or refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import prompts
from engine.client.protocol import ChatReply, Usage
from engine.config import TextToPersona as Settings
from engine.errors import ConfigError, ReplyError
from engine.ids import content_id
from engine.stages.text_to_persona import SCHEMA, TextToPersona

TEXT = "Attention mechanisms let a transformer weigh tokens; {braces} and {text} stay literal."


def _stage(**kw: object) -> TextToPersona:
    return TextToPersona(Settings(**kw), model="m-1")  # type: ignore[arg-type]


def _item() -> object:
    return TextToPersona.item("src-1", TEXT, 0)


USAGE = Usage(10, 5, 15)


def _reply(content: str, usage: Usage | None = USAGE) -> ChatReply:
    return ChatReply(
        content=content, model="served-model", usage=usage, finish_reason="stop", latency=0.01
    )


# ---- request ------------------------------------------------------------------------------------


@pytest.mark.parametrize("relation", ["read", "write", "like", "dislike"])
@pytest.mark.parametrize("granularity", ["fine", "coarse"])
def test_request_renders_fragments(relation: str, granularity: str) -> None:
    tpl = prompts.load("text_to_persona")
    stage = _stage(relation=relation, granularity=granularity, format="json")
    req = stage.request(_item())
    n = len(tpl.examples)
    assert n >= 1  # the packaged template ships demonstrations
    assert [m.role for m in req.messages] == ["system", *["user", "assistant"] * n, "user"]
    user = req.messages[-1].content
    assert user is not None
    assert not any(TEXT in (m.content or "") for m in req.messages[:-1])  # only the last turn
    assert TEXT in user  # the text verbatim: braces in it are not treated as placeholders
    assert tpl.fragments["relation"][relation] in user
    assert tpl.fragments["granularity"][granularity] in user
    assert tpl.fragments["format"]["json"] in user
    others = [v for k, v in tpl.fragments["relation"].items() if k != relation]
    assert not any(o in user for o in others)
    for name in ("{text}", "{relation}", "{granularity}", "{format}"):
        assert name not in user.replace(TEXT, "")  # every placeholder filled
    assert req.model == "m-1"


def _demos(req: object) -> list[tuple[str, str]]:
    """(user, assistant) demonstration pairs between the system message and the last user turn."""
    msgs = req.messages[1:-1]  # type: ignore[attr-defined]
    assert [m.role for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
    return [(u.content or "", a.content or "") for u, a in zip(msgs[::2], msgs[1::2], strict=True)]


@pytest.mark.parametrize("structured", [True, False])
@pytest.mark.parametrize("granularity", ["fine", "coarse"])
def test_json_demonstrations_are_valid_json(granularity: str, structured: bool) -> None:
    tpl = prompts.load("text_to_persona")
    settings = Settings(format="json", granularity=granularity)
    stage = TextToPersona(settings, model="m", structured=structured)
    req = stage.request(_item())
    demos = _demos(req)
    assert len(demos) == len(tpl.examples) >= 1
    for (user, answer), ex in zip(demos, tpl.examples, strict=True):
        doc = json.loads(answer)  # real JSON, not a doubled-brace format string
        assert isinstance(doc, dict) and set(doc) == {"persona"}
        assert isinstance(doc["persona"], str) and doc["persona"].strip()
        assert doc["persona"] == ex[granularity]  # the configured granularity's persona
        assert ex["text"] in user
        assert tpl.fragments["format"]["json"] in user
        assert tpl.fragments["granularity"][granularity] in user
    for m in req.messages:
        assert "{{" not in (m.content or "").replace(TEXT, "")
    # the demonstrations parse as the stage's own replies would
    for _, answer in demos:
        out = stage.parse(_item(), _reply(answer))  # type: ignore[arg-type]
        assert out.candidates[0].persona == json.loads(answer)["persona"]


@pytest.mark.parametrize("granularity", ["fine", "coarse"])
def test_plain_demonstrations_are_plain_text(granularity: str) -> None:
    tpl = prompts.load("text_to_persona")
    req = _stage(format="plain", granularity=granularity).request(_item())
    demos = _demos(req)
    assert len(demos) == len(tpl.examples) >= 1
    for (user, answer), ex in zip(demos, tpl.examples, strict=True):
        assert answer == ex[granularity]
        assert "{" not in answer and "persona" not in answer.lower()
        assert "\n\n" not in answer  # would hit the stop sequence
        assert tpl.fragments["format"]["plain"] in user
        assert tpl.fragments["format"]["json"] not in user


def test_format_json_fragment_has_no_doubled_braces() -> None:
    tpl = prompts.load("text_to_persona")
    for frags in tpl.fragments.values():
        for text in frags.values():
            assert "{{" not in text and "}}" not in text


def test_request_json_mode_asks_for_json_schema() -> None:
    req = _stage(format="json", max_tokens=77, temperature=0.3).request(_item())
    rf = req.response_format
    assert rf is not None
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["schema"] == SCHEMA
    assert rf["json_schema"]["schema"]["required"] == ["persona"]
    assert rf["json_schema"]["name"]
    assert req.max_tokens == 77 and req.temperature == 0.3
    assert req.stop is None  # a JSON object may legitimately hold a blank line


def test_request_plain_mode_has_no_response_format() -> None:
    stage = _stage(format="plain")
    req = stage.request(_item())
    assert req.response_format is None
    assert req.stop == ["\n\n"]
    tpl = prompts.load("text_to_persona")
    assert tpl.fragments["format"]["plain"] in (req.messages[-1].content or "")
    assert req.messages[-1].role == "user"


def test_request_json_mode_without_structured_output_support() -> None:
    stage = TextToPersona(Settings(format="json"), model="m", structured=False)
    req = stage.request(_item())
    assert req.response_format is None
    tpl = prompts.load("text_to_persona")
    # still asked for JSON in the prompt
    assert tpl.fragments["format"]["json"] in (req.messages[-1].content or "")
    demos = _demos(req)
    assert demos and all(json.loads(a).keys() == {"persona"} for _, a in demos)  # and shown it
    # the json *format* (not the structured flag) is what the parser follows
    out = stage.parse(_item(), _reply('{"persona": "a chef"}'))  # type: ignore[arg-type]
    assert out.candidates[0].persona == "a chef"


def test_structured_output_only_in_json_format() -> None:
    req = TextToPersona(Settings(format="plain"), model="m", structured=True).request(_item())
    assert req.response_format is None and req.stop == ["\n\n"]
    assert all("{" not in (m.content or "") for m in req.messages if m.role == "assistant")


def test_item_key_is_stable() -> None:
    a = TextToPersona.item("s", "t", 3)
    assert a.key == TextToPersona.item("s", "t", 3).key
    assert a.key != TextToPersona.item("s", "t", 4).key
    assert a.payload == {"source_id": "s", "text": "t"}


# ---- parse: json --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        '{"persona": "An ML researcher focused on attention mechanisms"}',
        '  {"persona":   "An ML researcher focused\\n on   attention mechanisms"}  ',
        '```json\n{"persona": "An ML researcher focused on attention mechanisms"}\n```',
        '```\n{"persona": "An ML researcher focused on attention mechanisms"}\n```',
        'Sure! Here it is:\n{"persona": "An ML researcher focused on attention mechanisms"}'
        "\nHope this helps.",
        'Here is the JSON: ```json {"persona": "An ML researcher focused on attention '
        'mechanisms"} ``` done',
    ],
)
def test_parse_json_forms(content: str) -> None:
    stage = _stage(format="json")
    out = stage.parse(_item(), _reply(content))  # type: ignore[arg-type]
    (c,) = out.candidates
    assert c.persona == "An ML researcher focused on attention mechanisms"
    assert c.source_id == "src-1"
    assert c.depth == 0 and c.parent_id is None and c.relation is None
    assert c.model == "served-model"
    assert c.usage == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert c.id == content_id("persona", _item().key, c.persona)  # type: ignore[attr-defined]


def test_parse_ids_stable_and_distinct() -> None:
    stage = _stage(format="json")
    a = stage.parse(_item(), _reply('{"persona": "a chef"}')).candidates[0]  # type: ignore[arg-type]
    b = stage.parse(_item(), _reply('```json\n{"persona": "a chef"}\n```')).candidates[0]  # type: ignore[arg-type]
    c = stage.parse(_item(), _reply('{"persona": "a cook"}')).candidates[0]  # type: ignore[arg-type]
    assert a.id == b.id != c.id


def test_parse_without_usage() -> None:
    out = _stage().parse(_item(), _reply('{"persona": "a chef"}', usage=None))  # type: ignore[arg-type]
    assert out.candidates[0].usage is None


@pytest.mark.parametrize(
    "content",
    [
        "",
        "   \n  ",
        "I am sorry, I cannot help with that.",
        '{"persona": ',
        '{"name": "a chef"}',
        '{"persona": ""}',
        '{"persona": 42}',
        '["a chef"]',
    ],
)
def test_parse_json_unusable_raises_with_raw(content: str) -> None:
    with pytest.raises(ReplyError) as info:
        _stage(format="json").parse(_item(), _reply(content))  # type: ignore[arg-type]
    assert info.value.raw == content


@pytest.mark.parametrize(
    "content",
    [
        '{"persona": "a pastry chef"}\n{"persona": "a baker"}',
        '{"persona": "a pastry chef"} (I chose this {fine-grained} persona.)',
        'Sure {not json}: {"persona": "a pastry chef"} or {"persona": "a baker"}',
        '```json\n{"persona": "a pastry chef"}\n```\n```json\n{"persona": "a baker"}\n```',
    ],
)
def test_parse_json_first_object_of_several(content: str) -> None:
    out = _stage(format="json").parse(_item(), _reply(content))  # type: ignore[arg-type]
    assert out.candidates[0].persona == "a pastry chef"


# ---- parse: plain -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "A pediatric nurse who works night shifts",
        '"A pediatric nurse who works night shifts"',
        "'A pediatric nurse who works night shifts'",
        "- A pediatric nurse who works night shifts",
        "* A pediatric nurse who works night shifts",
        "• A pediatric nurse who works night shifts",
        "Persona: A pediatric nurse who works night shifts",
        "persona - A pediatric nurse who works night shifts",
        'Answer: "A pediatric nurse who works night shifts"',
        "\n\n  - Persona: A pediatric   nurse who works night shifts\nSecond line ignored",
        "# A pediatric nurse who works night shifts",
    ],
)
def test_parse_plain_strips_labels_quotes_bullets(content: str) -> None:
    out = _stage(format="plain").parse(_item(), _reply(content))  # type: ignore[arg-type]
    assert out.candidates[0].persona == "A pediatric nurse who works night shifts"


@pytest.mark.parametrize(
    "content",
    [
        "**Persona:** A pediatric nurse who works night shifts",
        "1. A pediatric nurse who works night shifts",
        "“A pediatric nurse who works night shifts”",
        "‘A pediatric nurse who works night shifts’",
        "- **Persona:** A pediatric nurse who works night shifts",
        "10) A pediatric nurse who works night shifts",
        "**A pediatric nurse who works night shifts**",
        "**\n2. “A pediatric nurse who works night shifts”",
    ],
)
def test_parse_plain_strips_markdown_and_numbering(content: str) -> None:
    out = _stage(format="plain").parse(_item(), _reply(content))  # type: ignore[arg-type]
    assert out.candidates[0].persona == "A pediatric nurse who works night shifts"


@pytest.mark.parametrize("content", ["", "   ", "\n\n", '""', "**\n__\n", "Persona:\n“”"])
def test_parse_plain_empty_raises_with_raw(content: str) -> None:
    with pytest.raises(ReplyError) as info:
        _stage(format="plain").parse(_item(), _reply(content))  # type: ignore[arg-type]
    assert info.value.raw == content


@pytest.mark.parametrize("content", ["- \n * \n", "-", "1.", "#\n"])
def test_parse_plain_bare_bullet_markers_raise_with_raw(content: str) -> None:
    with pytest.raises(ReplyError) as info:
        _stage(format="plain").parse(_item(), _reply(content))  # type: ignore[arg-type]
    assert info.value.raw == content


# ---- templates ----------------------------------------------------------------------------------

CUSTOM = '''
system = "CUSTOM SYSTEM"
user = """<<{text}>> | {relation} | {granularity} | {format}"""

[relation]
read = "R-READ"
like = "R-LIKE"
[granularity]
fine = "G-FINE"
coarse = "G-COARSE"
[format]
json = "F-JSON"
plain = "F-PLAIN"
'''


def test_template_override_file_is_used(tmp_path: Path) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(CUSTOM)
    stage = _stage(template=str(t), relation="like", granularity="coarse", format="json")
    req = stage.request(_item())
    assert req.messages[0].content == "CUSTOM SYSTEM"
    assert req.messages[1].content == f"<<{TEXT}>> | R-LIKE | G-COARSE | F-JSON"


def test_template_override_from_config_file(tmp_path: Path) -> None:
    from engine import config

    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "t2p.toml").write_text(CUSTOM)
    c = tmp_path / "config.toml"
    c.write_text(
        '[text_to_persona]\ntemplate = "prompts/t2p.toml"\nrelation = "read"\nformat = "plain"\n'
    )
    cfg, _ = config.load(c)
    stage = TextToPersona(cfg.text_to_persona, model="m")
    assert stage.request(_item()).messages[1].content == f"<<{TEXT}>> | R-READ | G-FINE | F-PLAIN"


def test_template_missing_fragment_names_it(tmp_path: Path) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(CUSTOM)
    with pytest.raises(ConfigError) as info:
        _stage(template=str(t), relation="dislike")
    assert "relation" in str(info.value) and "dislike" in str(info.value)
    assert str(t) in str(info.value)


def test_template_missing_placeholder_names_it(tmp_path: Path) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(CUSTOM.replace("| {format}", "| {format} | {audience}"))
    with pytest.raises(ConfigError) as info:
        _stage(template=str(t)).request(_item())
    assert "{audience}" in str(info.value)
    assert str(t) in str(info.value)


def test_template_missing_placeholder_refused_when_stage_is_built(tmp_path: Path) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(CUSTOM.replace("| {format}", "| {format} | {audience}"))
    with pytest.raises(ConfigError, match="audience") as info:
        _stage(template=str(t))
    assert str(t) in str(info.value)


def test_template_missing_placeholder_in_system_refused_when_built(tmp_path: Path) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(CUSTOM.replace('system = "CUSTOM SYSTEM"', 'system = "CUSTOM {persona_kind}"'))
    with pytest.raises(ConfigError, match="persona_kind"):
        _stage(template=str(t))


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('user = "x"\n', "system"),
        ('system = "s"\n', "user"),
        ("system = [\n", "TOML"),
    ],
)
def test_template_file_errors_are_config_errors(tmp_path: Path, text: str, what: str) -> None:
    t = tmp_path / "bad.toml"
    t.write_text(text)
    with pytest.raises(ConfigError) as info:
        _stage(template=str(t))
    assert what in str(info.value)
    assert str(t) in str(info.value)


def test_template_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _stage(template=str(tmp_path / "absent.toml"))
    assert "absent.toml" in str(info.value)


@pytest.mark.parametrize("field", ["{text.upper_case}", "{text[a]}"])
def test_template_bad_field_access_is_config_error(tmp_path: Path, field: str) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(CUSTOM.replace("<<{text}>>", f"<<{field}>>"))
    with pytest.raises(ConfigError) as info:
        _stage(template=str(t))
    assert str(t) in str(info.value)


@pytest.mark.parametrize(
    "user", ["{text} {relation} {granularity} {format} }", "{0} {text}", "{text} {", "{text!z}"]
)
def test_template_bad_brace_is_config_error_naming_file(tmp_path: Path, user: str) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(
        CUSTOM.replace(
            'user = """<<{text}>> | {relation} | {granularity} | {format}"""',
            f'user = """{user}"""',
        )
    )
    with pytest.raises(ConfigError) as info:
        _stage(template=str(t))  # refused when the stage is built, not at the first request
    assert str(t) in str(info.value)


CUSTOM_EXAMPLES = (
    CUSTOM
    + """
[[examples]]
text = "EX-ONE {not a placeholder}"
fine = "P-ONE-FINE"
coarse = "P-ONE-COARSE"

[[examples]]
text = "EX-TWO"
fine = "P-TWO-FINE"

[[examples]]
text = "EX-THREE"
persona = "P-THREE"

[[examples]]
text = "EX-SKIPPED"
"""
)


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_template_examples_become_demonstrations(tmp_path: Path, fmt: str) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(CUSTOM_EXAMPLES)
    stage = _stage(template=str(t), relation="like", granularity="coarse", format=fmt)
    req = stage.request(_item())
    assert [m.role for m in req.messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    demos = _demos(req)
    f = "F-JSON" if fmt == "json" else "F-PLAIN"
    assert [u for u, _ in demos] == [
        f"<<EX-ONE {{not a placeholder}}>> | R-LIKE | G-COARSE | {f}",
        f"<<EX-TWO>> | R-LIKE | G-COARSE | {f}",
        f"<<EX-THREE>> | R-LIKE | G-COARSE | {f}",
    ]
    personas = ["P-ONE-COARSE", "P-TWO-FINE", "P-THREE"]  # coarse, else fine, else persona
    if fmt == "json":
        assert [json.loads(a) for _, a in demos] == [{"persona": x} for x in personas]
    else:
        assert [a for _, a in demos] == personas
    assert req.messages[0].content == "CUSTOM SYSTEM"
    assert req.messages[-1].content == f"<<{TEXT}>> | R-LIKE | G-COARSE | {f}"


def test_template_without_examples_sends_no_demonstrations(tmp_path: Path) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(CUSTOM)
    req = _stage(template=str(t)).request(_item())
    assert [m.role for m in req.messages] == ["system", "user"]


@pytest.mark.parametrize("bad", ['examples = "text"\n', "examples = [1, 2]\n"])
def test_template_examples_must_be_tables(tmp_path: Path, bad: str) -> None:
    t = tmp_path / "mine.toml"
    t.write_text(bad + CUSTOM)
    with pytest.raises(ConfigError) as info:
        _stage(template=str(t))
    assert "examples" in str(info.value) and str(t) in str(info.value)


def test_packaged_examples_have_every_granularity() -> None:
    tpl = prompts.load("text_to_persona")
    assert len(tpl.examples) >= 1
    for ex in tpl.examples:
        assert isinstance(ex["text"], str) and ex["text"].strip()
        for g in ("fine", "coarse"):
            assert isinstance(ex[g], str) and ex[g].strip() and "\n" not in ex[g]
