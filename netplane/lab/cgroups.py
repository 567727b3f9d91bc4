"""A cgroup v2 per lab node, so the eBPF mode's socket programs (attached
to a node's cgroup) see exactly that node's processes: its pods' and its
own, as the cgroup2 root holds them on a real node. Never the machine's
root cgroup: the lab's live under ROOT/netplane-lab-<name>/, and go with
the lab. Also the lab's bpffs, where the programs and maps are pinned."""
import contextlib
import os
import subprocess
import time

ROOT = "/sys/fs/cgroup/unified"


def lab_cgroup(lab_name: str) -> str:
    return os.path.join(ROOT, f"netplane-lab-{lab_name}")


def node_cgroup(lab_name: str, node: str) -> str:
    path = os.path.join(lab_cgroup(lab_name), node)
    os.makedirs(path, exist_ok=True)
    return path


def joiner(path: str):
    """A preexec_fn: the child moves itself into the cgroup before it execs."""
    def join() -> None:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write("0")
    return join


def remove(lab_name: str, timeout: float = 5.0) -> list[str]:
    """The lab's cgroups, once their processes are gone."""
    top = lab_cgroup(lab_name)
    if not os.path.isdir(top):
        return []
    deadline = time.monotonic() + timeout
    nodes = [os.path.join(top, d) for d in sorted(os.listdir(top)) if os.path.isdir(os.path.join(top, d))]
    return [f"cgroup {path}" for path in nodes + [top] if remove_cgroup(path, deadline)]


def remove_cgroup(path: str, deadline: float) -> bool:
    """rmdir an emptied cgroup: an exiting process leaves it a moment after its
    death, so it is tried until `deadline` (time.monotonic())."""
    while True:
        try:
            os.rmdir(path)
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def mount_bpffs(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    if not _mounted(path):
        subprocess.run(["mount", "-t", "bpf", "bpf", path], check=True, capture_output=True)
    return path


def unmount_bpffs(path: str) -> list[str]:
    if not _mounted(path):
        return []
    with contextlib.suppress(subprocess.CalledProcessError):
        subprocess.run(["umount", path], check=True, capture_output=True)
        return [f"bpffs {path}"]
    return []


def _mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)
