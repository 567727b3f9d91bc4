"""`netplane lab` as an operator runs it: separate commands, one lab in between."""
import os
import subprocess
import sys

from netplane.lab import Lab

NAME = f"t{os.getpid()}x90"        # t<pid>x<n>: reaped by a later run if this one is killed


def netplane(*args, root):
    return subprocess.run([sys.executable, "-m", "netplane", "lab", *args, "--name", NAME, "--root", root],
                          capture_output=True, text=True, timeout=120)


def lab_namespaces():
    return [n for n in os.listdir("/run/netns") if n.startswith(f"npl-{NAME}-")] if os.path.isdir("/run/netns") else []


def test_up_status_check_down_and_a_gap_makes_check_fail(tmp_path):
    root = str(tmp_path)
    try:
        up = netplane("up", "--nodes", "2", "--mode", "routed", "--pods-per-node", "1", root=root)
        assert up.returncode == 0, up.stderr
        assert netplane("up", "--nodes", "2", root=root).returncode == 2          # one lab per name
        status = netplane("status", root=root)
        assert status.returncode == 0 and "ready, 1 peer(s) connected" in status.stdout
        assert "node2-pod1" in status.stdout and "10.244.2.2" in status.stdout
        check = netplane("check", root=root)
        assert check.returncode == 0 and "4 probes, all answered" in check.stdout

        lab = Lab(NAME, root).load()                   # cut node1 off node2's pods: check must say so
        lab.run("node1", ["ip", "route", "del", "10.244.2.0/24"], check=True)
        check = netplane("check", root=root)
        assert check.returncode == 1 and "2 of 4 probes got no answer" in check.stdout
    finally:
        down = netplane("down", root=root)
    assert down.returncode == 0 and not lab_namespaces() and not os.path.exists(os.path.join(root, NAME))


def test_down_cleans_up_even_without_the_lab_record(tmp_path):
    lab = Lab(NAME, str(tmp_path)).up(2, "vxlan", pods_per_node=1)
    pids = [n.agent_pid for n in lab.record.nodes.values()]
    os.unlink(os.path.join(lab.dir, "lab.json"))
    removed = Lab(NAME, str(tmp_path)).down()
    assert not lab_namespaces() and not os.path.exists(lab.dir)
    assert sorted(f"process {p}" for p in pids) == sorted(r for r in removed if r.startswith("process"))
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)


def test_lab_run_is_the_main_job(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "netplane", "lab", "run", "--nodes", "2", "--mode", "vxlan",
                           "--name", NAME, "--root", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "24 probes, all answered" in proc.stdout and "every pod reached every other pod" in proc.stdout
    assert not lab_namespaces() and not os.listdir(tmp_path)
