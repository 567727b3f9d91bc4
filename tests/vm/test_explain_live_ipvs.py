"""`netplane explain` on the IPVS mode's live state agrees with `--manifests`
(the VM tier: IPVS): a throwaway network namespace whose proxy synced once
in ipvs mode, and the same packets explained from the kernel (the
`netplane-ipvs` table, IPVS's virtual servers, np-ipvs0's addresses) and
from a compile of the same manifests. An admin's own virtual server is no
Service of the proxy's: both say it passes untouched by it.
Node 192.168.200.11 in cluster CIDR 10.244.0.0/16. Run with
`make test-vm` (its -k ipvs selects this file), or
.venv/bin/python -m netplane.vm --rwdir build/vm -- .venv/bin/pytest -m "vm or kernel" -k ipvs tests/vm/test_explain_live_ipvs.py
"""
import json
import sys

import pytest
import yaml

from netplane import vm
from netplane.proxy import build as b
from netplane.sandbox import Sandbox

pytestmark = [pytest.mark.vm, pytest.mark.skipif(not vm.in_vm(), reason="runs in the VM (make test-vm)")]

CLI = [sys.executable, "-m", "netplane"]
NODE = ["--node-name", "n1", "--node-ip", "192.168.200.11", "--cluster-cidr", "10.244.0.0/16"]
PORTS = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
ADMINS = "203.0.113.5:80"                            # an admin's virtual server, not the proxy's
PACKETS = [                                          # (source, destination, outcome)
    ("10.244.1.9", "10.96.0.10:80/tcp", "endpoint"),             # a cluster IP, two endpoints
    ("192.168.200.99", "10.96.0.10:80/tcp", "endpoint"),         # from outside the cluster CIDR: masqueraded
    ("192.168.200.99", "192.168.200.11:30080/tcp", "endpoint"),  # a node port (a recorded node-port server)
    ("10.244.1.9", "10.96.0.11:80/tcp", "reject"),               # no endpoints
    ("10.244.1.9", "10.96.0.10:81/tcp", "reject"),               # another port of a cluster IP
    ("192.168.200.99", "192.168.200.11:30082/tcp", "drop"),      # externalTrafficPolicy Local, none here
    ("10.244.1.9", "10.244.1.5:8080/tcp", "untouched"),          # a pod's own address
    ("10.244.1.9", f"{ADMINS}/tcp", "untouched"),                # the admin's
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


def comparable(answer: dict) -> dict:
    """What both must agree on (IPVS and nftables sets hold addresses, not the Services' names)."""
    out = {k: answer[k] for k in ("outcome", "exit_code", "masquerade", "decided_by")}
    out["endpoints"] = [{k: e[k] for k in ("endpoint", "weight", "masquerade", "steps")} for e in answer["endpoints"]]
    return out


@pytest.fixture
def node():
    with Sandbox() as box:
        netns = box.netns("explain-ipvs")
        for argv in (["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                     ["ip", "addr", "add", "192.168.200.11/24", "dev", "v0"],
                     ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"],
                     ["ipvsadm", "-A", "-t", ADMINS, "-s", "rr"],
                     ["ipvsadm", "-a", "-t", ADMINS, "-r", "10.0.0.7:80", "-m"]):
            box.run(netns, argv)
        yield lambda argv, timeout=60: box.run(netns, argv, check=False, text=True, timeout=timeout)


def test_ipvs_live_state_answers_as_the_compile_of_the_same_manifests(node, tmp_path):
    manifests = tmp_path / "services.yaml"
    write_manifests(manifests)
    once = node([*CLI, "proxy", "--once", "--manifests", str(manifests), "--mode", "ipvs", *NODE,
                 "--healthz-bind-address", "", "--metrics-bind-address", ""], timeout=300)
    assert once.returncode == 0, once.stderr
    for src, dst, outcome in PACKETS:
        # no --mode: the mode is found by its state
        live = node([*CLI, "explain", src, dst, "--json", "--cluster-cidr", "10.244.0.0/16"])
        compiled = node([*CLI, "explain", src, dst, "--json", "--manifests", str(manifests), "--mode", "ipvs", *NODE])
        assert live.stderr == "" and compiled.stderr == "", (src, dst, live.stderr, compiled.stderr)
        got, want = json.loads(live.stdout), json.loads(compiled.stdout)
        assert got["mode"] == "ipvs" and got["outcome"] == outcome and live.returncode == got["exit_code"], \
            (src, dst, got)
        assert comparable(got) == comparable(want), (src, dst)
    words = node([*CLI, "explain", "10.244.1.9", "10.96.0.10:80", "--cluster-cidr", "10.244.0.0/16"])
    assert words.returncode == 0, words.stderr
    assert "ipvs mode, live state of this network namespace" in words.stdout
    assert "10.244.1.5:8080   50.0%" in words.stdout and "10.244.2.5:8080   50.0%" in words.stdout
    assert "IPVS virtual server TCP 10.96.0.10:80 (scheduler rr)" in words.stdout
    cleanup = node([*CLI, "proxy", "--cleanup", "--mode", "ipvs", "--node-ip", "192.168.200.11"])
    assert cleanup.returncode == 0, cleanup.stderr
    gone = node([*CLI, "explain", "10.244.1.9", "10.96.0.10:80"])
    assert gone.returncode == 2 and gone.stdout == "" and gone.stderr.count("\n") == 1, gone
    assert "Traceback" not in gone.stderr
    assert ADMINS in node(["ipvsadm", "-Ln"]).stdout        # explain read it, and left it as it was
