import netaddr
import pytest

from netplane.lab import topology
from netplane.podnet.model import VTEP_MAC_ANNOTATION, InvalidNode, derived_vtep_mac, node_from_object


def node_obj(name="node1", ips=("192.168.200.11",), cidrs=("10.244.1.0/24",), annotations=None):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"podCIDRs": list(cidrs)},
            "status": {"addresses": [{"type": "Hostname", "address": name}]
                       + [{"type": "InternalIP", "address": ip} for ip in ips]}}


def test_parses_a_lab_node_object():
    node = node_from_object(topology.node_object(topology.node_addressing(3)))
    assert node.name == "node3"
    assert node.internal_ips == (netaddr.IPAddress("192.168.200.13"), netaddr.IPAddress("fd00:200::d"))
    assert node.pod_cidrs == (netaddr.IPNetwork("10.244.3.0/24"), netaddr.IPNetwork("fd00:10:244:3::/64"))
    assert node.ip_of_family(6) == netaddr.IPAddress("fd00:200::d") and node.vtep_mac is None


def test_falls_back_to_the_single_pod_cidr_field_and_reads_the_vtep_annotation():
    obj = node_obj(annotations={VTEP_MAC_ANNOTATION: "0A:00:00:00:00:01"})
    obj["spec"] = {"podCIDR": "10.244.9.0/24"}
    node = node_from_object(obj)
    assert node.pod_cidrs == (netaddr.IPNetwork("10.244.9.0/24"),) and node.vtep_mac == "0a:00:00:00:00:01"


@pytest.mark.parametrize("change, reason", [
    (lambda o: o["metadata"].update(name="Bad_Name"), "DNS subdomain"),
    (lambda o: o["status"].update(addresses=[]), "no InternalIP"),
    (lambda o: o["status"]["addresses"].append({"type": "InternalIP", "address": "nope"}), "not an IP"),
    (lambda o: o["spec"].update(podCIDRs=[]), "no spec.podCIDRs"),
    (lambda o: o["spec"].update(podCIDRs=["10.244.1.7/24"]), "host bits"),
    (lambda o: o["spec"].update(podCIDRs=["10.244.1.0/24", "10.244.2.0/24"]), "same IP family"),
    (lambda o: o["status"]["addresses"].append({"type": "InternalIP", "address": 1}), "not an IP"),
    (lambda o: o["status"]["addresses"].append({"type": "InternalIP", "address": "127.0.0.1"}), "not a routable"),
    (lambda o: o["status"]["addresses"].append({"type": "InternalIP", "address": "::"}), "not a routable"),
    (lambda o: o["spec"].update(podCIDRs=["0.0.0.0/0"]), "covers every address"),
    (lambda o: o["spec"].update(podCIDRs="10.244.1.0/24"), "not a list"),
    (lambda o: o.update(kind="Pod"), "not a v1 Node"),
    (lambda o: o.update(spec="x"), "spec is not an object"),
])
def test_unusable_nodes_are_refused_with_the_reason(change, reason):
    obj = node_obj()
    change(obj)
    with pytest.raises(InvalidNode, match=reason):
        node_from_object(obj)


def test_derived_vtep_mac_is_stable_unicast_and_locally_administered():
    mac = derived_vtep_mac("node1")
    assert mac == derived_vtep_mac("node1") != derived_vtep_mac("node2")
    first = int(mac.split(":")[0], 16)
    assert first & 0x01 == 0 and first & 0x02 == 2


@pytest.mark.parametrize("bad", ["zz", "01:00:5e:00:00:01", 7])
def test_a_broken_vtep_annotation_is_ignored_not_fatal(bad):
    node = node_from_object(node_obj(annotations={VTEP_MAC_ANNOTATION: bad}))
    assert node.name == "node1" and node.vtep_mac is None
