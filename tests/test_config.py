"""config.toml -> frozen Structs: every bad key or value is an error that names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import config
from engine.config import Config, ConfigError

REPO = Path(__file__).resolve().parents[1]
ENV_VARS = (*config.ENV_KEYS, "PERSONA_SET")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def _err(data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.from_dict(data, "cfg.toml")
    return info.value


# ---- each kind of bad config names its key ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"bogus": 1}, "bogus"),
        ({"run": {"outptu_dir": "x"}}, "run.outptu_dir"),
        ({"text_to_persona": {"relaton": "read"}}, "text_to_persona.relaton"),
        ({"embedded": {"paralel": 2}}, "embedded.paralel"),
        ({"endpoints": {"vllm": {"base_url": "http://h:1", "modle": "m"}}}, "endpoints.vllm.modle"),
    ],
)
def test_unknown_key_is_named(data: dict, key: str) -> None:
    e = _err(data)
    assert e.key == key
    assert "unknown key" in e.reason
    assert str(e).startswith("cfg.toml: ") and key in str(e)


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"run": {"limit": "ten"}}, "run.limit", "`int`"),
        ({"run": {"inputs": "a.txt"}}, "run.inputs", "`array`"),
        ({"run": {"checkpoint_interval": "soon"}}, "run.checkpoint_interval", "`float`"),
        ({"text_to_persona": {"max_tokens": 1.5}}, "text_to_persona.max_tokens", "`int`"),
        (
            {"endpoints": {"e": {"base_url": "http://h:1", "structured_output": "yes"}}},
            "endpoints.e.structured_output",
            "`bool`",
        ),
        ({"endpoints": 3}, "endpoints", "`object`"),
    ],
)
def test_wrong_type_names_key_and_expected_type(data: dict, key: str, expected: str) -> None:
    e = _err(data)
    assert e.key == key
    assert expected in e.reason


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"run": {"limit": -1}}, "run.limit", ">= 0"),
        ({"run": {"checkpoint_interval": 0}}, "run.checkpoint_interval", "> 0"),
        (
            {"endpoints": {"e": {"base_url": "http://h:1", "max_in_flight": 0}}},
            "endpoints.e.max_in_flight",
            ">= 1",
        ),
        (
            {"endpoints": {"e": {"base_url": "http://h:1", "requests_per_minute": -5}}},
            "endpoints.e.requests_per_minute",
            ">= 0",
        ),
        (
            {"endpoints": {"e": {"base_url": "http://h:1", "request_timeout": 0}}},
            "endpoints.e.request_timeout",
            "> 0",
        ),
        ({"embedded": {"parallel": 0}}, "embedded.parallel", ">= 1"),
        (
            {"endpoints": {"e": {"base_url": "http://h:1", "backoff_base": 5, "backoff_max": 1}}},
            "endpoints.e.backoff_max",
            "backoff_base",
        ),
    ],
)
def test_impossible_value_names_key_and_bound(data: dict, key: str, expected: str) -> None:
    e = _err(data)
    assert e.key == key
    assert expected in e.reason


@pytest.mark.parametrize(
    ("data", "key", "value"),
    [
        ({"text_to_persona": {"relation": "hate"}}, "text_to_persona.relation", "'hate'"),
        ({"text_to_persona": {"format": "yaml"}}, "text_to_persona.format", "'yaml'"),
        ({"text_to_persona": {"granularity": "medium"}}, "text_to_persona.granularity", "'medium'"),
        ({"run": {"progress": "fancy"}}, "run.progress", "'fancy'"),
        (
            {"endpoints": {"e": {"base_url": "http://h:1", "tpm_counts": "both"}}},
            "endpoints.e.tpm_counts",
            "'both'",
        ),
    ],
)
def test_bad_enum_names_key_and_value(data: dict, key: str, value: str) -> None:
    e = _err(data)
    assert e.key == key
    assert "enum" in e.reason.lower() and value in e.reason


@pytest.mark.parametrize("url", ["ftp://host/v1", "localhost:8000", ""])
def test_bad_base_url(url: str) -> None:
    e = _err({"endpoints": {"e": {"base_url": url}}})
    assert e.key == "endpoints.e.base_url"
    assert "http://" in e.reason


def test_good_base_urls_accepted() -> None:
    cfg = config.from_dict(
        {
            "endpoints": {
                "a": {"base_url": "http://127.0.0.1:8000/v1"},
                "b": {"base_url": "https://api.example.com"},
                "c": {"base_url": "embedded"},
            }
        }
    )
    assert cfg.endpoints["b"].base_url == "https://api.example.com"


def test_api_key_env_must_be_a_name() -> None:
    e = _err({"endpoints": {"e": {"base_url": "http://h:1", "api_key_env": "my key"}}})
    assert e.key == "endpoints.e.api_key_env"
    assert "NAME" in e.reason


def test_api_key_pasted_into_api_key_env_is_not_echoed() -> None:
    secret = "sk-proj-AbCdEf0123456789-secret"
    e = _err({"endpoints": {"e": {"base_url": "http://h:1", "api_key_env": secret}}})
    assert e.key == "endpoints.e.api_key_env"
    assert secret not in str(e)
    assert "AbCdEf0123456789" not in str(e)  # no fragment of it either
    assert "NAME" in str(e)  # the message still says what is wrong


@pytest.mark.parametrize("via", ["set", "env"])
def test_api_key_pasted_via_override_or_env_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    secret = "sk-proj-AbCdEf0123456789-secret"
    monkeypatch.setenv("PERSONA_BASE_URL", "http://h:1")
    overrides = []
    if via == "env":
        monkeypatch.setenv("PERSONA_API_KEY_ENV", secret)
    else:
        overrides = [f"endpoints.default.api_key_env={secret}"]
    with pytest.raises(ConfigError) as info:
        config.load(None, overrides)
    assert info.value.key == "endpoints.default.api_key_env"
    assert "AbCdEf0123456789" not in str(info.value)


def test_stage_endpoint_must_be_defined() -> None:
    e = _err(
        {"endpoints": {"vllm": {"base_url": "http://h:1"}}, "text_to_persona": {"endpoint": "vlm"}}
    )
    assert e.key == "text_to_persona.endpoint"
    assert "'vlm'" in e.reason and "vllm" in e.reason and "embedded" in e.reason


def test_stage_endpoint_defined_is_accepted() -> None:
    cfg = config.from_dict(
        {
            "endpoints": {"vllm": {"base_url": "http://h:1", "model": "q"}},
            "text_to_persona": {"endpoint": "vllm"},
        }
    )
    assert cfg.endpoint("vllm").model == "q"
    assert cfg.endpoint("embedded").base_url == "embedded"


def test_config_is_frozen() -> None:
    cfg = config.from_dict({})
    with pytest.raises(AttributeError):
        cfg.run.limit = 3  # type: ignore[misc]


# ---- files --------------------------------------------------------------------------------------


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.toml"
    p.write_text("[run\nlimit = 3\n")
    with pytest.raises(ConfigError) as info:
        config.load(p)
    assert str(p) in str(info.value)
    assert "TOML" in str(info.value)


def test_missing_file_names_it(tmp_path: Path) -> None:
    p = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        config.load(p)
    assert str(p) in str(info.value)
    assert "not found" in str(info.value)


def test_error_from_file_names_file_and_key(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[run]\nlimit = -4\n")
    with pytest.raises(ConfigError) as info:
        config.load(p)
    assert info.value.key == "run.limit"
    assert str(p) in str(info.value)


def test_shipped_config_loads() -> None:
    cfg, base = config.load(REPO / "config.toml")
    assert isinstance(cfg, Config)
    assert base == REPO
    assert cfg.run.inputs == ["demo"]
    assert cfg.text_to_persona.endpoint == "embedded"
    assert cfg.text_to_persona.format in ("json", "plain")


def test_defaults_without_file() -> None:
    cfg, base = config.load(None)
    assert cfg.run.inputs == [] and cfg.run.output_dir == "out"
    assert base == Path.cwd()


# ---- overrides ----------------------------------------------------------------------------------


def test_set_overrides_apply(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[run]\nlimit = 3\n[text_to_persona]\nrelation = "read"\n')
    cfg, _ = config.load(
        p,
        [
            "run.limit=7",
            "text_to_persona.relation=like",
            "text_to_persona.temperature=0.2",
            'run.output_dir="x y"',
        ],
    )
    assert cfg.run.limit == 7
    assert cfg.text_to_persona.relation == "like"
    assert cfg.text_to_persona.temperature == 0.2
    assert cfg.run.output_dir == "x y"


def test_set_override_bad_value_names_key() -> None:
    with pytest.raises(ConfigError) as info:
        config.load(None, ["run.limit=abc"])
    assert info.value.key == "run.limit"
    with pytest.raises(ConfigError) as info:
        config.load(None, ["run.limit"])
    assert "key.path=value" in str(info.value)


def test_set_override_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        config.load(None, ["run.limt=5"])
    assert info.value.key == "run.limt"


def test_default_endpoint_override_routes_stages(tmp_path: Path) -> None:
    cfg, _ = config.load(
        None, ["endpoints.default.base_url=http://127.0.0.1:9/v1", "endpoints.default.model=m"]
    )
    assert cfg.text_to_persona.endpoint == "default"
    assert cfg.endpoint("default").base_url == "http://127.0.0.1:9/v1"


def test_env_overrides_apply(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERSONA_LIMIT", "11")
    monkeypatch.setenv("PERSONA_OUTPUT_DIR", "/tmp/o")
    monkeypatch.setenv("PERSONA_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("PERSONA_MODEL", "qwen")
    monkeypatch.setenv("PERSONA_MAX_IN_FLIGHT", "32")
    monkeypatch.setenv("PERSONA_API_KEY_ENV", "MY_KEY")
    monkeypatch.setenv("PERSONA_SET", "text_to_persona.format=plain; run.max_text_chars=99")
    cfg, _ = config.load(REPO / "config.toml")
    assert cfg.run.limit == 11
    assert cfg.run.output_dir == "/tmp/o"
    ep = cfg.endpoint(cfg.text_to_persona.endpoint)
    assert cfg.text_to_persona.endpoint == "default"
    assert (ep.base_url, ep.model, ep.max_in_flight, ep.api_key_env) == (
        "http://127.0.0.1:8000/v1",
        "qwen",
        32,
        "MY_KEY",
    )
    assert cfg.text_to_persona.format == "plain"
    assert cfg.run.max_text_chars == 99


def test_cli_override_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_LIMIT", "11")
    cfg, _ = config.load(None, ["run.limit=5"])
    assert cfg.run.limit == 5


def test_env_override_bad_value_names_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_MAX_IN_FLIGHT", "0")
    with pytest.raises(ConfigError) as info:
        config.load(None)
    assert info.value.key == "endpoints.default.max_in_flight"


# ---- fingerprint --------------------------------------------------------------------------------

BASE = {
    "run": {"inputs": ["/data/a.txt"], "output_dir": "out"},
    "endpoints": {"e": {"base_url": "http://h:1/v1", "model": "m1"}},
    "text_to_persona": {"endpoint": "e"},
}


def _fp(*overrides: str) -> str:
    import copy

    data = copy.deepcopy(BASE)
    for o in overrides:
        config.apply(data, o)
    return config.from_dict(data).fingerprint()


def test_fingerprint_is_stable() -> None:
    assert _fp() == _fp()
    assert len(_fp()) >= 8


@pytest.mark.parametrize(
    "override",
    [
        "text_to_persona.relation=like",
        "text_to_persona.format=plain",
        "text_to_persona.granularity=coarse",
        "text_to_persona.max_tokens=200",
        "text_to_persona.temperature=0.1",
        "text_to_persona.template=/t.toml",
        "endpoints.e.model=m2",
        'run.inputs=["/data/b.txt"]',
        "run.text_field=body",
    ],
)
def test_fingerprint_changes_with_what_is_written(override: str) -> None:
    assert _fp(override) != _fp()


@pytest.mark.parametrize(
    "override",
    [
        "endpoints.e.requests_per_minute=600",
        "endpoints.e.tokens_per_minute=90000",
        "endpoints.e.max_in_flight=64",
        "endpoints.e.request_timeout=5",
        "endpoints.e.max_retries=1",
        "run.output_dir=elsewhere",
        "run.checkpoint_interval=1",
        "run.queue_size=100",
        "run.progress=off",
        "embedded.parallel=2",
    ],
)
def test_fingerprint_ignores_pace_and_place(override: str) -> None:
    assert _fp(override) == _fp()


# ---- paths --------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "proj"
    d.mkdir()
    p = d / "c.toml"
    p.write_text(
        '[run]\ninputs = ["data/in.txt", "demo", "/abs/x.jsonl"]\n'
        '[text_to_persona]\ntemplate = "prompts/t.toml"\n'
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg, base = config.load(Path("..") / "proj" / "c.toml")
    assert base == d.resolve()
    assert cfg.run.inputs == [str(d / "data" / "in.txt"), "demo", "/abs/x.jsonl"]
    assert cfg.text_to_persona.template == str(d / "prompts" / "t.toml")


def test_fingerprint_same_from_any_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "proj"
    (d / "sub").mkdir(parents=True)
    p = d / "c.toml"
    p.write_text('[run]\ninputs = ["in.txt"]\n')
    monkeypatch.chdir(d)
    a = config.load("c.toml")[0].fingerprint()
    monkeypatch.chdir(d / "sub")
    b = config.load("../c.toml")[0].fingerprint()
    assert a == b
