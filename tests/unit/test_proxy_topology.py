"""categorize(): kube-proxy's endpoint selection, case by case."""
import dataclasses

import netaddr

from netplane.proxy.model import Endpoint, PortName, ServicePort
from netplane.proxy.topology import categorize

PORT = ServicePort(PortName("ns", "svc"), "TCP", 80, (netaddr.IPAddress("10.96.0.1"),))


def ep(last, node="node1", ready=True, serving=None, terminating=False, zone="", hints=()):
    serving = ready if serving is None else serving
    return Endpoint(netaddr.IPAddress(f"10.244.0.{last}"), 8080, ready, serving, terminating, node, zone,
                    frozenset(hints))


def ips(endpoints):
    return [int(str(e.ip).rsplit(".", 1)[1]) for e in endpoints]


def test_cluster_policy_uses_every_ready_endpoint():
    c = categorize(PORT, [ep(1), ep(2, node="node2"), ep(3, ready=False)], "node1")
    assert ips(c.cluster) == [1, 2] and c.local == () and ips(c.all_reachable) == [1, 2] and c.has_any


def test_falls_back_to_serving_terminating_only_when_nothing_is_ready():
    terminating = ep(2, ready=False, serving=True, terminating=True)
    gone = ep(3, ready=False, serving=False, terminating=True)
    assert ips(categorize(PORT, [ep(1), terminating, gone], "node1").cluster) == [1]
    c = categorize(PORT, [terminating, gone], "node1")
    assert ips(c.cluster) == [2] and c.has_any
    assert categorize(PORT, [gone], "node1") == categorize(PORT, [], "node1")
    assert not categorize(PORT, [gone], "node1").has_any


def test_topology_hints_narrow_to_this_zone_only_when_all_ready_endpoints_have_them():
    port = dataclasses.replace(PORT, topology_aware=True)
    hinted = [ep(1, zone="a", hints=["a"]), ep(2, zone="b", hints=["b"]), ep(3, ready=False)]
    assert ips(categorize(port, hinted, "node1", node_zone="a").cluster) == [1]
    assert ips(categorize(PORT, hinted, "node1", node_zone="a").cluster) == [1, 2]       # not requested
    assert ips(categorize(port, hinted + [ep(4)], "node1", node_zone="a").cluster) == [1, 2, 4]   # one without
    assert ips(categorize(port, hinted, "node1", node_zone="c").cluster) == [1, 2]       # none for this zone
    assert ips(categorize(port, hinted, "node1", node_zone="").cluster) == [1, 2]        # node has no zone


def test_internal_local_uses_only_this_nodes_endpoints_and_reports_remote_ones():
    port = dataclasses.replace(PORT, internal_local=True)
    c = categorize(port, [ep(1, node="node2"), ep(2)], "node1")
    assert c.cluster == () and ips(c.local) == [2] and ips(c.all_reachable) == [2] and c.has_any
    c = categorize(port, [ep(1, node="node2")], "node1")
    assert c.local == () and c.has_any        # endpoints exist, just none here: DROP, not REJECT


def test_local_falls_back_to_local_serving_terminating():
    port = dataclasses.replace(PORT, internal_local=True)
    c = categorize(port, [ep(1, ready=False, serving=True, terminating=True), ep(2, node="node2")], "node1")
    assert ips(c.local) == [1]


def test_external_local_keeps_cluster_endpoints_for_internal_traffic():
    port = dataclasses.replace(PORT, node_port=30080, external_local=True)
    c = categorize(port, [ep(1, node="node2"), ep(2)], "node1")
    assert ips(c.cluster) == [1, 2] and ips(c.local) == [2] and ips(c.all_reachable) == [1, 2]


def test_prefer_same_node_hints_narrow_to_this_node_before_zone_hints():
    port = dataclasses.replace(PORT, topology_aware=True)

    def hinted(last, node, nodes, zone="a"):
        e = ep(last, node=node, zone=zone, hints=[zone])
        return dataclasses.replace(e, hint_nodes=frozenset(nodes))
    same_node = [hinted(1, "node1", ["node1"]), hinted(2, "node2", ["node2"]), hinted(3, "node3", ["node3"], zone="b")]
    assert ips(categorize(port, same_node, "node1", node_zone="a").cluster) == [1]
    assert ips(categorize(port, same_node, "node9", node_zone="a").cluster) == [1, 2]     # no hint for node9: zones
    assert ips(categorize(PORT, same_node, "node1", node_zone="a").cluster) == [1, 2, 3]  # hints not honoured
    one_without = same_node + [ep(4, node="node4", zone="a", hints=["a"])]
    assert ips(categorize(port, one_without, "node1", node_zone="a").cluster) == [1, 2, 4]   # zones, all-or-nothing
