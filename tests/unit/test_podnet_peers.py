"""Conflicting node objects never reach the kernel."""
import dataclasses

import netaddr

from netplane.lab import topology
from netplane.podnet.model import node_from_object
from netplane.podnet.peers import sane_peers
from netplane.podnet.plan import Underlay

NET = netaddr.IPNetwork
UNDERLAY = Underlay("eth0", 2, 1500, (NET("192.168.200.0/24"), NET("fd00:200::/64")))


def node(i, **changes):
    n = node_from_object(topology.node_object(topology.node_addressing(i)))
    return dataclasses.replace(n, **changes)


def names(kept):
    return [n.name for n in kept]


def test_well_formed_peers_are_all_kept_in_name_order():
    kept, problems = sane_peers(node(1), [node(3), node(2)], UNDERLAY)
    assert names(kept) == ["node2", "node3"] and problems == []


def test_overlaps_with_this_node_the_underlay_or_an_earlier_peer_are_left_out():
    peers = [node(2), node(3, pod_cidrs=(NET("10.244.0.0/16"),)),            # covers node1's CIDR
             node(4, pod_cidrs=(NET("192.168.200.128/25"),)),                # inside the underlay
             node(5, pod_cidrs=(NET("10.244.2.0/25"),)),                     # inside node2's
             node(6)]
    kept, problems = sane_peers(node(1), peers, UNDERLAY)
    assert names(kept) == ["node2", "node6"]
    assert [p.split(":")[0] for p in problems] == ["peer node3", "peer node4", "peer node5"]
    assert "this node's pod CIDR" in problems[0] and "underlay" in problems[1] and "node2's" in problems[2]


def test_duplicate_node_ips_and_vtep_macs_are_left_out():
    me = node(1)
    peers = [node(2, vtep_mac="0a:00:00:00:00:02"), node(3, internal_ips=me.internal_ips[:1]),
             node(4, vtep_mac="0a:00:00:00:00:02")]
    kept, problems = sane_peers(me, peers, UNDERLAY)
    assert names(kept) == ["node2"]
    assert "also this node's" in problems[0] and "VTEP MAC" in problems[1]
