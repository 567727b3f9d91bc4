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
