"""Prompt templates as data files (TOML) that a config can override.

A template file has `system` and `user` strings with `{name}` placeholders, and may
have tables of named fragments (e.g. `[relation] read = "..."`) that fill them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Strict(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


@dataclass(frozen=True)
class Template:
    """A system + user prompt pair with fragment tables."""

    name: str
    system: str
    user: str
    fragments: dict[str, dict[str, str]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""

    def fragment(self, table: str, key: str) -> str:
        try:
            return self.fragments[table][key]
        except KeyError:
            raise ConfigError(f"{self.source}: [{table}].{key}", "fragment missing from the template") from None

    def render(self, **values: Any) -> tuple[str, str]:
        """(system, user) with every placeholder filled; a missing value names the placeholder."""
        try:
            return self.system.format_map(_Strict(values)), self.user.format_map(_Strict(values))
        except KeyError as e:
            raise ConfigError(f"{self.source}", f"template placeholder {{{e.args[0]}}} has no value") from None
        except (ValueError, IndexError, AttributeError, TypeError) as e:
            raise ConfigError(f"{self.source}",
                              f"bad placeholder syntax ({e}); write literal braces as {{{{ }}}}") from None

    def check(self, *names: str) -> None:
        """Fail now, naming the file, if rendering with these placeholders would fail mid-run."""
        self.render(**{n: "x" for n in names})


def load(name: str, override: str = "") -> Template:
    """The packaged template `name`.toml, or the file at `override`."""
    if override:
        path = Path(override)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError("template", f"cannot read {path}: {e.strerror}") from None
        source = str(path)
    else:
        text = (resources.files("engine.prompts") / f"{name}.toml").read_text(encoding="utf-8")
        source = f"engine/prompts/{name}.toml"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, f"not valid TOML: {e}") from None
    for key in ("system", "user"):
        if not isinstance(doc.get(key), str):
            raise ConfigError(f"{source}: {key}", "missing; a template needs `system` and `user` strings")
    frags = {k: v for k, v in doc.items() if isinstance(v, dict)}
    examples = doc.get("examples", [])
    if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
        raise ConfigError(f"{source}: examples", "must be an array of tables ([[examples]])")
    return Template(name=name, system=doc["system"], user=doc["user"], fragments=frags, examples=examples,
                    source=source)
