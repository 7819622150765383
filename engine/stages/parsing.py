"""Helpers that pull structured content out of model replies (JSON blocks, clean lines)."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from engine.errors import ReplyError

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_PREFIX = re.compile(r"^[\s*_]*(?:persona|answer|description|reply)[\s*_]*[:\-][\s*_]*", re.I)
_BULLET = re.compile(r"^\s*(?:[-*•#>]+|\d+[.)])(?:\s+|$)")
_QUOTES = "\"'“”‘’«»`"


_RAW = json.JSONDecoder()


def json_object(raw: str) -> dict[str, Any]:
    """The first JSON object in a reply (bare, fenced, or embedded in prose)."""
    text = raw.strip()
    try:
        doc = msgspec.json.decode(text)
        if isinstance(doc, dict):
            return doc
    except msgspec.DecodeError:
        pass
    for block in [*_FENCE.findall(text), text]:
        pos = block.find("{")
        while pos != -1:
            try:
                found, _ = _RAW.raw_decode(block, pos)
            except ValueError:
                found = None
            if isinstance(found, dict):
                return found
            pos = block.find("{", pos + 1)
    raise ReplyError("reply holds no JSON object", raw)


def clean_line(raw: str) -> str:
    """The first meaningful line of a plain reply, without quotes, bullets or labels."""
    for line in raw.strip().splitlines():
        line = _PREFIX.sub("", _BULLET.sub("", line.strip()))
        line = line.strip().strip("*_").strip().strip(_QUOTES).strip()
        if line:
            return " ".join(line.split())
    raise ReplyError("reply is empty", raw)


def text_field(doc: dict[str, Any], key: str, raw: str) -> str:
    """A non-empty string field of a decoded reply, whitespace collapsed."""
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ReplyError(f"reply has no non-empty string {key!r}", raw)
    return " ".join(value.split())
