"""`netplane explain` on the live kernel agrees with `--manifests`: a
throwaway namespace whose proxy synced once (iptables, then nftables), and
the same packets explained from the kernel's state and from a compile of the
same manifests. Node 192.168.200.11 in cluster CIDR 10.244.0.0/16."""
import json
import subprocess

import pytest

from netplane.testing.explain_cases import CLI, NODE, NODE_LINKS, comparable, write_manifests

PACKETS = [                                          # (source, destination), one of each outcome
    ("10.244.1.9", "10.96.0.10:80/tcp"),             # a cluster IP, two endpoints
    ("192.168.200.99", "192.168.200.11:30080/tcp"),  # a node port from outside: masqueraded
    ("10.244.1.9", "10.96.0.11:80/tcp"),             # no endpoints: rejected
    ("192.168.200.99", "192.168.200.11:30082/tcp"),  # externalTrafficPolicy Local, none here: dropped
    ("10.244.1.9", "10.96.0.99:80/tcp"),             # not a Service: untouched
]


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_live_answers_agree_with_the_compile_of_the_same_manifests(sb, tmp_path, mode):
    netns = sb.netns("explain")
    for argv in NODE_LINKS:
        sb.run(netns, argv)
    manifests = tmp_path / "services.yaml"
    write_manifests(manifests)
    sb.run(netns, [*CLI, "proxy", "--once", "--manifests", str(manifests), "--mode", mode, *NODE,
                   "--healthz-bind-address", "", "--metrics-bind-address", ""], timeout=120)
    for src, dst in PACKETS:
        live = sb.run(netns, [*CLI, "explain", src, dst, "--json", "--cluster-cidr", "10.244.0.0/16"],
                      check=False, text=True, timeout=60)
        compiled = sb.run(netns, [*CLI, "explain", src, dst, "--json", "--manifests", str(manifests),
                                  "--mode", mode, *NODE], check=False, text=True, timeout=60)
        assert live.stderr == "" and compiled.stderr == "", (live.stderr, compiled.stderr)
        got, want = json.loads(live.stdout), json.loads(compiled.stdout)
        assert got["mode"] == mode and live.returncode == got["exit_code"] == want["exit_code"], (src, dst)
        names = mode == "iptables"                # only its rules' comments hold the Services' names
        assert comparable(got, names, steps=False) == comparable(want, names, steps=False), (src, dst)
    outcomes = [json.loads(sb.run(netns, [*CLI, "explain", s, d, "--json"], check=False, text=True).stdout)
                ["outcome"] for s, d in PACKETS]
    assert outcomes == ["endpoint", "endpoint", "reject", "drop", "untouched"]


def test_netns_reads_another_namespace_and_words_name_the_mode(sb, tmp_path):
    netns = sb.netns("explain")
    manifests = tmp_path / "services.yaml"
    write_manifests(manifests)
    sb.run(netns, [*CLI, "proxy", "--once", "--manifests", str(manifests), "--mode", "nftables", *NODE,
                   "--healthz-bind-address", "", "--metrics-bind-address", ""], timeout=120)
    done = subprocess.run([*CLI, "explain", "10.244.1.9", "10.96.0.10:80", "--netns", netns],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "nftables mode, live state of network namespace" in done.stdout
    assert "10.244.1.5:8080   50.0%" in done.stdout and "10.244.2.5:8080   50.0%" in done.stdout
