"""The pod network across nodes, in the lab: real agents, real kernels.

Each test builds a small lab (nodes and pods in throwaway namespaces, the
agents reading the nodes file or a fake API server) and removes it after,
also on failure.
"""
import itertools
import json
import os
import socket
import threading
import time

import pytest

from netplane.kube.client import NODES
from netplane.kube.fake_apiserver import FakeApiServer
from netplane.lab import topology
from netplane.netlink.netns import call_in_netns, open_netns
from netplane.podnet.model import VTEP_MAC_ANNOTATION

def eventually(predicate, timeout=8.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def ip_json(lab, node, *args):
    return json.loads(lab.run(node, ["ip", "-j", *args], check=True).stdout or "[]")


def entries(lab, node):
    """What netplane installed on a node: routes (proto 110), permanent neighbours and FDB on np-vxlan."""
    routes = {r["dst"] for family in ("-4", "-6") for r in ip_json(lab, node, family, "route", "show", "proto", "110")}
    has_device = lab.run(node, ["ip", "link", "show", "np-vxlan"]).returncode == 0
    neigh = {n["dst"] for n in ip_json(lab, node, "neigh", "show", "dev", "np-vxlan", "nud", "permanent")} \
        if has_device else set()
    fdb = {e["mac"]: e.get("dst") for e in json.loads(lab.run(node, ["bridge", "-j", "fdb", "show", "dev", "np-vxlan"])
                                                     .stdout or "[]") if e.get("dst")} if has_device else {}
    return routes, neigh, fdb


def ping(lab, src, ip, size=None, dont_fragment=False):
    argv = ["ping", "-c1", "-W2", "-q", ip] + (["-s", str(size)] if size else []) + (["-M", "do"] if dont_fragment else [])
    return lab.run(src, argv).returncode == 0


class EchoServer:
    """A TCP echo server listening inside a pod (the socket is made there)."""

    def __init__(self, lab, pod):
        fd = open_netns(lab.netns(pod))
        try:
            self.sock = call_in_netns(fd, lambda: socket.create_server(("::", 0), family=socket.AF_INET6,
                                                                        dualstack_ipv6=True))
        finally:
            os.close(fd)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self):
        self.sock.close()


def connect(lab, pod, ip, port) -> socket.socket:
    fd = open_netns(lab.netns(pod))
    try:
        return call_in_netns(fd, lambda: socket.create_connection((ip, port), timeout=5))
    finally:
        os.close(fd)


def echo(conn, payload: bytes) -> bytes:
    conn.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += conn.recv(4096)
    return got


@pytest.mark.parametrize("mode", ["vxlan", "routed"])
def test_pods_on_different_nodes_exchange_ping_and_tcp(make_lab, mode):
    lab = make_lab(3, mode)
    pods = lab.record.pods
    for src, dst in itertools.permutations(pods, 2):
        for ip in pods[dst].ips:
            assert ping(lab, src, ip), f"{src} cannot ping {dst} at {ip}"
    server = EchoServer(lab, "node2-pod1")
    try:
        for ip in pods["node2-pod1"].ips:
            with connect(lab, "node3-pod1", ip, server.port) as conn:
                assert echo(conn, b"hello across nodes " * 500) == b"hello across nodes " * 500
    finally:
        server.close()


@pytest.mark.parametrize("underlay_family, mtu", [(4, 1450), (6, 1430)])
def test_vxlan_pod_mtu_leaves_room_for_the_outer_headers(make_lab, underlay_family, mtu):
    lab = make_lab(2, "vxlan", underlay_family=underlay_family)
    link = ip_json(lab, "node1-pod1", "link", "show", "eth0")[0]
    assert link["mtu"] == mtu
    assert ip_json(lab, "node1", "link", "show", "np-vxlan")[0]["mtu"] == mtu
    # a full-size frame (no fragmentation allowed) crosses the overlay both ways, IPv4 and IPv6
    for src, dst in (("node1-pod1", "node2-pod1"), ("node2-pod1", "node1-pod1")):
        v4, v6 = lab.record.pods[dst].ips
        assert ping(lab, src, v4, size=mtu - 28, dont_fragment=True)
        assert ping(lab, src, v6, size=mtu - 48, dont_fragment=True)


@pytest.mark.parametrize("mode", ["vxlan", "routed"])
def test_removing_a_peer_removes_its_neighbour_fdb_and_route_entries(make_lab, mode):
    lab = make_lab(3, mode)
    node3 = lab.record.nodes["node3"]
    routes, neigh, fdb = entries(lab, "node1")
    assert set(node3.pod_cidrs) <= routes
    if mode == "vxlan":
        assert {"10.244.3.0", "fd00:10:244:3::"} <= neigh and node3.internal_ips[0] in fdb.values()
    lab.remove_node("node3")
    for node in ("node1", "node2"):
        eventually(lambda node=node: not (set(node3.pod_cidrs) & entries(lab, node)[0]), what=f"{node} to drop node3's routes")
        routes, neigh, fdb = entries(lab, node)
        assert not {"10.244.3.0", "fd00:10:244:3::"} & neigh
        assert node3.internal_ips[0] not in fdb.values()
        assert len(routes) == 2 and len(neigh) == (2 if mode == "vxlan" else 0) and len(fdb) == (mode == "vxlan")
    assert ping(lab, "node1-pod1", lab.record.pods["node2-pod1"].ips[0])


@pytest.mark.parametrize("mode", ["vxlan", "routed"])
def test_an_agent_restart_keeps_an_established_tcp_connection(make_lab, mode):
    lab = make_lab(2, mode)
    before = {n: (ip_json(lab, n, "link", "show"), entries(lab, n)) for n in lab.record.nodes}
    server = EchoServer(lab, "node2-pod1")
    try:
        with connect(lab, "node1-pod1", lab.record.pods["node2-pod1"].ips[0], server.port) as conn:
            assert echo(conn, b"before") == b"before"
            for node in lab.record.nodes:
                lab.restart_agent(node)
            assert echo(conn, b"after the restart") == b"after the restart"
    finally:
        server.close()
    for node in lab.record.nodes:
        status = lab.network_status(node)
        assert status["passes"] >= 1 and status["totalChanges"] == 0     # the new agent found nothing to do
        links, installed = before[node]
        assert entries(lab, node) == installed
        # no device was recreated, and the VTEP kept its MAC
        assert {(l["ifname"], l["ifindex"], l.get("address")) for l in ip_json(lab, node, "link", "show")} == \
            {(l["ifname"], l["ifindex"], l.get("address")) for l in links}


def test_a_reconcile_repairs_a_deleted_route_neighbour_and_fdb_entry(make_lab):
    lab = make_lab(2, "vxlan")
    installed = entries(lab, "node1")
    mac = next(iter(installed[2]))
    lab.run("node1", ["ip", "route", "del", "10.244.2.0/24"], check=True)
    lab.run("node1", ["ip", "neigh", "del", "fd00:10:244:2::", "dev", "np-vxlan"], check=True)
    lab.run("node1", ["bridge", "fdb", "del", mac, "dev", "np-vxlan", "dst", installed[2][mac]], check=True)
    assert entries(lab, "node1") != installed
    eventually(lambda: entries(lab, "node1") == installed, what="the periodic reconcile")
    assert ping(lab, "node1-pod1", lab.record.pods["node2-pod1"].ips[1])


def test_routed_mode_reports_a_peer_that_is_not_on_link_instead_of_half_configuring_it(make_lab):
    lab = make_lab(2, "routed")
    far = topology.node_object(topology.NodeAddressing("far", ("10.99.0.1/24", "fd00:200::99/64"),
                                                       ("10.244.99.0/24", "fd00:10:244:99::/64")))
    with open(lab.nodes_file) as f:
        nodes = json.load(f)
    nodes["items"].append(far)
    with open(lab.nodes_file + ".new", "w") as f:
        json.dump(nodes, f)
    os.replace(lab.nodes_file + ".new", lab.nodes_file)
    eventually(lambda: any("far" in p for p in lab.network_status("node1").get("problems", [])),
               what="the problem to be reported")
    problem = next(p for p in lab.network_status("node1")["problems"] if "far" in p)
    assert "not on-link" in problem and "10.99.0.1" in problem
    routes = entries(lab, "node1")[0]
    assert not {"10.244.99.0/24", "fd00:10:244:99::/64"} & routes     # not even the on-link IPv6 one
    assert {"10.244.2.0/24", "fd00:10:244:2::/64"} <= routes
    assert lab.network_status("node1")["peers"] == ["node2"]


def test_agents_follow_node_objects_on_the_kubernetes_api(make_lab, tmp_path):
    """The Kubernetes source end to end: a fake API server in the underlay
    namespace (the lab's control plane), agents on the nodes watching it."""
    servers = []

    def control_plane(underlay):
        server = FakeApiServer.in_netns(underlay, topology.CONTROL_PLANE_V4.split("/")[0], bookmark_interval=0.5)
        server.start()
        servers.append(server)
        for i in (1, 2, 3):
            server.put(NODES, topology.node_object(topology.node_addressing(i)))
        return server.kubeconfig(tmp_path / "kubeconfig")

    try:
        lab = make_lab(3, "vxlan", control_plane=control_plane)
        api = servers[0]
        for node in lab.record.nodes:                     # each agent announced its VTEP MAC
            mac = ip_json(lab, node, "link", "show", "np-vxlan")[0]["address"]
            assert api.get(NODES, node)["metadata"]["annotations"][VTEP_MAC_ANNOTATION] == mac
        assert ping(lab, "node1-pod1", lab.record.pods["node3-pod1"].ips[0])

        api.pause()                                        # the API is lost: the pod network stays
        time.sleep(2.5)                                    # > 2 resync passes
        assert "10.244.3.0/24" in entries(lab, "node1")[0]
        assert ping(lab, "node1-pod1", lab.record.pods["node3-pod1"].ips[0])

        api.delete(NODES, "node3")                         # a peer goes while the API is away...
        api.compact()                                      # ...and its history with it: 410, relist
        api.resume()
        eventually(lambda: "10.244.3.0/24" not in entries(lab, "node1")[0], what="node3's route to go")
        assert "10.244.2.0/24" in entries(lab, "node1")[0]
    finally:
        for server in servers:
            server.stop()
