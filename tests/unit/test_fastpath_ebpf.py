"""The compiled eBPF map entries (ext/ebpf_entries.pyx) against their
pure-Python twin (entries.py's group_entries()): the same keys and values,
in the same order, for any valid group; struct.error from both for invalid
input."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from netplane import fastpath
from netplane.proxy.ebpf import entries as pure

compiled = fastpath.load("ebpf_entries")
pytestmark = pytest.mark.skipif(not fastpath.is_compiled(compiled),
                                reason="netplane._ext.ebpf_entries was not built (or NETPLANE_NO_EXTENSIONS=1)")

u32 = st.integers(0, 2 ** 32 - 1)
u8 = st.integers(0, 255)


@settings(max_examples=500, deadline=None)
@given(addr=st.binary(min_size=16, max_size=16), port=st.integers(0, 65535), proto=u8, scope=u8,
       backend_ids=st.lists(u32, max_size=300), flags=u32, affinity=u32, port_id=u32)
def test_group_entries_are_identical(addr, port, proto, scope, backend_ids, flags, affinity, port_id):
    args = (addr, port, proto, scope, backend_ids, flags, affinity, port_id)
    got, want = compiled.group_entries(*args), pure.group_entries(*args)
    assert list(got.items()) == list(want.items())      # the order too: the slots, then the master


def test_example_is_what_the_single_entry_functions_pack():
    addr = pure.address("10.96.0.10")
    got = compiled.group_entries(addr, 53, 17, pure.SCOPE_NODEPORT, [5, 9], pure.FLAG_DROP, 10800, 1 << 30)
    assert list(got.items()) == [
        (pure.service_key(addr, 53, 17, 1, 1), pure.slot(5)),
        (pure.service_key(addr, 53, 17, 1, 2), pure.slot(9)),
        (pure.service_key(addr, 53, 17, 1, 0), pure.master(2, 1, 10800, 1 << 30)),
    ]
    key = bytes(10) + b"\xff\xff" + bytes([10, 96, 0, 10]) + b"\x00\x35" + b"\x11\x01" + (1).to_bytes(4, "little")
    assert list(got)[0] == key and got[key] == (5).to_bytes(4, "little") + bytes(12)
    assert list(compiled.group_entries(bytes(16), 0, 0, 0, [], 0, 0, 0).items()) == \
        [(bytes(24), bytes(16))]


@pytest.mark.parametrize("change", [
    {"addr": bytes(15)}, {"addr": bytes(17)}, {"addr": "0123456789abcdef"}, {"addr": None},
    {"port": -1}, {"port": 65536}, {"port": 1.0}, {"proto": 256}, {"scope": -1},
    {"backend_ids": [1, 2 ** 32]}, {"backend_ids": [-1]}, {"backend_ids": ["1"]},
    {"flags": 2 ** 32}, {"affinity": -1}, {"port_id": 2 ** 64}, {"port_id": None},
])
def test_invalid_input_raises_struct_error_in_both(change):
    args = {"addr": bytes(16), "port": 80, "proto": 6, "scope": 0, "backend_ids": [1], "flags": 0,
            "affinity": 0, "port_id": 1, **change}
    for module in (compiled, pure):
        with pytest.raises(struct.error):
            module.group_entries(**args)


def test_bytearray_address_and_index_numbers_are_accepted_by_both():
    class Index:
        def __index__(self):
            return 7
    args = (bytearray(range(16)), Index(), True, 0, [Index()], Index(), 0, 1)
    assert list(compiled.group_entries(*args).items()) == list(pure.group_entries(*args).items())
