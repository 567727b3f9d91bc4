"""The IPVS mode on a kernel that has IPVS (the VM tier): a 2-node lab whose
proxies run `--mode ipvs`, judged on real packets and on what IPVS holds.

The semantics every mode shares run here too, from the kernel tier's
tests/kernel/test_proxy.py (make test-vm selects its ipvs cases); these
are the IPVS mode's own: the dummy device and sysctls, masquerading real
servers, graceful termination of a leaving endpoint, the refusal of ports
no Service uses on np-ipvs0's addresses, and an admin's own virtual
servers left alone by full syncs and by --cleanup.
"""
import itertools
import json
import os
import sys
import time

import pytest

from netplane import sandbox
from netplane.lab import Lab, services
from netplane.proxy import build as b

PORT = [{"name": "http", "port": 80, "protocol": "TCP"}]
HOLD_PORT = 8081
HOLD_SERVER = f"""
import socket, sys, threading
def talk(conn):
    with conn:
        while conn.recv(100):
            conn.sendall(sys.argv[1].encode() + b"\\n")
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", {HOLD_PORT}))
s.listen(64)
while True:
    threading.Thread(target=talk, args=(s.accept()[0],), daemon=True).start()
"""
HOLD_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 80), timeout=5)
for line in sys.stdin:                 # one exchange per line from the test
    c.sendall(b"who")
    print(c.recv(100).decode().strip(), flush=True)
"""
_labs = itertools.count()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(f"t{os.getpid()}v{next(_labs)}", root=str(tmp_path_factory.mktemp("labs")))
    try:
        lab.up(2, "vxlan", pods_per_node=2, resync_interval=1.0)
        services.enable(lab, proxy_args=("--sync-period", "1s"), mode="ipvs")
        yield lab
    finally:
        lab.down()


def ipvsadm(lab, node="node1") -> str:
    done = lab.run(node, ["ipvsadm", "-Ln"])
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_service_addresses_sit_on_a_down_noarp_dummy_and_the_sysctls_are_set(lab):
    link = json.loads(lab.run("node1", ["ip", "-j", "-d", "link", "show", "np-ipvs0"]).stdout)[0]
    assert link["linkinfo"]["info_kind"] == "dummy" and "NOARP" in link["flags"] and "UP" not in link["flags"]
    addresses = lab.run("node1", ["ip", "-o", "addr", "show", "dev", "np-ipvs0"]).stdout
    assert "10.96.0.10/32" in addresses and "fd00:96::10/128" in addresses
    for key, value in (("vs/conntrack", "1"), ("vs/expire_nodest_conn", "1"), ("vs/expire_quiescent_template", "1")):
        assert lab.run("node1", ["cat", f"/proc/sys/net/ipv4/{key}"]).stdout.strip() == value


def test_one_masquerading_virtual_server_per_address_and_port(lab):
    table = ipvsadm(lab)
    assert "TCP  10.96.0.10:80 rr" in table and "UDP  10.96.0.10:53 rr" in table
    node_ip = next(ip for ip in lab.record.nodes["node1"].internal_ips if ":" not in ip)
    assert f"TCP  {node_ip}:30080 rr" in table
    pod_ips = [p.ips[0] for p in lab.record.pods.values()]
    assert all(f"-> {ip}:8080" in table for ip in pod_ips)
    real = [line for line in table.splitlines() if line.strip().startswith("->") and ":8080" in line]
    assert real and all(line.split()[2] == "Masq" for line in real)


def test_a_port_no_service_uses_on_a_service_address_is_refused(lab):
    """The node listens on :10256 (healthz) on every address; through a
    cluster IP it must be refused, not answered."""
    pod = sorted(lab.record.pods)[0]
    got = services.probe(lab, pod, "tcp", "10.96.0.10", 10256, timeout=2)
    assert got["failed"] == 1 and "refused" in json.dumps(got).lower(), got


def test_a_leaving_endpoint_keeps_its_open_connection_and_is_deleted_once_it_closes(lab):
    pods = sorted(lab.record.pods)
    client, backends = pods[0], pods[1:3]
    holders = [lab.spawn(p, [sys.executable, "-c", HOLD_SERVER, p]) for p in backends]
    try:
        def publish(ready):
            eps = [b.endpoint(lab.record.pods[p].ips[0], lab.record.pods[p].node) for p in ready]
            services.publish(lab, [b.service("drain", "10.96.0.40", PORT), b.endpoint_slice(
                "drain", eps, [{"name": "http", "port": HOLD_PORT, "protocol": "TCP"}])], "drain.json")
        publish(backends)
        sandbox.wait_for(lambda: all(lab.run(p, ["ss", "-Hltn", f"sport = :{HOLD_PORT}"]).stdout.strip()
                                     for p in backends), timeout=10, what="the holding servers")
        conn = lab.spawn(client, [sys.executable, "-c", HOLD_CLIENT, "10.96.0.40"], stdin=-1, stdout=-1, text=True)
        try:
            conn.stdin.write("1\n")
            conn.stdin.flush()
            held = conn.stdout.readline().strip()
            assert held in backends
            other = next(p for p in backends if p != held)
            publish([other])
            ip = lab.record.pods[held].ips[0]
            node = "node1"
            line = next(x for x in ipvsadm(lab, node).splitlines() if f"-> {ip}:{HOLD_PORT}" in x)
            assert line.split()[3] == "0" and line.split()[4] == "1"          # weight 0, one active connection
            conn.stdin.write("2\n")
            conn.stdin.flush()
            assert conn.stdout.readline().strip() == held                    # the open connection lives on
            for _ in range(4):                                               # new connections: the other pod
                done = lab.run(client, [sys.executable, "-c", HOLD_CLIENT, "10.96.0.40"], input="1\n", timeout=10)
                assert done.stdout.strip() == other, done.stderr
        finally:
            conn.stdin.close()
            conn.wait(10)
        sandbox.wait_for(lambda: f"-> {ip}:{HOLD_PORT}" not in ipvsadm(lab, node), timeout=15,
                         what="the drained real server to be deleted")
    finally:
        for h in holders:
            h.kill()
            h.wait()


def test_an_admins_virtual_server_outlives_full_syncs_and_cleanup(lab):
    node = "node2"
    node_ip = next(ip for ip in lab.record.nodes[node].internal_ips if ":" not in ip)
    assert lab.run(node, ["ipvsadm", "-A", "-t", f"{node_ip}:4443", "-s", "wlc"]).returncode == 0
    try:
        since = time.time()
        lab.stop(f"proxy/{node}")
        lab.start_proxy(node, "--sync-period", "1s", mode="ipvs")            # a restart: a full sync
        sandbox.wait_for(lambda: lab.proxy_synced_since(node, since), timeout=20, what="the restarted proxy")
        assert f"TCP  {node_ip}:4443 wlc" in ipvsadm(lab, node)
        lab.stop(f"proxy/{node}")
        done = lab.run(node, [sys.executable, "-m", "netplane", "proxy", "--mode", "ipvs", "--cleanup",
                              "--manifests", lab.manifests_dir, "--node-name", node])
        assert done.returncode == 0, done.stderr
        table = ipvsadm(lab, node)
        assert f"TCP  {node_ip}:4443 wlc" in table and "10.96.0.10" not in table and ":30080" not in table
        assert lab.run(node, ["ip", "link", "show", "np-ipvs0"]).returncode != 0
        assert "netplane-ipvs" not in lab.run(node, ["nft", "list", "tables"]).stdout
    finally:
        lab.run(node, ["ipvsadm", "-D", "-t", f"{node_ip}:4443"])
        lab.start_proxy(node, "--sync-period", "1s", mode="ipvs")
        since = time.time()
        sandbox.wait_for(lambda: lab.proxy_synced_since(node, since), timeout=20, what="the proxy back")


