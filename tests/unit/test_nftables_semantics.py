"""What the nftables mode adds to the shared semantics (as kube-proxy's
nftables mode does), traced through its fake kernel: another port of a
cluster IP is rejected, an unallocated address of the Service CIDR is
dropped, and node ports answer on the node's primary IP unless
--nodeport-addresses says otherwise; and a partial sync's packets are
the same as a full sync's."""
import netaddr

from netplane.proxy import build as b
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.settings import Settings
from netplane.proxy.state import snapshot
from netplane.testing.nftables import Programmed, fake_dataplane

NODE_IP, BRIDGE, POD, OUTSIDE = "192.168.200.11", "10.244.1.1", "10.244.1.9", "192.168.200.99"
LOCAL = [NODE_IP, BRIDGE, "127.0.0.1"]
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
HTTP = {"name": "http", "port": 80, "protocol": "TCP"}


def settings(**kw):
    return Settings(Node("n1"), (netaddr.IPAddress(NODE_IP),), (netaddr.IPNetwork("10.244.0.0/16"),), **kw)


def policies(services, slices):
    return {4: family_policies(snapshot(services, slices).ports, 4, Node("n1"))}


def program(services, slices, s=None):
    plane = fake_dataplane(s or settings(), local_addresses=lambda: [netaddr.IPAddress(a) for a in LOCAL])
    plane.sync(policies(services, slices), None)
    return plane, Programmed(plane, LOCAL)


def web(ip="10.96.0.10", **spec):
    return b.service("web", ip, [dict(HTTP, nodePort=30080)] if spec.get("type") else [HTTP], **spec)


def test_another_port_of_a_cluster_ip_is_rejected_and_unallocated_addresses_dropped():
    _, t = program([web()], [b.endpoint_slice("web", ["10.244.2.5"], EP_PORTS)],
                   settings(service_cidrs=(netaddr.IPNetwork("10.96.0.0/16"),)))
    assert t.trace(POD, "tcp", "10.96.0.10", 80).endpoints == {"10.244.2.5:8080"}
    assert t.trace(POD, "tcp", "10.96.0.10", 81).verdict == "REJECT"
    assert t.trace(POD, "tcp", "10.96.0.77", 80).verdict == "DROP"           # no Service holds it
    assert t.trace(POD, "tcp", "10.97.0.77", 80).verdict == "ACCEPT"         # outside the Service CIDR


def test_node_ports_answer_on_the_primary_ip_by_default_and_where_told():
    svc, sl = web(type="NodePort"), b.endpoint_slice("web", ["10.244.2.5"], EP_PORTS)
    _, t = program([svc], [sl])
    assert t.trace(OUTSIDE, "tcp", NODE_IP, 30080).endpoints == {"10.244.2.5:8080"}
    assert t.trace(OUTSIDE, "tcp", BRIDGE, 30080).endpoints == set()
    _, t = program([svc], [sl], settings(nodeport_addresses=(netaddr.IPNetwork("10.244.1.0/24"),)))
    assert t.trace(OUTSIDE, "tcp", BRIDGE, 30080).endpoints == {"10.244.2.5:8080"}
    assert t.trace(OUTSIDE, "tcp", NODE_IP, 30080).endpoints == set()


def test_partial_syncs_leave_the_kernel_as_a_full_sync_would():
    """Through the fake kernel: after each partial sync, the packets go where
    a fresh full sync of the same objects sends them."""
    services = [web(type="NodePort"), b.service("api", "10.96.0.11", [HTTP])]
    steps = [
        [b.endpoint_slice("web", ["10.244.2.5"], EP_PORTS)],
        [b.endpoint_slice("web", ["10.244.2.5", "10.244.1.5"], EP_PORTS),
         b.endpoint_slice("api", ["10.244.2.6"], EP_PORTS)],
        [b.endpoint_slice("api", ["10.244.2.6", "10.244.2.7"], EP_PORTS)],
        [],
    ]
    plane, _ = program(services, steps[0])
    before = policies(services, steps[0])[4]
    for slices in steps[1:]:
        now = policies(services, slices)
        plane.sync(now, {n for n in set(before) | set(now[4]) if before.get(n) != now[4].get(n)})
        assert not plane.last_full
        partial = Programmed(plane, LOCAL)
        _, full = program(services, slices)
        for dst, port in (("10.96.0.10", 80), ("10.96.0.11", 80), (NODE_IP, 30080)):
            assert partial.trace(POD, "tcp", dst, port) == full.trace(POD, "tcp", dst, port), (slices, dst)
        before = now[4]
