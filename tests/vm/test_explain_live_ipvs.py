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

import pytest

from netplane import vm
from netplane.sandbox import Sandbox
from netplane.testing.explain_cases import CLI, NODE, NODE_LINKS, comparable, write_manifests

pytestmark = [pytest.mark.vm, pytest.mark.skipif(not vm.in_vm(), reason="runs in the VM (make test-vm)")]

ADMINS = "203.0.113.5:80"                            # an admin's virtual server, not the proxy's
PACKETS = [                                          # (source, destination, outcome): one of each way
    ("10.244.1.9", "10.96.0.10:80/tcp", "endpoint"),             # a cluster IP, two endpoints
    ("192.168.200.99", "192.168.200.11:30080/tcp", "endpoint"),  # a node port (a recorded node-port server)
    ("10.244.1.9", "10.96.0.11:80/tcp", "reject"),               # no endpoints
    ("10.244.1.9", "10.96.0.10:81/tcp", "reject"),               # another port of a cluster IP
    ("192.168.200.99", "192.168.200.11:30082/tcp", "drop"),      # externalTrafficPolicy Local, none here
    ("10.244.1.9", f"{ADMINS}/tcp", "untouched"),                # the admin's
]


@pytest.fixture
def node():
    with Sandbox() as box:
        netns = box.netns("explain-ipvs")
        for argv in (*NODE_LINKS, ["ipvsadm", "-A", "-t", ADMINS, "-s", "rr"],
                     ["ipvsadm", "-a", "-t", ADMINS, "-r", "10.0.0.7:80", "-m"]):
            box.run(netns, argv)
        yield lambda argv, timeout=60: box.run(netns, argv, check=False, text=True, timeout=timeout)


# each explain is a fresh interpreter in an emulated VM (~10 s): 12 of them and a sync need more than 300 s
@pytest.mark.timeout(900)
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
