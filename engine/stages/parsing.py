"""Helpers that pull structured content out of model replies (JSON blocks, clean lines)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from engine.errors import ReplyError

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_PREFIX = re.compile(r"^\s*(?:persona|answer|description|reply)\s*[:\-]\s*", re.I)


def json_object(raw: str) -> dict[str, Any]:
    """The first JSON object in a reply (bare, fenced, or embedded in prose)."""
    text = raw.strip()
    candidates = [text]
    candidates += _FENCE.findall(text)
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        candidates.append(text[start : end + 1])
    for c in candidates:
        try:
            doc = msgspec.json.decode(c.strip())
        except msgspec.DecodeError:
            continue
        if isinstance(doc, dict):
            return doc
    raise ReplyError("reply holds no JSON object", raw)


def clean_line(raw: str) -> str:
    """The first meaningful line of a plain reply, without quotes, bullets or labels."""
    for line in raw.strip().splitlines():
        line = _PREFIX.sub("", line.strip().lstrip("-*•# ").strip())
        line = line.strip().strip('"').strip("'").strip()
        if line:
            return " ".join(line.split())
    raise ReplyError("reply is empty", raw)


def text_field(doc: dict[str, Any], key: str, raw: str) -> str:
    """A non-empty string field of a decoded reply, whitespace collapsed."""
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ReplyError(f"reply has no non-empty string {key!r}", raw)
    return " ".join(value.split())
