"""The job config written back as TOML reads back the same."""

from __future__ import annotations

import tomllib
from hypothesis import given
from hypothesis import strategies as st

from engine.service.tomlw import dumps

keys = st.text(min_size=1, max_size=12)
scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.text(max_size=30),
                    st.floats(allow_nan=False))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


@given(st.dictionaries(keys, values, max_size=6))
def test_round_trip(doc: dict) -> None:
    assert tomllib.loads(dumps(doc)) == doc


def test_a_config() -> None:
    doc = {"endpoints": {"fake": {"base_url": "http://x/v1", "headers": {"X-A": "b\"c\\d\n"}}},
           "gate": {"semantic": {"enabled": False, "threshold": 0.5}}, "run": {"inputs": ["/a b/ü.txt"]}}
    assert tomllib.loads(dumps(doc)) == doc
