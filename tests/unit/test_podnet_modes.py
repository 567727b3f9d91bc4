"""The pure plans of both modes, from nodes and an underlay to kernel entries."""
import netaddr

from netplane.lab import topology
from netplane.podnet.model import derived_vtep_mac, node_from_object
from netplane.podnet.modes import routed, vxlan
from netplane.podnet.plan import Route, Settings, Underlay

IP, NET = netaddr.IPAddress, netaddr.IPNetwork


def nodes(count=3, family=4):
    return [node_from_object(topology.node_object(topology.node_addressing(i, family))) for i in range(1, count + 1)]


UNDERLAY = Underlay("eth0", 2, 1500, (NET("192.168.200.0/24"), NET("fd00:200::/64")))


def test_vxlan_plans_one_neighbour_fdb_and_onlink_route_per_peer_family():
    me, *peers = nodes()
    plan = vxlan.plan(me, peers, UNDERLAY, Settings(vni=7, port=4789))
    mac2 = derived_vtep_mac("node2")
    assert plan.device.vni == 7 and plan.device.port == 4789 and plan.device.local == IP("192.168.200.11")
    assert plan.device.mac == derived_vtep_mac("node1") and plan.device.underlay_index == 2
    assert plan.fdb == {mac2: IP("192.168.200.12"), derived_vtep_mac("node3"): IP("192.168.200.13")}
    assert plan.neighbours[IP("10.244.2.0")] == mac2 and plan.neighbours[IP("fd00:10:244:2::")] == mac2
    assert plan.routes[NET("10.244.2.0/24")] == Route(NET("10.244.2.0/24"), IP("10.244.2.0"), "np-vxlan", True)
    assert len(plan.routes) == 4 and len(plan.neighbours) == 4
    assert plan.device_addresses == {NET("10.244.1.0/32"), NET("fd00:10:244:1::/128")}
    assert plan.peers == ("node2", "node3") and not plan.problems


def test_vxlan_mtu_overhead_follows_the_underlay_family():
    assert vxlan.plan(nodes()[0], [], UNDERLAY, Settings()).pod_mtu == 1450
    me = nodes(family=6)[0]
    plan = vxlan.plan(me, [], UNDERLAY, Settings())
    assert plan.pod_mtu == 1430 and plan.device.local == IP("fd00:200::b")


def test_vxlan_uses_the_peers_announced_mac_and_reports_a_peer_without_a_vtep_address():
    me, peer = nodes(2)
    announced = peer.__class__(peer.name, peer.internal_ips, peer.pod_cidrs, "0a:00:00:00:00:02")
    v6_only = peer.__class__("node9", (IP("fd00:200::99"),), (NET("10.244.9.0/24"),))
    plan = vxlan.plan(me, [announced, v6_only], UNDERLAY, Settings())
    assert plan.fdb == {"0a:00:00:00:00:02": IP("192.168.200.12")}
    assert plan.peers == ("node2",) and "node9" in plan.problems[0] and "IPv4" in plan.problems[0]
    assert NET("10.244.9.0/24") not in plan.routes


def test_routed_plans_a_route_per_pod_cidr_via_the_peer_ip_of_that_family():
    me, *peers = nodes()
    plan = routed.plan(me, peers, UNDERLAY, Settings(mode="routed"))
    assert plan.routes[NET("fd00:10:244:3::/64")] == Route(NET("fd00:10:244:3::/64"), IP("fd00:200::d"), "eth0")
    assert len(plan.routes) == 4 and plan.device is None and plan.pod_mtu == 1500 and not plan.problems


def test_routed_leaves_out_a_peer_that_is_not_on_link_and_says_so():
    me, peer = nodes(2)
    far = peer.__class__("far", (IP("10.9.9.9"), IP("fd00:200::99")), (NET("10.244.9.0/24"), NET("fd00:9::/64")))
    plan = routed.plan(me, [peer, far], UNDERLAY, Settings(mode="routed"))
    assert plan.peers == ("node2",)
    assert "far" in plan.problems[0] and "not on-link" in plan.problems[0] and "10.9.9.9" in plan.problems[0]
    # nothing half-configured: not even the IPv6 CIDR, whose gateway is on-link
    assert not {NET("10.244.9.0/24"), NET("fd00:9::/64")} & set(plan.routes)
