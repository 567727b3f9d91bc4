"""diff.changes: what edits, in what order."""
from dataclasses import replace

import netaddr

from netplane.lab import topology
from netplane.podnet.diff import Op, changes
from netplane.podnet.model import node_from_object
from netplane.podnet.modes import routed, vxlan
from netplane.podnet.plan import Plan, Settings, Underlay

IP, NET = netaddr.IPAddress, netaddr.IPNetwork
UNDERLAY = Underlay("eth0", 2, 1500, (NET("192.168.200.0/24"), NET("fd00:200::/64")))


def plan_for(count, module=vxlan, **settings):
    me, *peers = [node_from_object(topology.node_object(topology.node_addressing(i))) for i in range(1, count + 1)]
    return module.plan(me, peers, UNDERLAY, Settings(**settings))


def kinds(ops):
    return [(op.action, op.kind) for op in ops]


def test_from_nothing_the_device_comes_first_then_neighbour_fdb_route():
    ops = changes(plan_for(2), Plan())
    assert kinds(ops) == [("create", "device"), ("replace", "address"), ("replace", "address"),
                          ("replace", "neighbours"), ("replace", "neighbours"), ("replace", "fdb"),
                          ("replace", "routes"), ("replace", "routes")]


def test_a_converged_node_needs_no_edits():
    want = plan_for(3)
    assert changes(want, want) == []


def test_a_removed_peer_loses_route_then_fdb_then_neighbours():
    have, want = plan_for(3), plan_for(2)
    ops = changes(want, have)
    assert kinds(ops) == [("delete", "routes"), ("delete", "routes"), ("delete", "fdb"),
                          ("delete", "neighbours"), ("delete", "neighbours")]
    assert {op.key for op in ops if op.kind == "routes"} == {NET("10.244.3.0/24"), NET("fd00:10:244:3::/64")}


def test_a_peer_with_a_new_node_ip_gets_its_fdb_entry_replaced_only():
    want = plan_for(2)
    mac = next(iter(want.fdb))
    have = replace(want, fdb={mac: IP("192.168.200.99")})
    assert changes(want, have) == [Op("replace", "fdb", mac, IP("192.168.200.12"))]


def test_device_settings_decide_between_update_and_recreate():
    want = plan_for(2)
    assert kinds(changes(want, replace(want, device=replace(want.device, mtu=1400)))) == [("update", "device")]
    assert kinds(changes(want, replace(want, device=replace(want.device, up=False)))) == [("update", "device")]
    ops = changes(want, replace(want, device=replace(want.device, vni=99)))
    # a recreated device comes back empty, so every entry is installed again
    assert kinds(ops)[0] == ("recreate", "device") and len(ops) == 1 + 2 + 2 + 1 + 2


def test_switching_to_routed_deletes_the_device_and_installs_routes_via_node_ips():
    have, want = plan_for(2), plan_for(2, routed, mode="routed")
    ops = changes(want, have)
    assert kinds(ops) == [("delete", "device"), ("replace", "routes"), ("replace", "routes")]
    assert all(op.value.oif == "eth0" for op in ops[1:])
