"""healthCheckNodePort: which Services get a check, and what it answers."""
import json
import socket
import urllib.error
import urllib.request

import netaddr
import pytest

from netplane.proxy.model import Endpoint, PortName, ServicePort
from netplane.proxy.service_health import Check, HealthChecks, check_of
from netplane.proxy.state import PortState


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state(name="web", hcnp=0, local=True, endpoints=(), port_name=""):
    sp = ServicePort(PortName("shop", name, port_name), "TCP", 80, (netaddr.IPAddress("10.96.0.1"),),
                     node_port=30080, load_balancer_ips=(netaddr.IPAddress("192.0.2.1"),),
                     external_local=local, health_check_node_port=hcnp)
    return PortState(sp, tuple(endpoints))


def ep(ip, node, ready=True):
    return Endpoint(netaddr.IPAddress(ip), 8080, ready=ready, serving=ready, terminating=not ready, node=node)


def get(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/any/path", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_only_local_policy_services_with_a_port_get_a_check_counting_ready_local_endpoints():
    eps = [ep("10.244.1.5", "n1"), ep("10.244.1.6", "n1", ready=False), ep("10.244.2.5", "n2")]
    assert check_of(state(hcnp=32000, endpoints=eps), "n1") == (32000, Check("shop", "web", 1))
    assert check_of(state(hcnp=32000, endpoints=eps), "n3") == (32000, Check("shop", "web", 0))
    assert check_of(state(hcnp=32000, local=False, endpoints=eps), "n1") is None
    assert check_of(state(hcnp=0, endpoints=eps), "n1") is None
    assert check_of(None, "n1") is None


@pytest.fixture
def checks():
    healthy = {"now": True}
    hc = HealthChecks("n1", lambda: healthy["now"], address="127.0.0.1")
    hc.healthy_flag = healthy
    yield hc
    hc.stop()


def test_answers_as_kube_proxy_does_and_follows_the_syncs(checks):
    port = free_port()
    web = PortName("shop", "web")
    checks.update({web: state(hcnp=port, endpoints=[ep("10.244.1.5", "n1"), ep("10.244.1.7", "n1")])}, full=True)
    assert get(port) == (200, {"service": {"namespace": "shop", "name": "web"}, "localEndpoints": 2,
                               "serviceProxyHealthy": True})
    # a partial sync: the endpoints moved to another node
    checks.update({web: state(hcnp=port, endpoints=[ep("10.244.2.5", "n2")])}, full=False)
    assert get(port) == (503, {"service": {"namespace": "shop", "name": "web"}, "localEndpoints": 0,
                               "serviceProxyHealthy": True})
    # the proxy itself lags behind the cluster: the node is not a good target either
    checks.update({web: state(hcnp=port, endpoints=[ep("10.244.1.5", "n1")])}, full=False)
    checks.healthy_flag["now"] = False
    assert get(port)[0] == 503 and get(port)[1]["serviceProxyHealthy"] is False
    # the Service went away: nothing listens any more
    checks.update({web: None}, full=False)
    assert checks.ports() == {}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_partial_sync_leaves_the_other_checks_alone(checks):
    a, b = free_port(), free_port()
    checks.update({PortName("shop", "a"): state("a", hcnp=a, endpoints=[ep("10.244.1.5", "n1")]),
                   PortName("shop", "b"): state("b", hcnp=b)}, full=True)
    checks.update({PortName("shop", "b"): state("b", hcnp=b, endpoints=[ep("10.244.1.9", "n1")])}, full=False)
    assert {p: c.local_endpoints for p, c in checks.ports().items()} == {a: 1, b: 1}
    checks.update({}, full=True)                          # a full sync without them
    assert checks.ports() == {}


def test_two_services_claiming_one_port_the_first_is_served(checks, caplog):
    port = free_port()
    checks.update({PortName("shop", "a"): state("a", hcnp=port), PortName("shop", "b"): state("b", hcnp=port)},
                  full=True)
    assert checks.ports()[port].name == "a" and "claimed by shop/a and shop/b" in caplog.text


def test_a_services_ports_share_its_check_with_the_highest_count(checks):
    port = free_port()
    checks.update({PortName("shop", "web", "http"): state(hcnp=port, endpoints=[ep("10.244.1.5", "n1")],
                                                          port_name="http"),
                   PortName("shop", "web", "https"): state(hcnp=port, port_name="https")}, full=True)
    assert get(port)[1]["localEndpoints"] == 1
