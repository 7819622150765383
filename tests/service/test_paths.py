"""Paths from the API: under a root, or refused with the path named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.service.paths import PathPolicy, PathRefused


def test_inside_outside_dotdot_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("x")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    os.symlink(outside, root / "link.txt")
    os.symlink(root / "sub", root / "inner")  # a link that stays inside is fine
    policy = PathPolicy([root])

    assert policy.check("sub/a.txt") == str(root / "sub" / "a.txt")
    assert policy.check(str(root / "sub" / "a.txt")) == str(root / "sub" / "a.txt")
    assert policy.check("inner/a.txt") == str(root / "sub" / "a.txt")
    assert policy.check("new/out") == str(root / "new" / "out")  # need not exist (an output dir)
    assert policy.check("demo", special=True) == "demo"
    for bad, words in ((str(outside), "outside"), ("link.txt", "leads outside"), ("../outside.txt", ".."),
                       ("sub/../../outside.txt", ".."), ("/etc/passwd", "outside"), ("", "usable"),
                       ("a\x00b", "usable")):
        with pytest.raises(PathRefused) as e:
            policy.check(bad)
        assert e.value.path == bad and words in str(e.value), (bad, str(e.value))


def test_relative_to_base_and_several_roots(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    policy = PathPolicy([a, b])
    assert policy.check("x.txt", base=b) == str(b / "x.txt")
    assert policy.check(str(b / "y")) == str(b / "y")
    with pytest.raises(PathRefused):
        policy.check("x.txt", base=tmp_path)  # the base is not a root, and x.txt then is outside


def test_shipped_daemon_config_loads() -> None:
    from engine.service import settings

    cfg = settings.load(Path(__file__).parents[2] / "deploy" / "daemon.toml")
    assert cfg.service.host == "127.0.0.1" and cfg.service.roots and "vllm" in cfg.endpoints
