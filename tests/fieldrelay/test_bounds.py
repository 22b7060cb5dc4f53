"""`bounded` skips the walk when a value's JSON text shows nothing to cut; it must cut what the walk cuts."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldrelay.bounds import MAX_DEPTH, MAX_ITEMS, _bounded, bounded

leaves = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=30),
    st.text(alphabet="ab[{", min_size=0, max_size=2500),
    st.binary(max_size=5),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=5), st.tuples(inner)
    ),
    max_leaves=40,
)


def nested(levels: int) -> dict:
    value: dict = {"x": 1}
    for _ in range(levels):
        value = {"x": value}
    return value


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=5), values, max_size=6), st.sampled_from([4, 64, 2000, 64 * 1024]))
def test_what_is_kept_is_what_the_walk_keeps(value, limit):
    assert orjson.dumps(bounded(value, limit)) == orjson.dumps(_bounded(value, limit, depth=0))


def test_the_edges_are_cut_as_the_walk_cuts_them():
    for value in (
        nested(MAX_DEPTH - 1),
        nested(MAX_DEPTH),
        nested(MAX_DEPTH + 1),
        {"items": list(range(MAX_ITEMS))},
        {"items": [0] * (MAX_ITEMS + 1)},
        {"k" * 70: "v"},
        {"text": "a" * 65},
    ):
        for limit in (64, 64 * 1024):
            assert orjson.dumps(bounded(value, limit)) == orjson.dumps(_bounded(value, limit, depth=0))
