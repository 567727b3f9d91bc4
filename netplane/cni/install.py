"""`netplane cni install`: put the plugin where a runtime looks for it.

The executable is a thin client of the node agent with its settings filled
in: the agent's socket, and the standalone command it falls back to when
no agent answers (or none: then it answers "try again later"). Two clients
speak the same wire format:
- native (the default): cni/netplane-cni.c, built by the package build,
  static, needing nothing on the host; its settings are written into the
  copy's CONFIG block;
- python: shim.py under a shebang naming a real interpreter (a per-pod
  program cannot afford the ~70 ms of a pyenv-style shim script); the
  native client's tested twin.
Every file is written to a temporary name and renamed, so a runtime never
runs or reads half a file.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from netplane.cni import config, shim
from netplane.cni.errors import CniError
from netplane.cni.server import display, parse_address

PLUGIN_NAME = "netplane"
CONFLIST_NAME = "10-netplane.conflist"
CLIENTS = ("native", "python")
NATIVE_CLIENT = Path(__file__).resolve().parent.parent / "_bin" / "netplane-cni"
# The native client's settings block (cni/netplane-cni.c: CONFIG).
CONFIG_MARK = b"NETPLANE-CNI-CONFIG-V1\0"
CONFIG_SIZE = 4096


class InstallError(Exception):
    pass


def render_native(agent_socket: str, standalone: list[str]) -> bytes:
    """The native client with its CONFIG block filled in: the socket
    address, then the standalone argv, each NUL-terminated, then an empty
    string."""
    try:
        image = NATIVE_CLIENT.read_bytes()
    except OSError as exc:
        raise InstallError(f"the native CNI client is not built ({NATIVE_CLIENT}: {exc.strerror}); "
                           "reinstall netplane with a C compiler, or pass --client python") from None
    at = image.find(CONFIG_MARK)
    if at < 0 or image.find(CONFIG_MARK, at + 1) >= 0:
        raise InstallError(f"{NATIVE_CLIENT} has no single settings block; rebuild netplane")
    fields = [display(parse_address(agent_socket)), *standalone, ""]  # '@name' for an abstract socket
    if len(fields[0].encode()) > 107:
        raise InstallError(f"the agent socket address {agent_socket!r} is longer than a unix socket's 107 bytes")
    if any("\0" in f for f in fields):
        raise InstallError("the agent socket and the interpreter path may not contain NUL")
    block = CONFIG_MARK + b"".join(f.encode() + b"\0" for f in fields)
    if len(block) > CONFIG_SIZE:
        raise InstallError(f"the plugin's settings take {len(block)} bytes, more than its {CONFIG_SIZE}")
    return image[:at] + block.ljust(CONFIG_SIZE, b"\0") + image[at + CONFIG_SIZE:]


def standalone_command(python: str) -> list[str]:
    """The standalone plugin, started without the site module (-S): site
    and the package finders it loads cost ~10 ms, as much as a whole ADD of
    the reference plugin. The directories netplane and its imports live
    in are asked of `python` once, here, and put on sys.path directly."""
    paths = _import_paths(python)
    boot = f"import sys; sys.path[:0] = {paths!r}; from netplane.cni.standalone import entry; entry()"
    return [python, "-I", "-S", "-c", boot]


def _import_paths(python: str) -> list[str]:
    program = ("import importlib.util, os\n"
               "for name in ('netplane', 'pyroute2'):\n"
               "    print(os.path.dirname(os.path.dirname(importlib.util.find_spec(name).origin)))")
    proc = subprocess.run([python, "-I", "-c", program], capture_output=True, text=True)
    if proc.returncode != 0:
        raise InstallError(f"{python} cannot import netplane and its dependencies; pass --python with the "
                           f"interpreter netplane is installed for")
    return list(dict.fromkeys(proc.stdout.split("\n")[:-1]))


def render_shim(python: str, agent_socket: str, standalone: bool = True) -> str:
    """The executable: a two-line stub that runs the shim's code object.

    A script run as __main__ is compiled on every start (Python caches
    bytecode only for imported modules), and compiling the shim costs
    ~2 ms, a quarter of a pod ADD. So the code object is compiled here,
    once, by the very interpreter the stub names, and embedded marshalled.
    """
    code = _compile_with(python, _configured_source(python, agent_socket, standalone))
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


def _configured_source(python: str, agent_socket: str, standalone: bool) -> str:
    lines = Path(shim.__file__).read_text().splitlines(keepends=True)
    replacements = {
        "AGENT_SOCKET = ": f"AGENT_SOCKET = {parse_address(agent_socket)!r}\n",
        "STANDALONE = ": f"STANDALONE = {standalone_command(python) if standalone else []!r}\n",
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


def install(bin_dir: str, conf_dir: str | None = None, *, client: str = "native", standalone: bool = True,
            python: str = sys.executable, agent_socket: str = "@netplane-cni", name: str = "netplane",
            plugin_conf: dict | None = None, cni_version: str = DEFAULT_CONFLIST_VERSION) -> list[str]:
    """Without `standalone`, a plugin that finds no agent answers CNI error
    11 ("try again later") rather than doing the work in-process: for hosts
    where netplane's Python is not installed (or should not run)."""
    # Everything is validated and rendered before the first file is written.
    if client not in CLIENTS:
        raise InstallError(f"unknown client {client!r}: use one of {', '.join(CLIENTS)}")
    if standalone or client == "python":
        check_interpreter(python)
    if client == "native":
        executable = render_native(agent_socket, standalone_command(python) if standalone else [])
    else:
        executable = render_shim(python, agent_socket, standalone).encode()
    files = [(os.path.join(bin_dir, PLUGIN_NAME), executable, 0o755)]
    if conf_dir:
        body = json.dumps(conflist(name, plugin_conf or {}, cni_version), indent=2) + "\n"
        files.append((os.path.join(conf_dir, CONFLIST_NAME), body.encode(), 0o644))
    try:
        return [_write_atomic(path, data, mode) for path, data, mode in files]
    except OSError as exc:
        raise InstallError(f"cannot write {exc.filename}: {exc.strerror}") from None


def _write_atomic(path: str, data: bytes, mode: int) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path
