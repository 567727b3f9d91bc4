"""`netplane explain` on the live kernel agrees with `--manifests`: a
throwaway namespace whose proxy synced once (iptables, then nftables), and
the same packets explained from the kernel's state and from a compile of the
same manifests. Node 192.168.200.11 in cluster CIDR 10.244.0.0/16."""
import json
import subprocess
import sys

import pytest
import yaml

from netplane.proxy import build as b

CLI = [sys.executable, "-m", "netplane"]
NODE = ["--node-name", "n1", "--node-ip", "192.168.200.11", "--cluster-cidr", "10.244.0.0/16"]
PORTS = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
PACKETS = [                                          # (source, destination), one of each outcome
    ("10.244.1.9", "10.96.0.10:80/tcp"),             # a cluster IP, two endpoints
    ("192.168.200.99", "192.168.200.11:30080/tcp"),  # a node port from outside: masqueraded
    ("10.244.1.9", "10.96.0.11:80/tcp"),             # no endpoints: rejected
    ("192.168.200.99", "192.168.200.11:30082/tcp"),  # externalTrafficPolicy Local, none here: dropped
    ("10.244.1.9", "10.96.0.99:80/tcp"),             # not a Service: untouched
]


def write_manifests(path) -> None:
    both = [b.endpoint("10.244.1.5", "n1"), b.endpoint("10.244.2.5", "n2")]
    local = [dict(PORTS[0], nodePort=30082)]
    objects = [b.service("web", "10.96.0.10", PORTS, type="NodePort"),
               b.endpoint_slice("web", both, EP_PORTS),
               b.service("empty", "10.96.0.11", [dict(PORTS[0], nodePort=30081)], type="NodePort"),
               b.service("local", "10.96.0.12", local, type="NodePort", externalTrafficPolicy="Local"),
               b.endpoint_slice("local", [b.endpoint("10.244.2.7", "n2")], EP_PORTS)]
    path.write_text(yaml.safe_dump_all(objects))


def comparable(answer: dict, with_names: bool) -> dict:
    """What both must agree on; the Service's name only where the live kernel holds names."""
    keep = ["outcome", "exit_code", "masquerade", "endpoints"] + (["service"] if with_names else [])
    out = {k: answer[k] for k in keep}
    out["endpoints"] = [{k: e[k] for k in ("endpoint", "weight", "masquerade")} for e in answer["endpoints"]]
    return out


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_live_answers_agree_with_the_compile_of_the_same_manifests(sb, tmp_path, mode):
    netns = sb.netns("explain")
    sb.run(netns, ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"])
    sb.run(netns, ["ip", "addr", "add", "192.168.200.11/24", "dev", "v0"])
    for link in ("v0", "v1"):
        sb.run(netns, ["ip", "link", "set", link, "up"])
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
        assert comparable(got, mode == "iptables") == comparable(want, mode == "iptables"), (src, dst)
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
