"""RBAC cannot drift from the code: the real `netplane agent` and `netplane
proxy` run against the fake API server, each against its own, in a
throwaway node namespace; once they have synced, every request each one
made must be allowed by the ClusterRole its DaemonSet's ServiceAccount is
bound to in deploy/. A call added to the code without its rule fails here
rather than as a 403 on a cluster."""
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from netplane import sandbox
from netplane.kube.client import ENDPOINTSLICES, NODES, SERVICES
from netplane.kube.fake_apiserver import FakeApiServer
from netplane.podnet.model import VTEP_MAC_ANNOTATION

pytestmark = pytest.mark.kernel

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NODE_IPS = {"node1": "192.168.77.11", "node2": "192.168.77.12"}
CLUSTER_IP = "10.96.77.10"


# --- RBAC, as the API server's authorizer reads a request --------------------------------------

@dataclass(frozen=True)
class Access:
    verb: str
    group: str = ""
    resource: str = ""             # "nodes", or "nodes/status" for a subresource
    name: str = ""
    path: str = ""                 # for a non-resource URL (/version, /healthz): the path, no resource


def access_of(method: str, target: str) -> Access:
    """What a request asks, in RBAC's terms (k8s.io/apiserver's RequestInfo):
    GET on a collection is list, or watch with ?watch=true; on one object, get."""
    url = urlsplit(target)
    query = dict(parse_qsl(url.query))
    parts = url.path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return Access(method.lower(), path=url.path)
    if rest[0] == "namespaces" and len(rest) >= 3:        # namespaced: namespaces/NS/RESOURCE[/NAME[/SUB]]
        rest = rest[2:]
    resource = "/".join([rest[0]] + rest[2:3])
    name = rest[1] if len(rest) > 1 else ""
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}
    if method == "GET":
        verb = "get" if name else "watch" if query.get("watch") in ("1", "true") else "list"
    else:
        verb = verbs[method]
    return Access(verb, group, resource, name)


def _matches(values: list[str], value: str) -> bool:
    return "*" in values or value in values


def allowed(rules: list[dict], access: Access) -> bool:
    for rule in rules:
        if not _matches(rule.get("verbs", []), access.verb):
            continue
        if access.path:
            if any(u == access.path or (u.endswith("*") and access.path.startswith(u[:-1]))
                   for u in rule.get("nonResourceURLs", [])):
                return True
        elif (_matches(rule.get("apiGroups", []), access.group) and _matches(rule.get("resources", []), access.resource)
              and (not rule.get("resourceNames") or access.name in rule["resourceNames"])):
            return True
    return False


def rules_of(daemonset: str) -> list[dict]:
    """The rules of every ClusterRole bound to the ServiceAccount the DaemonSet runs as."""
    objects = [o for p in sorted(DEPLOY.glob("*.yaml")) for o in yaml.safe_load_all(p.read_text()) if o]
    [ds] = [o for o in objects if o["kind"] == "DaemonSet" and o["metadata"]["name"] == daemonset]
    account = (ds["metadata"]["namespace"], ds["spec"]["template"]["spec"]["serviceAccountName"])
    roles = {b["roleRef"]["name"] for b in objects if b["kind"] == "ClusterRoleBinding"
             for s in b["subjects"] if s["kind"] == "ServiceAccount" and (s["namespace"], s["name"]) == account}
    rules = [rule for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] in roles
             for rule in o["rules"]]
    assert rules, f"{daemonset}: its ServiceAccount {account} is bound to no ClusterRole with rules"
    return rules


def requests_of(api: FakeApiServer) -> list[tuple[str, str]]:
    """(method, path with query) per request, oldest first."""
    out = []
    for request in list(api.requests):
        if len(request) == 3:               # (method, path, query dict), the recorder's first form
            method, path, query = request
            out.append((method, path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")))
        else:
            out.append((request[0], request[1]))
    return out


def denied(daemonset: str, requests: list[tuple[str, str]]) -> list[str]:
    rules = rules_of(daemonset)
    return sorted({f"{m} {t} ({access_of(m, t)})" for m, t in requests if not allowed(rules, access_of(m, t))})


# --- the evaluator itself: it must be able to say no --------------------------------------------

@pytest.mark.parametrize("method, target, verb, group, resource, name", [
    ("GET", "/api/v1/services?resourceVersion=0", "list", "", "services", ""),
    ("GET", "/api/v1/services?watch=true&resourceVersion=5", "watch", "", "services", ""),
    ("GET", "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices?watch=1", "watch", "discovery.k8s.io",
     "endpointslices", ""),
    ("GET", "/api/v1/nodes/node1", "get", "", "nodes", "node1"),
    ("PATCH", "/api/v1/nodes/node1", "patch", "", "nodes", "node1"),
    ("PATCH", "/api/v1/nodes/node1/status", "patch", "", "nodes/status", "node1"),
    ("POST", "/apis/events.k8s.io/v1/namespaces/default/events", "create", "events.k8s.io", "events", ""),
    ("DELETE", "/api/v1/namespaces/default/services", "deletecollection", "", "services", ""),
])
def test_a_request_maps_to_its_rbac_verb_and_resource(method, target, verb, group, resource, name):
    assert access_of(method, target) == Access(verb, group, resource, name)


def test_the_roles_refuse_what_the_daemons_must_not_do():
    proxy, agent = rules_of("netplane-proxy"), rules_of("netplane-agent")
    assert allowed(proxy, access_of("GET", "/api/v1/services?watch=true"))
    assert not allowed(proxy, access_of("PATCH", "/api/v1/nodes/node1"))
    assert not allowed(proxy, access_of("DELETE", "/api/v1/namespaces/default/services/a"))
    assert not allowed(proxy, access_of("GET", "/api/v1/secrets"))
    assert not allowed(proxy, access_of("GET", "/version"))
    assert allowed(agent, access_of("PATCH", "/api/v1/nodes/node1"))
    assert not allowed(agent, access_of("PATCH", "/api/v1/nodes/node1/status"))
    assert not allowed(agent, access_of("GET", "/api/v1/services"))


# --- the daemons, for real -------------------------------------------------------------------------

def node_object(name: str, pod_cidr: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": NODE_IPS[name]},
                                     {"type": "Hostname", "address": name}]}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"type": "ClusterIP", "clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP], "ipFamilies": ["IPv4"],
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
SLICE = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["10.244.2.5"], "conditions": {"ready": True}, "nodeName": "node2"}]}


@pytest.fixture
def node():
    """A node namespace with an underlay address, and the API servers started in it."""
    with sandbox.Sandbox() as sb:
        netns = sb.netns("rbac")
        # a veth pair with both ends here: a link that carries the node's address and is up
        sb.run(netns, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"])
        sb.run(netns, ["ip", "addr", "add", f"{NODE_IPS['node1']}/24", "dev", "eth0"])
        for link in ("eth0", "eth0-peer"):
            sb.run(netns, ["ip", "link", "set", link, "up"])
        servers = []

        def api_server() -> FakeApiServer:
            server = FakeApiServer.in_netns(netns, "127.0.0.1", bookmark_interval=0.5).start()
            servers.append(server)
            for name, cidr in (("node1", "10.244.1.0/24"), ("node2", "10.244.2.0/24")):
                server.put(NODES, node_object(name, cidr))
            return server

        try:
            yield sb, netns, api_server
        finally:
            for server in servers:
                server.stop()


def netplane(sb, netns, log: Path, *args) -> subprocess.Popen:
    """The daemon, logging to `log` (errors before its logging starts too)."""
    with open(log, "ab") as out:
        return sb.spawn(netns, [sys.executable, "-m", "netplane", *args, "--log-file", str(log)], stderr=out)


def test_every_request_of_the_agent_is_allowed_by_its_cluster_role(node, tmp_path):
    sb, netns, api_server = node
    api = api_server()
    status = tmp_path / "network.json"
    log = tmp_path / "agent.log"
    agent = netplane(sb, netns, log, "agent", "--kubeconfig", api.kubeconfig(tmp_path / "kubeconfig"),
                     "--node-name", "node1", "--state-file", str(tmp_path / "node.json"),
                     "--status-file", str(status), "--resync-interval", "1")

    def synced() -> bool:
        assert agent.poll() is None, log.read_text()
        report = json.loads(status.read_text()) if status.exists() else {}
        annotations = api.get(NODES, "node1")["metadata"].get("annotations", {})
        return report.get("ready") and report.get("peers") == ["node2"] and VTEP_MAC_ANNOTATION in annotations

    sandbox.wait_for(synced, timeout=20, what="the agent to reach node2 and announce its VTEP MAC")
    sandbox.wait_for(lambda: ("GET", "watch", "nodes") in verbs(api), what="the agent's node watch")
    sb.stop(agent)

    done = requests_of(api)
    # it read the nodes and patched its own: the rules were put to the test
    assert {("GET", "list", "nodes"), ("PATCH", "patch", "nodes")} <= verbs(api), done
    assert not denied("netplane-agent", done)


def verbs(api: FakeApiServer) -> set[tuple[str, str, str]]:
    return {(m, access_of(m, t).verb, access_of(m, t).resource) for m, t in requests_of(api)}


def test_every_request_of_the_proxy_is_allowed_by_its_cluster_role(node, tmp_path):
    sb, netns, api_server = node
    api = api_server()
    api.put(SERVICES, SERVICE)
    api.put(ENDPOINTSLICES, SLICE)
    log = tmp_path / "proxy.log"
    proxy = netplane(sb, netns, log, "proxy", "--kubeconfig", api.kubeconfig(tmp_path / "kubeconfig"),
                     "--hostname-override", "node1", "--mode", "iptables", "--cluster-cidr", "10.244.0.0/16",
                     "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "",
                     "--sync-period", "1s")

    def programmed() -> bool:
        assert proxy.poll() is None, log.read_text()
        rules = sb.run(netns, ["iptables-save", "-t", "nat"]).stdout.decode()
        healthz = sb.run(netns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                 "http://127.0.0.1:10256/healthz"], check=False).stdout.decode()
        return CLUSTER_IP in rules and healthz == "200"

    sandbox.wait_for(programmed, timeout=20, what="the proxy to program the Service and answer /healthz")
    watched = {("GET", "watch", "services"), ("GET", "watch", "endpointslices"), ("GET", "watch", "nodes")}
    sandbox.wait_for(lambda: watched <= verbs(api), what="the proxy's watches")
    sb.stop(proxy)

    done = requests_of(api)
    assert {("GET", "list", "services"), ("GET", "list", "endpointslices")} | watched <= verbs(api), done
    assert not denied("netplane-proxy", done)
