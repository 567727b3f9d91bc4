"""`netplane explain` on the eBPF mode's live maps agrees with `--manifests`:
a throwaway network namespace whose proxy synced once in ebpf mode, and the
same packets explained from the pinned maps and from a compile of the same
manifests. Node 192.168.200.11 in cluster CIDR 10.244.0.0/16.

The pins go on a bpffs of a private mount namespace (it lives and dies with
a holder process) and the socket programs on a cgroup of the test's own:
never the machine's /sys/fs/bpf or its root cgroup."""
import json
import os
import subprocess
import time

import pytest

from netplane.lab import cgroups
from netplane.proxy.ebpf import mode as ebpf_mode
from netplane.testing.explain_cases import CLI, NODE, NODE_LINKS, comparable, write_manifests

PACKETS = [                                          # (source, destination, outcome)
    ("10.244.1.9", "10.96.0.10:80/tcp", "endpoint"),             # a pod to a cluster IP, two endpoints
    ("192.168.200.99", "192.168.200.11:30080/tcp", "endpoint"),  # a node port from outside: the Maglev table
    ("10.244.1.9", "10.96.0.11:80/tcp", "reject"),               # no endpoints
    ("10.244.1.9", "10.96.0.99:80/tcp", "untouched"),            # not a Service
]


@pytest.fixture
def node(sb, tmp_path):
    """(run(argv) inside the node's network namespace and the private mount
    namespace holding the bpffs, the cgroup, the pin path)."""
    reason = ebpf_mode.unavailable()
    if reason:
        pytest.skip(reason)
    netns = sb.netns("explain-ebpf")
    for argv in NODE_LINKS:
        sb.run(netns, argv)
    bpffs = tmp_path / "bpf"
    bpffs.mkdir()
    holder = sb.spawn(netns, ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              'mount -t bpf bpf "$1" && echo mounted && exec sleep 900', "sh", str(bpffs)],
                      stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "mounted"
    cgroup = os.path.join(cgroups.ROOT, sb.prefix + "explain")
    os.makedirs(cgroup)

    def run(argv, timeout=60):
        return subprocess.run(["nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", f"--net={netns}", "--", *argv],
                              capture_output=True, text=True, timeout=timeout)
    try:
        yield run, cgroup, str(bpffs / "netplane")
    finally:
        sb.stop(holder)             # the bpffs, and every pin on it, go with its mount namespace
        cgroups.remove_cgroup(cgroup, time.monotonic() + 5)


def test_live_maps_answer_as_the_compile_of_the_same_manifests_and_say_the_pin_path(node, tmp_path):
    run, cgroup, pin = node
    manifests = tmp_path / "services.yaml"
    write_manifests(manifests, local=False)
    ebpf = ["--ebpf-cgroup-path", cgroup, "--ebpf-pin-path", pin]
    once = run([*CLI, "proxy", "--once", "--manifests", str(manifests), "--mode", "ebpf", *NODE, *ebpf,
                "--healthz-bind-address", "", "--metrics-bind-address", ""], timeout=240)
    assert once.returncode == 0, once.stderr
    try:
        for src, dst, outcome in PACKETS:
            # no --mode: the mode is found by its pins
            live = run([*CLI, "explain", src, dst, "--json", "--cluster-cidr", "10.244.0.0/16", *ebpf])
            compiled = run([*CLI, "explain", src, dst, "--json", "--manifests", str(manifests), "--mode", "ebpf",
                            *NODE])
            assert live.stderr == "" and compiled.stderr == "", (live.stderr, compiled.stderr)
            got, want = json.loads(live.stdout), json.loads(compiled.stdout)
            assert got["mode"] == "ebpf" and got["outcome"] == outcome and live.returncode == got["exit_code"]
            assert comparable(got) == comparable(want), (src, dst)
            assert got["from"].startswith(f"live maps pinned under {pin}"), got["from"]
        words = run([*CLI, "explain", "10.244.1.9", "10.96.0.10:80", "--cluster-cidr", "10.244.0.0/16", *ebpf])
        assert words.returncode == 0, words.stderr
        assert f"ebpf mode, live maps pinned under {pin}" in words.stdout
        assert "10.244.1.5:8080   50.0%" in words.stdout and "10.244.2.5:8080   50.0%" in words.stdout
    finally:
        cleanup = run([*CLI, "proxy", "--cleanup", "--mode", "ebpf", *ebpf])
    assert cleanup.returncode == 0 and "removed map services" in cleanup.stdout, cleanup
    gone = run([*CLI, "explain", "10.244.1.9", "10.96.0.10:80", "--mode", "ebpf", *ebpf])
    assert gone.returncode == 2 and gone.stdout == "", gone
    assert gone.stderr.count("\n") == 1 and pin in gone.stderr and "Traceback" not in gone.stderr
