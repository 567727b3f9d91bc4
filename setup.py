"""Build hook for the Cython sources in ext/.

Everything else about the package lives in pyproject.toml. The extension
modules land inside the package as netplane._ext.<name>; netplane.fastpath
picks them up when present and falls back to the pure-Python twins.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

# libcrypto: chain names are SHA-256 digests (ext/chainhash.pxd), as hashlib computes them
EXTENSIONS = [
    Extension("netplane._ext.naming", ["ext/naming.pyx"], libraries=["crypto"]),
    Extension("netplane._ext.iptables_rules", ["ext/iptables_rules.pyx"], libraries=["crypto"]),
    Extension("netplane._ext.iptables_text", ["ext/iptables_text.pyx"]),
    Extension("netplane._ext.nftables_text", ["ext/nftables_text.pyx"]),
    Extension("netplane._ext.ebpf_entries", ["ext/ebpf_entries.pyx"]),
    Extension("netplane._ext.maglev", ["ext/maglev.pyx"]),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        language_level=3,
        include_path=["ext"],
        compiler_directives={"boundscheck": False, "wraparound": False},
    ),
)
