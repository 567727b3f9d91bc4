"""Service and EndpointSlice objects into the proxy model, and their rejection."""
import netaddr
import pytest

from netplane.proxy.model import PortName
from netplane.proxy.objects import InvalidObject, endpoint_slice, service_ports

IP, NET = netaddr.IPAddress, netaddr.IPNetwork


def service(**spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}], **spec}}


def test_a_cluster_ip_service():
    [port] = service_ports(service())
    assert port.name == PortName("shop", "web") and str(port.name) == "shop/web"
    assert (port.protocol, port.port, port.cluster_ips) == ("TCP", 80, (IP("10.96.0.10"),))
    assert port.node_port == 0 and not port.externally_accessible and port.uses_cluster_endpoints


def test_a_dual_stack_load_balancer_with_everything():
    obj = service(type="LoadBalancer", clusterIPs=["10.96.0.10", "fd00:96::10"], ipFamilies=["IPv4", "IPv6"],
                  ports=[{"name": "http", "port": 80, "nodePort": 30080},
                         {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}],
                  externalIPs=["192.0.2.10"], loadBalancerSourceRanges=["198.51.100.0/24 "],
                  sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
                  externalTrafficPolicy="Local", healthCheckNodePort=32000, trafficDistribution="PreferClose")
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example"}]}}
    http, dns = service_ports(obj)
    assert http.name.port == "http" and dns.protocol == "UDP" and dns.node_port == 30053
    assert http.cluster_ips == (IP("10.96.0.10"), IP("fd00:96::10"))
    assert http.load_balancer_ips == (IP("203.0.113.7"),) and http.external_ips == (IP("192.0.2.10"),)
    assert http.load_balancer_source_ranges == (NET("198.51.100.0/24"),)
    assert http.affinity_timeout == 60 and http.external_local and not http.internal_local
    assert http.health_check_node_port == 32000 and http.topology_aware
    assert http.uses_local_endpoints and http.uses_cluster_endpoints      # internal traffic stays Cluster


def test_defaults_affinity_timeout_and_ignores_node_ports_and_lb_fields_on_cluster_ip():
    [port] = service_ports(service(sessionAffinity="ClientIP", ports=[{"port": 80, "nodePort": 30080}],
                                   loadBalancerSourceRanges=["10.0.0.0/8"]))
    assert port.affinity_timeout == 10800 and port.node_port == 0 and port.load_balancer_source_ranges == ()


@pytest.mark.parametrize("spec", [{"clusterIP": "None"}, {"type": "ExternalName", "externalName": "x.example"}])
def test_headless_and_external_name_services_have_nothing_to_proxy(spec):
    assert service_ports(service(**spec)) == ()


@pytest.mark.parametrize("change, reason", [
    ({"type": "Magic"}, "spec.type"),
    ({"clusterIP": "10.96.0.999"}, "not an IP address"),
    ({"ports": [{"port": 0}]}, "not a port number"),
    ({"ports": [{"port": 80, "protocol": "ICMP"}]}, "protocol"),
    ({"ports": [{"port": 80}, {"port": 81}]}, "must name each one"),
    ({"sessionAffinity": "Cookie"}, "sessionAffinity"),
    ({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}, "timeoutSeconds"),
    ({"externalTrafficPolicy": "Nearby"}, "externalTrafficPolicy"),
    ({"externalIPs": "192.0.2.1"}, "not a list"),
    ({"clusterIPs": ["10.96.0.1", "10.96.0.2"]}, "two addresses of one family"),
])
def test_invalid_services_are_refused_with_the_reason(change, reason):
    with pytest.raises(InvalidObject, match=reason):
        service_ports(service(**change))


def slice_(endpoints, address_type="IPv4", ports=({"name": "http", "port": 8080},)):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": address_type, "ports": list(ports), "endpoints": endpoints}


def test_an_endpoint_slice_with_conditions_topology_and_hints():
    s = endpoint_slice(slice_([
        {"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "nodeName": "node1", "zone": "a",
         "hints": {"forZones": [{"name": "a"}], "forNodes": [{"name": "node1"}]}},
        {"addresses": ["10.244.2.6"], "conditions": {"ready": False, "serving": True, "terminating": True}},
        {"addresses": ["10.244.3.7"]},                                   # no conditions: ready, per the API
    ]))
    assert (s.namespace, s.service, s.name) == ("shop", "web", "web-abc")
    first, second, third = s.ports[("http", "TCP")]
    assert first.ip == IP("10.244.1.5") and first.port == 8080 and first.node == "node1"
    assert first.hint_zones == {"a"} and first.hint_nodes == {"node1"} and second.hint_nodes == frozenset()
    assert first.is_local("node1") and not first.is_local("")
    assert not second.ready and second.serving_terminating
    assert third.ready and third.serving and not third.terminating


def test_slices_the_proxy_ignores():
    assert endpoint_slice(slice_([], address_type="FQDN")) is None
    unlabelled = slice_([])
    del unlabelled["metadata"]["labels"]
    assert endpoint_slice(unlabelled) is None
    for label in ("service.kubernetes.io/service-proxy-name", "service.kubernetes.io/headless"):
        theirs = slice_([{"addresses": ["10.0.0.1"]}])
        theirs["metadata"]["labels"][label] = ""
        assert endpoint_slice(theirs) is None, label


@pytest.mark.parametrize("value", ["other-proxy", ""])
def test_a_service_left_to_another_proxy_by_its_label_has_nothing_to_proxy(value, caplog):
    caplog.set_level("DEBUG", "netplane.proxy")
    obj = service()
    obj["metadata"]["labels"] = {"app": "web", "service.kubernetes.io/service-proxy-name": value}
    assert service_ports(obj) == ()
    # normal, not a problem: said at debug level only, with the reason
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", f"ignoring Service shop/web: labelled service.kubernetes.io/service-proxy-name={value!r}")]
    obj["metadata"]["labels"] = {"app": "web", "service.kubernetes.io/headless": ""}
    assert service_ports(obj) == ()
    del obj["metadata"]["labels"]["service.kubernetes.io/headless"]
    assert len(service_ports(obj)) == 1


@pytest.mark.parametrize("obj, reason", [
    (slice_([{"addresses": ["fd00::1"]}]), "not all IPv4"),
    (slice_([{"addresses": ["10.0.0.1"]}], ports=({"port": 70000},)), "not a port number"),
    (slice_([], address_type="IPv5"), "addressType"),
    (slice_([{"addresses": "10.0.0.1"}]), "not a list"),
    ({"kind": "Service"}, "not a EndpointSlice"),
])
def test_invalid_slices_are_refused_with_the_reason(obj, reason):
    with pytest.raises(InvalidObject, match=reason):
        endpoint_slice(obj)


def test_endpoints_come_in_address_order_each_once_with_their_canonical_text():
    s = endpoint_slice(slice_([{"addresses": ["10.244.1.10"]}, {"addresses": ["10.244.1.9"], "nodeName": "n1"},
                               {"addresses": ["10.244.1.9"], "nodeName": "n2"}],
                              ports=({"name": "http", "port": 8080}, {"name": "metrics", "port": 9090})))
    for key, number in ((("http", "TCP"), 8080), (("metrics", "TCP"), 9090)):
        assert [(e.address, e.port, e.node) for e in s.ports[key]] == [("10.244.1.9", number, "n1"),
                                                                        ("10.244.1.10", number, "")]
    [e] = endpoint_slice(slice_([{"addresses": ["FD00:0::0A"]}], address_type="IPv6")).ports[("http", "TCP")]
    assert e.ip == IP("fd00::a") and e.address == "fd00::a" == str(e.ip)


def test_an_endpoint_derives_its_address_unless_given():
    from dataclasses import replace

    from netplane.proxy.model import Endpoint
    e = Endpoint(IP("fd00::a"), 80)
    assert e.address == "fd00::a" and e == Endpoint(IP("fd00::a"), 80, address="fd00::a")
    assert replace(e, ip=IP("10.0.0.1")).address == "10.0.0.1"            # never a stale copy
    assert replace(e, port=81).address == "fd00::a" and hash(e) == hash(Endpoint(IP("fd00::a"), 80))


# Names reach iptables-restore input (comments, chain-name hashes): anything
# the API server would refuse is refused here, a quote or a newline first.
INJECTION = 'web" -j ACCEPT\n-A KUBE'


@pytest.mark.parametrize("change, reason", [
    ({"metadata": {"name": INJECTION}}, "metadata.name .* is not an RFC 1035 DNS label"),
    ({"metadata": {"name": "Web"}}, "metadata.name 'Web' is not an RFC 1035"),
    ({"metadata": {"name": "1web"}}, "metadata.name '1web' is not an RFC 1035"),
    ({"metadata": {"name": "w" * 64}}, "is not an RFC 1035"),
    ({"metadata": {"name": "web", "namespace": "shop\n"}},
     r"metadata.namespace 'shop\\n' is not an RFC 1123 DNS label"),
    ({"metadata": {"name": "web", "namespace": ["shop"]}}, "metadata.namespace"),
    ({"spec": {"clusterIP": "10.96.0.10", "ports": [{"name": 'http"', "port": 80}]}},
     r"spec.ports\[0\].name 'http\"' is not an RFC 1123 DNS label"),
    ({"spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "a", "port": 80}, {"name": "B", "port": 81}]}},
     r"spec.ports\[1\].name"),
    ({"spec": {"clusterIP": "10.96.0.10", "ports": [{"name": ["x"], "port": 80}]}}, r"spec.ports\[0\].name"),
])
def test_services_with_names_the_api_server_refuses_are_refused(change, reason):
    with pytest.raises(InvalidObject, match=reason):
        service_ports(service() | change)


def test_names_the_api_server_takes_are_taken():
    obj = service(ports=[{"name": "metrics-and-health-checks", "port": 80}, {"name": "8080", "port": 8080}])
    obj["metadata"] = {"name": "w" + "-1" * 31, "namespace": "0-team"}
    assert [p.name.port for p in service_ports(obj)] == ["metrics-and-health-checks", "8080"]
    s = slice_([{"addresses": ["10.0.0.1"]}])
    s["metadata"]["name"] = "web.abc-1." + "x" * 63
    assert endpoint_slice(s).name == s["metadata"]["name"]


def with_meta(obj, **meta):
    return obj | {"metadata": obj["metadata"] | meta}


@pytest.mark.parametrize("obj, reason", [
    (with_meta(slice_([]), name="web_1"), "metadata.name 'web_1' is not an RFC 1123 DNS subdomain"),
    (with_meta(slice_([]), name="a" * 254), "is not an RFC 1123 DNS subdomain"),
    (with_meta(slice_([]), namespace="Shop"), "metadata.namespace 'Shop'"),
    (with_meta(slice_([]), labels={"kubernetes.io/service-name": INJECTION}),
     r"metadata.labels\['kubernetes.io/service-name'\] .* is not an RFC 1123 DNS label"),
    (with_meta(slice_([]), labels={"kubernetes.io/service-name": ["web"]}), "service-name"),
    (with_meta(slice_([]), labels=["kubernetes.io/service-name"]), "metadata.labels is not an object"),
    (slice_([], ports=({"name": "http\n", "port": 80},)), r"ports\[0\].name"),
    (slice_([{"addresses": ["10.0.0.1"], "nodeName": ["n1"]}]), "nodeName and zone must be strings"),
    (slice_([{"addresses": ["10.0.0.1"], "hints": {"forZones": [{"name": ["a"]}]}}]), "a zone name is not a string"),
    (slice_([{"addresses": ["10.0.0.1"], "hints": {"forNodes": [{"name": 7}]}}]), "a node name is not a string"),
    (slice_([{"addresses": ["10.0.0.1"], "conditions": []}]), r"endpoints\[0\].conditions is not an object"),
    (slice_([{"addresses": ["10.0.0.1"]}, 5]), r"endpoints\[1\] is not an object"),
    (slice_([{"addresses": ["10.0.0.1", "fd00::1"]}]), "not all IPv4"),
    (slice_([{"addresses": ["fd00::1", "10.0.0.300"]}]),
     r"endpoints\[0\].addresses: '10.0.0.300' is not an IP address"),
    (slice_([{"addresses": ["10.0.0.01"]}]), "'10.0.0.01' is not an IP address"),
])
def test_slices_with_what_the_api_server_refuses_are_refused(obj, reason):
    with pytest.raises(InvalidObject, match=reason):
        endpoint_slice(obj)
