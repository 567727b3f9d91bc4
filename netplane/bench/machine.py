"""What a benchmark report says about where it ran: the kernel, the CPUs,
the tools' versions, and the netplane tree (its commit, and whether the
work tree was modified)."""
import os
import platform
import subprocess
from pathlib import Path

TOOLS = {"iptables": ["iptables", "-V"], "nft": ["nft", "--version"]}


def describe(tree: Path, tools: tuple[str, ...] = ("iptables",)) -> dict:
    info = {"kernel": platform.release(), "cpus": os.cpu_count()}
    for key in tools:
        try:
            info[key] = subprocess.run(TOOLS[key], capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    state = tree_state(tree)
    if state:
        info["tree"] = state
    return info


def tree_state(tree: Path) -> str | None:
    """"<tree> at <commit>", with " (modified)" when tracked files differ; None outside git."""
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return f"{tree} at {head.stdout.strip()}{' (modified)' if dirty else ''}"


def loadavg() -> float:
    """The 1-minute load average: other work on the machine shows here, beside a run's own."""
    return float(Path("/proc/loadavg").read_text().split()[0])
