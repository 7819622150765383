"""Write a parsed config back as TOML (one inline table per top-level key; round-trips via tomllib)."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any


def _str(s: str) -> str:
    # JSON's escapes are TOML's; non-ASCII stays raw (a \uXXXX pair for astral characters is not TOML)
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(k: str) -> str:
    return _str(str(k))  # a quoted key is valid TOML for any name


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dumps(doc: dict[str, Any]) -> str:
    """TOML text for `doc`; `tomllib.loads(dumps(doc)) == doc`."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in doc.items())
