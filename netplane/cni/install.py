"""`netplane cni install`: put the plugin where a runtime looks for it.

The executable is the thin client (shim.py) with two things filled in: a
shebang naming a real interpreter (a per-pod program cannot afford the
~70 ms of a pyenv-style shim script), and the standalone command it falls
back to. Both files are written to a temporary name and renamed, so a
runtime never runs or reads half a file.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from netplane.cni import config, shim
from netplane.cni.errors import CniError
from netplane.cni.server import parse_address

PLUGIN_NAME = "netplane"
CONFLIST_NAME = "10-netplane.conflist"


class InstallError(Exception):
    pass


def render_shim(python: str, agent_socket: str) -> str:
    """The executable: a two-line stub that runs the shim's code object.

    A script run as __main__ is compiled on every start (Python caches
    bytecode only for imported modules), and compiling the shim costs
    ~2 ms, a quarter of a pod ADD. So the code object is compiled here,
    once, by the very interpreter the stub names, and embedded marshalled.
    """
    code = _compile_with(python, _configured_source(python, agent_socket))
    return (f"#!{python} -IS\n"
            "# netplane CNI plugin: the thin client from netplane/cni/shim.py, precompiled by\n"
            "# `netplane cni install` for this interpreter. Reinstall after upgrading either.\n"
            f"import marshal\nexec(marshal.loads({code!r}))\n")


def _compile_with(python: str, source: str) -> bytes:
    """Marshalled code object made by `python` (marshal is version-specific)."""
    # optimize=2 drops docstrings: a smaller literal for the stub to parse.
    program = ("import marshal, sys; sys.stdout.buffer.write(marshal.dumps("
               "compile(sys.stdin.read(), 'netplane-cni-shim', 'exec', optimize=2)))")
    proc = subprocess.run([python, "-I", "-S", "-c", program], input=source.encode(), capture_output=True)
    if proc.returncode != 0:
        raise InstallError(f"{python} could not compile the plugin: {proc.stderr.decode().strip()}")
    return proc.stdout


def _configured_source(python: str, agent_socket: str) -> str:
    lines = Path(shim.__file__).read_text().splitlines(keepends=True)
    replacements = {
        "AGENT_SOCKET = ": f"AGENT_SOCKET = {parse_address(agent_socket)!r}\n",
        "STANDALONE = ": f"STANDALONE = {[python, '-I', '-m', 'netplane.cni.standalone']!r}\n",
    }
    done = set()
    for i, line in enumerate(lines):
        for prefix, new in replacements.items():
            if prefix not in done and line.startswith(prefix):
                lines[i] = new
                done.add(prefix)
    if done != set(replacements):
        raise InstallError(f"shim template lacks {sorted(set(replacements) - done)}")
    return "".join(lines)


def check_interpreter(python: str) -> None:
    try:
        with open(python, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise InstallError(f"interpreter {python}: {exc.strerror}") from None
    if head.startswith(b"#!"):
        raise InstallError(f"{python} is a script wrapper, not an interpreter; pass --python with a real one")


# 1.0.0 is the newest version that every runtime still in use parses
# (podman 4's libcni rejects 1.1.0 results); pass 1.1.0 for GC and STATUS.
DEFAULT_CONFLIST_VERSION = "1.0.0"


def conflist(name: str, plugin_conf: dict, cni_version: str = DEFAULT_CONFLIST_VERSION) -> dict:
    """A one-plugin conflist, validated by the same parser ADD will use."""
    conf = {"type": PLUGIN_NAME, **plugin_conf}
    try:
        config.parse({"cniVersion": cni_version, "name": name, **conf})
    except CniError as err:
        raise InstallError(str(err)) from None
    return {"cniVersion": cni_version, "name": name, "plugins": [conf]}


def install(bin_dir: str, conf_dir: str | None = None, *, python: str = sys.executable,
            agent_socket: str = "@netplane-cni", name: str = "netplane", plugin_conf: dict | None = None,
            cni_version: str = DEFAULT_CONFLIST_VERSION) -> list[str]:
    # Everything is validated and rendered before the first file is written.
    check_interpreter(python)
    files = [(os.path.join(bin_dir, PLUGIN_NAME), render_shim(python, agent_socket), 0o755)]
    if conf_dir:
        body = json.dumps(conflist(name, plugin_conf or {}, cni_version), indent=2) + "\n"
        files.append((os.path.join(conf_dir, CONFLIST_NAME), body, 0o644))
    return [_write_atomic(path, text, mode) for path, text, mode in files]


def _write_atomic(path: str, text: str, mode: int) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path
