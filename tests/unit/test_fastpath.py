import os
import subprocess
import sys

from hypothesis import given, strategies as st

from netplane import fastpath, naming

compiled = fastpath.load("naming")


def test_the_extension_was_built():
    # A silent fallback would hide a broken Cython build.
    assert fastpath.is_compiled(compiled), "netplane._ext.naming is missing: the package build did not compile ext/"


@given(prefix=st.text(max_size=8), key=st.text(), length=st.integers(min_value=0, max_value=80))
def test_compiled_and_pure_names_are_identical(prefix, key, length):
    def outcome(module):
        try:
            return module.hashed_name(prefix, key, length)
        except ValueError as exc:
            return ("ValueError", str(exc))
    assert outcome(compiled) == outcome(naming)


def test_names_fit_and_are_stable():
    name = naming.hashed_name("np", "container:eth0", 15)
    assert len(name) == 15 and name.startswith("np") and name == naming.hashed_name("np", "container:eth0", 15)
    assert name != naming.hashed_name("np", "container:eth1", 15)


def test_environment_switch_selects_the_pure_path():
    code = "from netplane import fastpath; print(fastpath.load('naming').__name__)"
    env = {**os.environ, "NETPLANE_NO_EXTENSIONS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()
    assert out == "netplane.naming"
