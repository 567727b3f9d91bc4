"""A Service labelled service.kubernetes.io/service-proxy-name belongs to
another proxy: in every mode, its addresses get no rules at all (not even
a reject for want of endpoints), while its unlabelled neighbour is served."""
import netaddr
import pytest

from netplane import testing
from netplane.proxy import build as b
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.settings import Settings
from netplane.proxy.state import snapshot

NODE_IP, POD = "192.168.200.11", "10.244.1.9"
PORTS, EP_PORTS = [{"name": "http", "port": 80}], [{"name": "http", "port": 8080}]


@pytest.mark.parametrize("mode", testing.names())
def test_a_service_of_another_proxy_gets_no_rules(mode):
    theirs = b.service("theirs", "10.96.0.20", [dict(PORTS[0], nodePort=30020)], type="NodePort")
    theirs["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "other-proxy"}
    services = [b.service("ours", "10.96.0.10", PORTS), theirs]
    slices = [b.endpoint_slice(name, ["10.244.2.5"], EP_PORTS) for name in ("ours", "theirs")]
    settings = Settings(Node("n1"), (netaddr.IPAddress(NODE_IP),), (netaddr.IPNetwork("10.244.0.0/16"),))
    snap = snapshot(services, slices)
    assert snap.skipped == {} and {n.name for n in snap.ports} == {"ours"}
    policies = {f: family_policies(snap.ports, f, settings.node) for f in settings.families}
    programmed = testing.get(mode).program(settings, policies, [NODE_IP, "127.0.0.1"])
    assert programmed.trace(POD, "tcp", "10.96.0.10", 80, None).endpoints == {"10.244.2.5:8080"}
    for dst, port in (("10.96.0.20", 80), (NODE_IP, 30020)):
        got = programmed.trace(POD, "tcp", dst, port, None)
        assert got.endpoints == set() and got.verdict == "ACCEPT", (mode, dst, got)
