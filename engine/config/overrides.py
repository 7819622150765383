"""Overrides (`--set key=value`, PERSONA_* variables) and msgspec errors as ConfigErrors naming the key."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import msgspec

from engine.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_PATH = re.compile(r"at `\$((?:\.[^`.\[]+|\[[^\]]*\])*)`")


def translate(err: msgspec.ValidationError, source: str, prefix: str = "") -> ConfigError:
    msg = str(err)
    m = _PATH.search(msg)
    key = m.group(1).lstrip(".") if m else ""
    key = ".".join(k for k in (prefix, key) if k)
    reason = _PATH.sub("", msg).rstrip(" -")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
    field = re.match(r"^([a-z_]+(?:\.[a-z_]+)?): (.*)$", reason, re.S)
    if unknown:
        key = ".".join(k for k in (key, unknown.group(1)) if k)
        reason = "unknown key (check the spelling; config.toml lists every key)"
    elif field:  # a cross-field check names its own field
        key = ".".join(k for k in (key, field.group(1)) if k)
        reason = field.group(2)
    return ConfigError(key or "(top level)", reason, source)


STAGE_TABLES = ("text_to_persona", "expansion", "synthesis")

ENV_KEYS = {
    "PERSONA_OUTPUT_DIR": "run.output_dir",
    "PERSONA_LIMIT": "run.limit",
    "PERSONA_BASE_URL": "endpoints.default.base_url",
    "PERSONA_MODEL": "endpoints.default.model",
    "PERSONA_API_KEY_ENV": "endpoints.default.api_key_env",
    "PERSONA_MAX_IN_FLIGHT": "endpoints.default.max_in_flight",
}


def env_overrides() -> list[str]:
    out = []
    for env, key in ENV_KEYS.items():
        if env in os.environ:
            out.append(f"{key}={os.environ[env]}")
    extra = os.environ.get("PERSONA_SET", "")
    out.extend(s.strip() for s in extra.split(";") if s.strip())
    return out


def apply(data: dict[str, Any], item: str) -> None:
    """Apply one `dotted.key=value` override; the value is TOML, else a bare string."""
    if "=" not in item:
        raise ConfigError(item, "an override must look like key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(key, f"{part} is not a table")
        node = child
    node[parts[-1]] = value
    if parts[0] == "endpoints" and len(parts) >= 2 and parts[1] == "default":
        # an override of the "default" endpoint (CLI flags, PERSONA_* env) makes every stage use it
        for stage in STAGE_TABLES:
            data.setdefault(stage, {})["endpoint"] = "default"
