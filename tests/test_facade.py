"""The public façade: every exported name resolves, and `import engine` stays light."""

from __future__ import annotations

import subprocess
import sys

import engine


def test_every_exported_name_resolves() -> None:
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name


def test_import_is_light_and_unknown_names_fail() -> None:
    code = ("import sys, engine; heavy = {'onnxruntime', 'usearch', 'aiohttp'} & set(sys.modules); "
            "assert not heavy, heavy; "
            "import pytest\ntry:\n    engine.nope\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
