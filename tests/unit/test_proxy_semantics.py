"""Service semantics, for every proxy mode: packets traced through what each
mode compiled and applied to its fake kernel (netplane/testing/). The same
table of cases runs for every harness (both iptables layouts, nftables); a new
mode joins by registering its harness.

Node n1 (192.168.200.11, pod bridge 10.244.1.1) in cluster CIDR 10.244.0.0/16;
its pods are 10.244.1.x, n2's are 10.244.2.x.
"""
import netaddr
import pytest

from netplane import testing
from netplane.proxy import build as b
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.settings import Settings
from netplane.proxy.state import snapshot

NODE_IP, BRIDGE, POD, OTHER_POD, OUTSIDE = "192.168.200.11", "10.244.1.1", "10.244.1.9", "10.244.2.9", "192.168.200.99"
LOCAL_EP, REMOTE_EP = "10.244.1.5:8080", "10.244.2.5:8080"
LOCAL = [NODE_IP, BRIDGE, "127.0.0.1", "fd00:200::11", "::1"]
TCP80 = [{"name": "http", "port": 80, "protocol": "TCP"}]
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
HARNESS = {}


@pytest.fixture(autouse=True, params=testing.names())
def mode(request):
    """Every semantic check runs for every mode's harness."""
    HARNESS["now"] = testing.get(request.param)
    return request.param


def both():
    return [b.endpoint("10.244.1.5", "n1"), b.endpoint("10.244.2.5", "n2")]


def proxy(services, slices, settings=None):
    settings = settings or Settings(Node("n1"), (netaddr.IPAddress(NODE_IP), netaddr.IPAddress("fd00:200::11")),
                                    (netaddr.IPNetwork("10.244.0.0/16"), netaddr.IPNetwork("fd00:10:244::/56")))
    snap = snapshot(services, slices)
    assert snap.skipped == {}
    policies = {f: family_policies(snap.ports, f, settings.node) for f in settings.families}
    return HARNESS["now"].program(settings, policies, LOCAL)


def web(**spec):
    kind = spec.pop("type", "ClusterIP")
    return b.service("web", "10.96.0.10", [dict(TCP80[0], nodePort=30080)] if kind != "ClusterIP" else TCP80,
                     type=kind, **spec)


def trace(programmed, src, dst, port=80, proto="tcp", affinity_to=None):
    return programmed.trace(src, proto, dst, port, affinity_to)


N1_PODS = (netaddr.IPNetwork("10.244.1.0/24"), netaddr.IPNetwork("fd00:10:244:1::/64"))


def masqueraded(got) -> bool:
    """Traffic from another machine under the Cluster policy is masqueraded:
    to every endpoint; or, where a mode leaves it to this node's own
    endpoints (their replies come back through it anyway, as in Cilium), to
    every other node's endpoint and to no local one."""
    if getattr(HARNESS["now"], "snat_local_endpoints", True):
        return got.masquerade
    remote = {ep for ep in got.endpoints if not any(netaddr.IPAddress(ep.rsplit(":", 1)[0].strip("[]")) in n
                                                     for n in N1_PODS)}
    return bool(got.endpoints) and got.masqueraded_to == remote


def test_cluster_ip_reaches_every_endpoint_and_masquerades_only_off_cluster_sources():
    t = proxy([web()], [b.endpoint_slice("web", both(), EP_PORTS)])
    from_pod = trace(t, POD, "10.96.0.10")
    assert from_pod.endpoints == {LOCAL_EP, REMOTE_EP} and from_pod.verdict == "ACCEPT" and not from_pod.masquerade
    assert trace(t, OTHER_POD, "10.96.0.10").masquerade is False
    assert trace(t, NODE_IP, "10.96.0.10").masquerade is True          # the node itself
    assert masqueraded(trace(t, OUTSIDE, "10.96.0.10"))                 # a host routed through the node
    assert trace(t, POD, "10.96.0.10", port=81).endpoints == set()     # another port: not a service


def test_no_endpoints_rejects_at_once_on_every_address():
    t = proxy([web(type="LoadBalancer", externalIPs=["192.0.2.20"], ingress=["192.0.2.10"])], [])
    for src, dst, port in [(POD, "10.96.0.10", 80), (OUTSIDE, "192.0.2.20", 80), (OUTSIDE, "192.0.2.10", 80),
                           (OUTSIDE, NODE_IP, 30080), (NODE_IP, "10.96.0.10", 80)]:
        assert trace(t, src, dst, port).verdict == "REJECT", (src, dst, port)


def test_node_port_on_node_addresses_but_not_loopback():
    """Every local address but loopback under iptables; the node's primary
    IP only under nftables (kube-proxy's defaults): BRIDGE is not it."""
    t = proxy([web(type="NodePort")], [b.endpoint_slice("web", both(), EP_PORTS)])
    got = trace(t, OUTSIDE, NODE_IP, 30080)
    assert got.endpoints == {LOCAL_EP, REMOTE_EP} and masqueraded(got)
    got = trace(t, OUTSIDE, BRIDGE, 30080)
    if HARNESS["now"].nodeports_on_primary_ip:
        assert got.endpoints == set() and got.verdict == "ACCEPT"
    else:
        assert got.endpoints == {LOCAL_EP, REMOTE_EP} and masqueraded(got)
    on_localhost = trace(t, NODE_IP, "127.0.0.1", 30080).endpoints
    assert on_localhost == ({LOCAL_EP, REMOTE_EP} if getattr(HARNESS["now"], "nodeports_on_localhost", False) else set())
    assert trace(t, OUTSIDE, "192.168.200.12", 30080).endpoints == set()     # not this node


def test_node_port_addresses_limit_where_node_ports_answer():
    settings = Settings(Node("n1"), (netaddr.IPAddress(NODE_IP),), (netaddr.IPNetwork("10.244.0.0/16"),),
                        nodeport_addresses=(netaddr.IPNetwork("192.168.200.0/24"),))
    t = proxy([web(type="NodePort")], [b.endpoint_slice("web", both(), EP_PORTS)], settings)
    assert trace(t, OUTSIDE, NODE_IP, 30080).endpoints == {LOCAL_EP, REMOTE_EP}
    assert trace(t, OUTSIDE, BRIDGE, 30080).endpoints == set()


def test_external_policy_local_keeps_the_client_address_and_uses_local_endpoints():
    t = proxy([web(type="NodePort", externalTrafficPolicy="Local")], [b.endpoint_slice("web", both(), EP_PORTS)])
    got = trace(t, OUTSIDE, NODE_IP, 30080)
    assert got.endpoints == {LOCAL_EP} and not got.masquerade
    from_pod = trace(t, OTHER_POD, NODE_IP, 30080)           # pods are not external clients
    assert from_pod.endpoints == {LOCAL_EP, REMOTE_EP}
    from_node = trace(t, NODE_IP, NODE_IP, 30080)
    assert from_node.endpoints == {LOCAL_EP, REMOTE_EP} and from_node.masquerade


def test_external_policy_local_without_local_endpoints_drops_external_traffic_only():
    t = proxy([web(type="NodePort", externalTrafficPolicy="Local")],
              [b.endpoint_slice("web", [b.endpoint("10.244.2.5", "n2")], EP_PORTS)])
    assert trace(t, OUTSIDE, NODE_IP, 30080).verdict == "DROP"
    assert trace(t, POD, NODE_IP, 30080).endpoints == {REMOTE_EP}
    assert trace(t, POD, "10.96.0.10").endpoints == {REMOTE_EP}      # cluster IP: internal policy Cluster


def test_internal_policy_local():
    t = proxy([web(internalTrafficPolicy="Local")], [b.endpoint_slice("web", both(), EP_PORTS)])
    assert trace(t, OTHER_POD, "10.96.0.10").endpoints == {LOCAL_EP}
    t = proxy([web(internalTrafficPolicy="Local")],
              [b.endpoint_slice("web", [b.endpoint("10.244.2.5", "n2")], EP_PORTS)])
    assert trace(t, POD, "10.96.0.10").verdict == "DROP"             # endpoints exist, none here


def test_load_balancer_source_ranges():
    t = proxy([web(type="LoadBalancer", ingress=["192.0.2.10"], loadBalancerSourceRanges=["198.51.100.0/24"])],
              [b.endpoint_slice("web", both(), EP_PORTS)])
    allowed = trace(t, "198.51.100.7", "192.0.2.10")
    assert allowed.endpoints == {LOCAL_EP, REMOTE_EP} and allowed.verdict == "ACCEPT" and masqueraded(allowed)
    assert trace(t, "203.0.113.5", "192.0.2.10").verdict == "DROP"
    assert trace(t, "203.0.113.5", NODE_IP, 30080).endpoints == {LOCAL_EP, REMOTE_EP}   # ranges guard the LB IP only


def test_load_balancer_without_ranges_and_external_ips():
    t = proxy([web(type="LoadBalancer", ingress=["192.0.2.10"], externalIPs=["192.0.2.20"])],
              [b.endpoint_slice("web", both(), EP_PORTS)])
    for dst in ("192.0.2.10", "192.0.2.20"):
        got = trace(t, "203.0.113.5", dst)
        assert got.endpoints == {LOCAL_EP, REMOTE_EP} and masqueraded(got)


def test_client_ip_affinity_sends_a_known_client_back_to_its_endpoint():
    t = proxy([web(sessionAffinity="ClientIP")], [b.endpoint_slice("web", both(), EP_PORTS)])
    assert trace(t, POD, "10.96.0.10").endpoints == {LOCAL_EP, REMOTE_EP}
    assert trace(t, POD, "10.96.0.10", affinity_to=REMOTE_EP).endpoints == {REMOTE_EP}
    assert trace(t, POD, "10.96.0.10", affinity_to=LOCAL_EP).endpoints == {LOCAL_EP}


def at_connect() -> bool:
    """The mode translates a socket's destination at connect() (eBPF): nothing
    is NATed, so nothing needs masquerading for the reply to come back."""
    return getattr(HARNESS["now"], "translates_at_connect", False)


def test_hairpin_traffic_is_masqueraded():
    t = proxy([web()], [b.endpoint_slice("web", both(), EP_PORTS)])
    got = trace(t, "10.244.1.5", "10.96.0.10")
    assert got.endpoints == {LOCAL_EP, REMOTE_EP}
    # the SEP rule marks it when it picks itself, only then (a socket simply connects to itself)
    assert got.masqueraded_to == (set() if at_connect() else {LOCAL_EP})


def test_hairpin_through_a_local_policy_node_port_from_another_nodes_pod():
    """Under externalTrafficPolicy Local, another node's pod reaching this
    node's node port short-circuits to every endpoint, unmasqueraded: when
    it is sent back to itself, only its SEP rule can masquerade it, so the
    compact layout keeps SEP chains for such ports even on other nodes."""
    t = proxy([web(type="NodePort", externalTrafficPolicy="Local")], [b.endpoint_slice("web", both(), EP_PORTS)])
    got = trace(t, "10.244.2.5", NODE_IP, port=30080)
    assert got.endpoints == {LOCAL_EP, REMOTE_EP} and got.masqueraded_to == (set() if at_connect() else {REMOTE_EP})


def test_terminating_endpoints_serve_when_nothing_is_ready():
    eps = [b.endpoint("10.244.1.5", "n1", ready=False, serving=True, terminating=True),
           b.endpoint("10.244.2.5", "n2", ready=False, serving=False, terminating=True)]
    t = proxy([web()], [b.endpoint_slice("web", eps, EP_PORTS)])
    assert trace(t, POD, "10.96.0.10").endpoints == {LOCAL_EP}


def test_udp_and_sctp_ports():
    svc = b.service("dns", "10.96.0.53", [{"name": "dns", "port": 53, "protocol": "UDP"},
                                         {"name": "sig", "port": 3868, "protocol": "SCTP"}])
    t = proxy([svc], [b.endpoint_slice("dns", ["10.244.2.7"], [{"name": "dns", "port": 5353, "protocol": "UDP"}])])
    assert trace(t, POD, "10.96.0.53", 53, "udp").endpoints == {"10.244.2.7:5353"}
    assert trace(t, POD, "10.96.0.53", 53, "tcp").endpoints == set()
    if "sctp" in getattr(HARNESS["now"], "protocols", ("tcp", "udp", "sctp")):
        assert trace(t, POD, "10.96.0.53", 3868, "sctp").verdict == "REJECT"


def test_masquerade_all():
    settings = Settings(Node("n1"), (netaddr.IPAddress(NODE_IP),), (netaddr.IPNetwork("10.244.0.0/16"),),
                        masquerade_all=True)
    t = proxy([web()], [b.endpoint_slice("web", both(), EP_PORTS)], settings)
    # a socket translated at connect() reaches the backend from its own address: nothing to masquerade
    assert trace(t, POD, "10.96.0.10").masquerade is not at_connect()
    assert masqueraded(trace(t, OUTSIDE, "10.96.0.10"))


def test_ipv6_and_dual_stack():
    svc = b.service("web", ["10.96.0.10", "fd00:96::10"], TCP80)
    t = proxy([svc], [b.endpoint_slice("web", both(), EP_PORTS),
                      b.endpoint_slice("web", [b.endpoint("fd00:10:244:2::5", "n2")], EP_PORTS, family=6)])
    got = trace(t, "fd00:10:244:1::9", "fd00:96::10")
    assert got.endpoints == {"[fd00:10:244:2::5]:8080"} and not got.masquerade
    assert masqueraded(trace(t, "fd00:200::99", "fd00:96::10"))
    assert trace(t, POD, "10.96.0.10").endpoints == {LOCAL_EP, REMOTE_EP}
    v6_only = b.service("six", "fd00:96::20", TCP80)
    t = proxy([v6_only], [])
    assert trace(t, "fd00:10:244:1::9", "fd00:96::20").verdict == "REJECT"
    assert trace(t, POD, "10.96.0.20").endpoints == set() and trace(t, POD, "10.96.0.20").verdict == "ACCEPT"


@pytest.mark.parametrize("hints,zone,expected", [(("a",), "a", {LOCAL_EP}), ((), "a", {LOCAL_EP, REMOTE_EP})])
def test_topology_hints_narrow_to_the_zone(hints, zone, expected):
    eps = [b.endpoint("10.244.1.5", "n1", zone="a", hints=hints), b.endpoint("10.244.2.5", "n2", zone="b",
                                                                             hints=("b",) if hints else ())]
    svc = web(trafficDistribution="PreferClose")
    settings = Settings(Node("n1", zone), (netaddr.IPAddress(NODE_IP),), (netaddr.IPNetwork("10.244.0.0/16"),))
    t = proxy([svc], [b.endpoint_slice("web", eps, EP_PORTS)], settings)
    assert trace(t, POD, "10.96.0.10").endpoints == expected


def test_the_node_reaching_its_own_node_port_without_endpoints_is_rejected():
    """The node's own packet crosses OUTPUT and then INPUT, where the
    external-services chain refuses it."""
    t = proxy([web(type="NodePort")], [])
    assert trace(t, NODE_IP, NODE_IP, 30080).verdict == "REJECT"


def test_both_policies_local_still_let_pods_and_the_node_reach_every_endpoint():
    svc = web(type="NodePort", externalTrafficPolicy="Local", internalTrafficPolicy="Local")
    t = proxy([svc], [b.endpoint_slice("web", [b.endpoint("10.244.2.5", "n2")], EP_PORTS)])
    assert trace(t, POD, NODE_IP, 30080).endpoints == {REMOTE_EP}       # the short-circuit for pods
    assert trace(t, NODE_IP, NODE_IP, 30080).endpoints == {REMOTE_EP}
    assert trace(t, OUTSIDE, NODE_IP, 30080).verdict == "DROP"          # external: no local endpoint
    assert trace(t, POD, "10.96.0.10").verdict == "DROP"                # internal: Local, none here


def test_a_load_balancer_with_source_ranges_and_no_endpoints_rejects_allowed_sources():
    t = proxy([web(type="LoadBalancer", ingress=["192.0.2.10"], loadBalancerSourceRanges=["198.51.100.0/24"])], [])
    assert trace(t, "198.51.100.7", "192.0.2.10").verdict == "REJECT"


def test_node_port_addresses_for_one_family_leave_the_other_on_every_address():
    settings = Settings(Node("n1"), (netaddr.IPAddress(NODE_IP), netaddr.IPAddress("fd00:200::11")),
                        (netaddr.IPNetwork("10.244.0.0/16"), netaddr.IPNetwork("fd00:10:244::/56")),
                        nodeport_addresses=(netaddr.IPNetwork("192.168.200.0/24"),))
    svc = b.service("web", ["10.96.0.10", "fd00:96::10"], [dict(TCP80[0], nodePort=30080)], type="NodePort")
    t = proxy([svc], [b.endpoint_slice("web", [b.endpoint("fd00:10:244:2::5", "n2")], EP_PORTS, family=6)],
              settings)
    assert trace(t, "fd00:200::99", "fd00:200::11", 30080).endpoints == {"[fd00:10:244:2::5]:8080"}


def test_a_proxy_mode_load_balancer_ip_is_left_to_the_load_balancer():
    svc = web(type="LoadBalancer")
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "Proxy"}, {"ip": "192.0.2.11"}]}}
    t = proxy([svc], [b.endpoint_slice("web", both(), EP_PORTS)])
    assert trace(t, OUTSIDE, "192.0.2.10").endpoints == set()
    assert trace(t, OUTSIDE, "192.0.2.11").endpoints == {LOCAL_EP, REMOTE_EP}
