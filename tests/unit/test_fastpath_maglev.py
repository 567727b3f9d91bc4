"""The compiled Maglev table (ext/maglev.pyx) against its pure-Python twin
(maglev.py's table()): the same bytes for any valid backends, size and
seed; ValueError from both for invalid input."""
import pytest
from hypothesis import given, settings, strategies as st

from netplane import fastpath
from netplane.proxy.ebpf import maglev as pure

compiled = fastpath.load("maglev")
pytestmark = pytest.mark.skipif(not fastpath.is_compiled(compiled),
                                reason="netplane._ext.maglev was not built (or NETPLANE_NO_EXTENSIONS=1)")

u32 = st.integers(0, 2 ** 32 - 1)
u64 = st.integers(0, 2 ** 64 - 1)
# mostly the small sizes, where the pure twin is quick; now and then any
sizes = st.one_of(st.sampled_from(pure.SIZES[:3]), st.sampled_from(pure.SIZES[:3]), st.sampled_from(pure.SIZES))


@st.composite
def backends(draw):
    m = draw(sizes)
    names = draw(st.lists(st.binary(min_size=18, max_size=18), min_size=1, max_size=min(m, 64), unique=True))
    ids = draw(st.lists(u32, min_size=len(names), max_size=len(names)))
    return names, ids, m


@settings(max_examples=150, deadline=None)
@given(args=backends(), seed=u64)
def test_tables_are_identical(args, seed):
    names, ids, m = args
    assert compiled.table(names, ids, m, seed) == pure.table(names, ids, m, seed)


@settings(max_examples=30, deadline=None)
@given(names=st.lists(st.binary(max_size=4), min_size=200, max_size=251, unique=True), seed=u64)
def test_as_many_backends_as_slots_each_get_one_in_both(names, seed):
    ids = list(range(len(names)))
    assert compiled.table(names, ids, 251, seed) == pure.table(names, ids, 251, seed)


@pytest.mark.parametrize("args", [
    ([], [], 251, 0), ([b"a"], [], 251, 0), ([b"a"], [1, 2], 251, 0), ([b"a", b"a"], [1, 2], 251, 0),
    ([b"a"], [1], 250, 0), ([b"a"], [1], 257, 0), ([b"a"], [1], 16384, 0),
    ([i.to_bytes(2, "big") for i in range(252)], list(range(252)), 251, 0),
    ([b"a"], [-1], 251, 0), ([b"a"], [2 ** 32], 251, 0), ([b"a"], [None], 251, 0),
    (["a"], [1], 251, 0), ([b"a"], [1], 251, -1), ([b"a"], [1], 251, 2 ** 64), ([b"a"], [1], 251, 1.0),
])
def test_invalid_input_raises_value_error_in_both(args):
    for module in (compiled, pure):
        with pytest.raises(ValueError):
            module.table(*args)
