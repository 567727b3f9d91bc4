"""Throwaway network namespaces, and processes inside them, always cleaned up.

The demo, the tests and the benchmarks build nodes and pods out of network
namespaces on this machine. Nothing may leak into the host namespace or
outlive the run, so every namespace and process goes through a Sandbox,
which removes them on close, on an exception, and on SIGTERM. Names carry
the owning pid, so a later run can reap what a killed one left behind.
"""
import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
from typing import Sequence

RUN_NETNS = "/run/netns"
# Every wait is this many times longer: netplane/vm.py sets it for its
# emulated guest, where everything takes several times longer.
TIMEOUT_SCALE = float(os.environ.get("NETPLANE_TIMEOUT_SCALE") or 1)
NAME = re.compile(r"np\.(\d+)\.[0-9a-f]+\.")


class Sandbox:
    def __init__(self) -> None:
        self.prefix = f"np.{os.getpid()}.{secrets.token_hex(2)}."
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "Sandbox":
        self._previous_sigterm = signal.signal(signal.SIGTERM, raise_exit)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        finally:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    def netns(self, name: str) -> str:
        """Create namespace `name` (loopback up); returns its path."""
        full = self.prefix + name
        subprocess.run(["ip", "netns", "add", full], check=True)
        self.namespaces.append(full)
        path = os.path.join(RUN_NETNS, full)
        self.run(path, ["ip", "link", "set", "lo", "up"])
        return path

    def run(self, netns_path: str, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside a namespace. nsenter, not `ip netns exec`,
        which remounts /sys and hides the cgroup mounts runtimes need."""
        kwargs.setdefault("check", True)
        kwargs.setdefault("capture_output", True)
        return subprocess.run(enter(netns_path, argv), **kwargs)

    def spawn(self, netns_path: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a long-running process inside a namespace; stopped on close."""
        proc = subprocess.Popen(enter(netns_path, argv), **kwargs)
        self.processes.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 5.0) -> int:
        return stop_process(proc, timeout)

    def close(self) -> None:
        for proc in reversed(self.processes):
            self.stop(proc)
        self.processes.clear()
        for name in reversed(self.namespaces):
            delete_netns(name)
        self.namespaces.clear()


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    """Stop one process we started, by its pid: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def enter(netns_path: str, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--net={netns_path}", "--", *argv]


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def reap_stale() -> list[str]:
    """Delete namespaces left by sandboxes whose process no longer exists."""
    reaped = []
    for name in listdir(RUN_NETNS):
        match = NAME.match(name)
        if match and not alive(int(match.group(1))):
            delete_netns(name)
            reaped.append(name)
    return reaped


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> None:
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def listdir(path: str) -> list[str]:
    with contextlib.suppress(FileNotFoundError):
        return os.listdir(path)
    return []


def raise_exit(signum, _frame):
    """A SIGTERM handler: unwind like Ctrl-C, so every `finally` runs."""
    raise SystemExit(128 + signum)


def _plain_sigterm_after_fork() -> None:
    """A child forked without exec must not unwind on SIGTERM: its stack is
    a copy of its parent's, whose `finally`s would run there, and a
    Sandbox's close() would delete the parent's namespaces. pyroute2 forks
    such a child for every socket opened with netns=, and SIGTERMs it
    once it has handed the socket over; in the VM, emulated and slow, the
    signal landed before the child's own exit in 2 runs out of 4."""
    if signal.getsignal(signal.SIGTERM) is raise_exit:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_plain_sigterm_after_fork)
