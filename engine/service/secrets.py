"""Keep secrets out of job state: scrub key-like config values, redact known values from text.

Configs name environment variables (`api_key_env`), never keys. A submitted config that
carries a value under a secret-looking key (`api_key`, `token`, an `Authorization` header …)
or a value that looks like a key (`sk-…`, `Bearer …`) has it removed before anything is
written; the job records only the dotted key paths that were removed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

SECRET_WORDS = frozenset({"apikey", "secret", "secrets", "token", "password", "passwd", "authorization",
                          "bearer", "credential", "credentials", "cookie"})
SECRET_VALUE = re.compile(r"^\s*(bearer\s+\S+|sk-[A-Za-z0-9_-]{8,}|(ghp|hf|xox[abp]|gsk|pk)_[A-Za-z0-9_-]{8,})",
                          re.IGNORECASE)
_JOINED = ("apikey", "accesskey", "secretkey", "privatekey", "authtoken")
REDACTED = "[redacted]"


def _secret_key(key: str) -> bool:
    """`api_key`, `X-Api-Key`, `access_token`, `Authorization`; not `max_tokens` or `api_key_env`."""
    words = [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]
    if not words or words[-1] == "env":  # `api_key_env` names a variable: what configs are meant to carry
        return False
    joined = "".join(words)
    return any(w in SECRET_WORDS for w in words) or any(k in joined for k in _JOINED)


def scrub(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of a parsed config without secret-like values, and the dotted keys removed."""
    removed: list[str] = []

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                where = f"{path}.{k}" if path else str(k)
                if _secret_key(str(k)) or (isinstance(v, str) and SECRET_VALUE.match(v)):
                    removed.append(where)
                    continue
                out[k] = walk(v, where)
            return out
        if isinstance(node, list):
            kept = []
            for i, v in enumerate(node):
                if isinstance(v, str) and SECRET_VALUE.match(v):
                    removed.append(f"{path}[{i}]")
                    continue
                kept.append(walk(v, f"{path}[{i}]"))
            return kept
        return node

    return walk(doc, ""), removed


def env_values(names: Iterable[str]) -> list[str]:
    """The values of the named environment variables that are long enough to be secrets."""
    return [v for n in names if n and len(v := os.environ.get(n, "")) >= 6]


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every known secret value replaced (for error messages taken from job logs)."""
    for s in secrets:
        if s:
            text = text.replace(s, REDACTED)
    return text
