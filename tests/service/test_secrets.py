"""Secret-looking config values are removed before anything is stored; known values are redacted."""

from __future__ import annotations

from engine.service.secrets import redact, scrub


def test_scrub_removes_keys_and_key_like_values_only() -> None:
    doc = {
        "endpoints": {"a": {"base_url": "http://x/v1", "api_key_env": "OPENAI_API_KEY", "api_key": "sk-abcdefghijkl",
                            "max_in_flight": 8, "tokens_per_minute": 1000.0,
                            "headers": {"Authorization": "Bearer abc", "X-Api-Key": "zzz", "X-Trace": "on",
                                        "X-Other": "sk-proj-ABCDEFGHIJKLMNOP"}}},
        "text_to_persona": {"max_tokens": 96, "access_token": 123},
        "run": {"inputs": ["a.txt", "Bearer qqq"]},
    }
    clean, removed = scrub(doc)
    assert sorted(removed) == sorted([
        "endpoints.a.api_key", "endpoints.a.headers.Authorization", "endpoints.a.headers.X-Api-Key",
        "endpoints.a.headers.X-Other", "text_to_persona.access_token", "run.inputs[1]"])
    a = clean["endpoints"]["a"]
    assert a["api_key_env"] == "OPENAI_API_KEY" and a["max_in_flight"] == 8 and a["tokens_per_minute"] == 1000.0
    assert a["headers"] == {"X-Trace": "on"}
    assert clean["text_to_persona"] == {"max_tokens": 96}
    assert clean["run"]["inputs"] == ["a.txt"]
    assert "sk-" not in repr(clean) and "Bearer" not in repr(clean)
    assert doc["endpoints"]["a"]["api_key"] == "sk-abcdefghijkl"  # the input is not modified


def test_redact() -> None:
    assert redact("HTTP 401: bad key sk-123456789 for you", ["sk-123456789", ""]) == \
        "HTTP 401: bad key [redacted] for you"
