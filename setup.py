"""Build hook for the compiled parts: the Cython sources in ext/ and the
CNI plugin's native thin client in cni/.

Everything else about the package lives in pyproject.toml. The extension
modules land inside the package as netplane._ext.<name>; netplane.fastpath
picks them up when present and falls back to the pure-Python twins. The
client lands as netplane/_bin/netplane-cni, which `netplane cni install`
copies into the CNI bin directory.
"""
import os
import shlex
import subprocess

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# libcrypto: chain names are SHA-256 digests (ext/chainhash.pxd), as hashlib computes them
EXTENSIONS = [
    Extension("netplane._ext.naming", ["ext/naming.pyx"], libraries=["crypto"]),
    Extension("netplane._ext.iptables_rules", ["ext/iptables_rules.pyx"], libraries=["crypto"]),
    Extension("netplane._ext.iptables_text", ["ext/iptables_text.pyx"]),
    Extension("netplane._ext.nftables_text", ["ext/nftables_text.pyx"]),
    Extension("netplane._ext.ebpf_entries", ["ext/ebpf_entries.pyx"]),
    Extension("netplane._ext.maglev", ["ext/maglev.pyx"]),
]

CNI_CLIENT_SOURCE = "cni/netplane-cni.c"
# Static: the client runs from /opt/cni/bin on hosts whose libc we do not
# know; it uses nothing beyond libc's system-call wrappers.
CNI_CLIENT_FLAGS = ["-O2", "-static", "-s", "-Wall", "-Wextra", "-Werror"]


class BuildWithCniClient(build_ext):
    def run(self) -> None:
        super().run()
        # Beside the extension modules, wherever this build puts them
        # (the source tree for an editable install, build/lib otherwise).
        package_dir = os.path.dirname(os.path.dirname(self.get_ext_fullpath("netplane._ext.naming")))
        target = os.path.join(package_dir, "_bin", "netplane-cni")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        compiler = shlex.split(os.environ.get("CC", "cc"))
        subprocess.run([*compiler, *CNI_CLIENT_FLAGS, "-o", target, CNI_CLIENT_SOURCE], check=True)


setup(
    cmdclass={"build_ext": BuildWithCniClient},
    ext_modules=cythonize(
        EXTENSIONS,
        language_level=3,
        include_path=["ext"],
        compiler_directives={"boundscheck": False, "wraparound": False},
    ),
)
