"""`netplane bench proxy` end to end, as a user runs it: the installed
command, on this kernel's modes, with tiny sizes (the VM tier runs IPVS).
No test here asserts a time."""
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from netplane import sandbox
from netplane.proxy import modes
from netplane.testing.bench_checks import assert_complete

LAB_PREFIX = "npl-npbench-"


def bench(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "netplane", "bench", "proxy", "--plain", "--no-vm", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> bool:
    """Whether the process prints a line holding `text` within `timeout` s (never blocks past it:
    a thread reads, and keeps the rest of the output for communicate())."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put("")                       # the end of the output

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return False
        if not line or text in line:
            proc.rest = lines, reader
            return bool(line)
    return False


def test_a_quick_run_writes_every_file_and_measures_every_mode_through_itself(tmp_path):
    out = tmp_path / "run"
    proc = bench("--quick", "--services", "5,20", "--out", str(out))
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    here = modes.available()
    assert_complete(out, [*here, "kube-proxy-layout", "floor"], [5, 20])
    # the terminal got the summary table, with the ratios to both references
    assert "20 Services" in output and "×" in output and "kube-proxy" in output
    assert not [n for n in sandbox.listdir(sandbox.RUN_NETNS) if n.startswith(LAB_PREFIX)]


def test_sigterm_mid_run_removes_the_lab_and_says_so(tmp_path):
    proc = bench("--quick", "--services", "5", "--modes", "iptables", "--out", str(tmp_path / "run"))
    assert wait_for_line(proc, "iptables · first packet", 120), "no proxy was measured within 120 s"
    assert any(n.startswith(LAB_PREFIX) for n in sandbox.listdir(sandbox.RUN_NETNS))
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    lines, reader = proc.rest
    reader.join(10)
    rest = "".join(iter(lines.get_nowait, ""))
    assert proc.returncode == 130, rest
    assert "interrupted; the lab is removed" in rest and "Traceback" not in rest
    assert not [n for n in sandbox.listdir(sandbox.RUN_NETNS) if n.startswith(LAB_PREFIX)]
    assert not (tmp_path / "run" / "results.json").exists()
