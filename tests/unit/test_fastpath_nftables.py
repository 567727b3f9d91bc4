"""The compiled nft element text (ext/nftables_text.pyx) against its
pure-Python twin (render.py's elements_text(), keys_text()): identical
strings for any parts, verdicts and tuple values."""
import os
import subprocess
import sys

from hypothesis import given, settings, strategies as st

from netplane import fastpath
from netplane.proxy.nftables import render as pure

compiled = fastpath.load("nftables_text")

# any unicode (lone surrogates too: the compiled side falls back for them) and any int
texts = st.text(max_size=8) | st.sampled_from(["10.96.1.2", "fd00::1", "tcp", "udp", "goto cluster-2", "drop"])
ints = st.integers() | st.integers(-2 ** 63 - 2, -2 ** 63 + 2) | st.integers(2 ** 63 - 2, 2 ** 64 + 2) \
    | st.integers(0, 65535)
parts = texts | ints | st.booleans()
keys = st.lists(parts, min_size=1, max_size=5).map(tuple)
values = st.none() | texts | keys | st.lists(parts, max_size=3)   # lists: any iterable is joined, as in pure
items = st.lists(st.tuples(keys, values), max_size=20)


class Verdict(str):
    """A str subclass: not a verdict to either twin (type(value) is str), so joined by character."""


def test_the_extension_was_built():
    # A silent fallback would hide a broken Cython build and measure the wrong thing.
    assert fastpath.is_compiled(compiled) and compiled.__name__ == "netplane._ext.nftables_text"


@settings(max_examples=500, deadline=None)
@given(items=items)
def test_elements_text_is_identical(items):
    assert compiled.elements_text(items) == pure.elements_text(items)
    assert compiled.elements_text(iter(items)) == pure.elements_text(items)   # a one-pass iterable too


@settings(max_examples=500, deadline=None)
@given(keys=st.lists(keys, max_size=20))
def test_keys_text_is_identical(keys):
    assert compiled.keys_text(keys) == pure.keys_text(keys)
    assert compiled.keys_text(iter(keys)) == pure.keys_text(keys)


def test_examples():
    cases = [
        [],
        [(("10.96.1.2", "tcp", 80, 3), ("10.244.3.4", 8080))],
        [(("fd00:10:96::1", "udp", 53), "goto cluster-2"), (("2001:db8::ff",), "drop")],
        [(("10.0.0.1",), None), (("é", -1, 2 ** 100), None)],
        [(("a",), Verdict("ab"))],
        [(("x\ud800",), "y")],
    ]
    for case in cases:
        assert compiled.elements_text(case) == pure.elements_text(case)
    assert compiled.elements_text([]) == "" and compiled.keys_text([]) == ""
    assert compiled.elements_text(cases[1]) == "10.96.1.2 . tcp . 80 . 3 : 10.244.3.4 . 8080"
    assert compiled.elements_text(cases[2]) == "fd00:10:96::1 . udp . 53 : goto cluster-2, 2001:db8::ff : drop"
    assert compiled.elements_text(cases[4]) == "a : a . b"
    assert compiled.keys_text([("fd00::1", "tcp", 443), (True, -2 ** 63)]) == "fd00::1 . tcp . 443, True . -9223372036854775808"


def test_environment_switch_selects_the_pure_path():
    code = "from netplane import fastpath; print(fastpath.load('nftables_text').__name__)"
    env = {**os.environ, "NETPLANE_NO_EXTENSIONS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "netplane.proxy.nftables.render"
