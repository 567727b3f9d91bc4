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


def lb(name, vip, ranges, **spec):
    return b.service(name, vip, [dict(HTTP, nodePort=30000 + int(vip.rsplit(".", 1)[1]))], type="LoadBalancer",
                     ingress=["192.0.2.10"], loadBalancerSourceRanges=ranges, **spec)


def test_two_services_on_one_address_with_overlapping_ranges_do_not_break_the_sync():
    """Their ranges are in chains of their own (one interval set would
    refuse the overlap, failing every sync); the first in name order holds
    the address, its dispatch and its firewall alike."""
    services = [lb("a", "10.96.0.1", ["10.0.0.0/8"]), lb("c", "10.96.0.3", ["10.1.0.0/16", "198.51.100.0/24"])]
    slices = [b.endpoint_slice("a", ["10.244.2.5"], EP_PORTS), b.endpoint_slice("c", ["10.244.2.6"], EP_PORTS)]
    plane, t = program(services, slices)
    assert t.trace("10.2.0.1", "tcp", "192.0.2.10", 80).endpoints == {"10.244.2.5:8080"}
    assert t.trace("198.51.100.7", "tcp", "192.0.2.10", 80).verdict == "DROP"        # a's ranges hold
    before = policies(services, slices)[4]
    now = policies(services[1:], slices)
    plane.sync(now, set(before))                                                     # a goes: c takes over
    t = Programmed(plane, LOCAL)
    assert t.trace("198.51.100.7", "tcp", "192.0.2.10", 80).endpoints == {"10.244.2.6:8080"}
    assert t.trace("10.2.0.1", "tcp", "192.0.2.10", 80).verdict == "DROP"


def test_a_load_balancer_ip_that_is_also_an_external_ip_is_not_guarded():
    """As in iptables, where the external-IP rule matches first."""
    svc = lb("a", "10.96.0.1", ["10.0.0.0/8"], externalIPs=["192.0.2.10"])
    _, t = program([svc], [b.endpoint_slice("a", ["10.244.2.5"], EP_PORTS)])
    assert t.trace("203.0.113.5", "tcp", "192.0.2.10", 80).endpoints == {"10.244.2.5:8080"}


def test_a_flushed_table_is_drift():
    plane, _ = program([web()], [b.endpoint_slice("web", ["10.244.2.5"], EP_PORTS)])
    applier = plane.appliers[4]
    assert applier.drift() is None
    for rules in applier.nft.tables["ip"]["chains"].values():       # what `nft flush table ip netplane` leaves
        rules.clear()
    assert "flushed" in applier.drift()
