"""snapshot() joins Services with their EndpointSlices; changed() finds what differs."""
import copy

from netplane.proxy.model import PortName
from netplane.proxy.state import changed, snapshot


def service(name="web", ports=({"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"})):
    return {"kind": "Service", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.10", "ports": list(ports)}}


def slice_(name, ips, service="web", port_name="http", protocol="TCP", port=8080):
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": port_name, "port": port, "protocol": protocol}],
            "endpoints": [{"addresses": [ip]} for ip in ips]}


HTTP, DNS = PortName("shop", "web", "http"), PortName("shop", "web", "dns")


def test_endpoints_join_by_service_port_name_and_protocol_merged_and_deduplicated():
    snap = snapshot([service()], [slice_("b", ["10.244.1.2", "10.244.1.1"]), slice_("a", ["10.244.1.2"]),
                                  slice_("c", ["10.244.9.9"], port_name="dns", protocol="TCP"),   # wrong protocol
                                  slice_("d", ["10.244.5.5"], port_name="dns", protocol="UDP", port=5353)])
    assert [str(e.ip) for e in snap.ports[HTTP].endpoints] == ["10.244.1.1", "10.244.1.2"]
    assert [(str(e.ip), e.port) for e in snap.ports[DNS].endpoints] == [("10.244.5.5", 5353)]
    assert snap.skipped == {}


def test_a_bad_object_is_skipped_with_its_reason_and_hides_nothing_else():
    bad = service("broken", ports=({"port": 99999},))
    snap = snapshot([bad, service()], [slice_("a", ["10.244.1.1"]), {"kind": "EndpointSlice", "metadata": "x"}])
    assert set(snap.ports) == {HTTP, DNS}
    assert "not a port number" in snap.skipped["Service shop/broken"]
    assert "metadata is not an object" in snap.skipped["EndpointSlice (unnamed)"]


def test_changed_names_exactly_the_ports_that_differ():
    services, slices = [service(), service("api", ({"port": 443},))], [slice_("a", ["10.244.1.1"])]
    before = snapshot(services, slices).ports
    assert changed(before, snapshot(copy.deepcopy(services), copy.deepcopy(slices)).ports) == set()
    after = snapshot(services, [slice_("a", ["10.244.1.1", "10.244.1.3"])]).ports        # an endpoint added
    assert changed(before, after) == {HTTP}
    after = snapshot(services[:1], slices).ports                                          # a service removed
    assert changed(before, after) == {PortName("shop", "api")}


def test_a_duplicate_endpoint_counts_once_the_first_slice_by_name_and_the_first_listing_winning():
    a = slice_("a", ["10.244.1.2", "10.244.1.1"])
    a["endpoints"][0]["conditions"] = {"ready": False}
    b = slice_("b", ["10.244.1.1", "10.244.1.3", "10.244.1.3"])
    b["endpoints"][0]["conditions"] = {"ready": False}                     # loses to a's ready copy
    b["endpoints"][2]["nodeName"] = "second-listing"                        # loses to the first listing
    for slices in ([a, b], [b, a]):
        endpoints = snapshot([service()], slices).ports[HTTP].endpoints
        assert [(e.address, e.ready, e.node) for e in endpoints] == [
            ("10.244.1.1", True, ""), ("10.244.1.2", False, ""), ("10.244.1.3", True, "")]


def test_dual_stack_slices_merge_into_one_port_in_address_order():
    v6 = slice_("web-v6", ["FD00::10:2", "fd00::1:0002"])
    v6["addressType"] = "IPv6"
    snap = snapshot([service()], [v6, slice_("web-v4", ["10.244.1.2", "10.244.1.1"])])
    assert [e.address for e in snap.ports[HTTP].endpoints] == ["10.244.1.1", "10.244.1.2", "fd00::1:2", "fd00::10:2"]
