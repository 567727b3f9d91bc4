"""A minimal CNI runtime: exec a plugin the way containerd or podman do.

Used by the demo, the tests and the benchmarks to drive netplane and the
reference plugins identically: CNI_* environment, config on stdin, result
or error JSON on stdout, exit code. Nothing here knows about netplane.
"""
import json
import subprocess
import time
from dataclasses import dataclass

from netplane.sandbox import enter

REFERENCE_CNI_PATH = "/usr/lib/cni"


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def json(self) -> dict:
        return json.loads(self.stdout)


def env_for(command: str, *, container_id: str = "", netns: str = "", ifname: str = "",
            cni_path: str = REFERENCE_CNI_PATH, args: str = "") -> dict[str, str]:
    env = {"CNI_COMMAND": command, "CNI_PATH": cni_path, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns),
                       ("CNI_IFNAME", ifname), ("CNI_ARGS", args)):
        if value:
            env[key] = value
    return env


def invoke(plugin: str, env: dict[str, str], conf: dict | bytes, *, node_netns: str | None = None,
           timeout: float = 120.0) -> Outcome:
    """Run `plugin` once. With node_netns, it runs inside that namespace,
    as it would on a node; otherwise in this process's namespace."""
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    argv = enter(node_netns, [plugin]) if node_netns else [plugin]
    started = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=timeout)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)
