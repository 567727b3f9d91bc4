"""The real `netplane agent` in a throwaway node namespace, with a nodes
file: its /healthz and /metrics (on loopback there) count a pod's ADD and
DEL and report the pod network. The Sandbox removes the namespaces and
stops the agent by its pid, also on failure."""
import json
import os
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from netplane import sandbox
from netplane.lab import topology
from netplane.netlink.netns import call_in_netns, open_netns

HEALTHZ = "127.0.0.1:10266"
METRICS = "[::1]:10265"          # an IPv6 address too


def get(netns: str, address: str, path: str) -> tuple[int, str]:
    """GET from inside the node's namespace (its loopback is its own)."""
    def fetch():
        try:
            with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    fd = open_netns(netns)
    try:
        return call_in_netns(fd, fetch)
    finally:
        os.close(fd)


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def two_node_source(node) -> str:
    """node1 is this namespace (its underlay a veth whose far end stays
    there too), node2 a peer on the same segment."""
    me = topology.node_addressing(1)
    node.sb.run(node.netns, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "far0"])
    node.sb.run(node.netns, ["ip", "link", "set", "far0", "up"])
    node.sb.run(node.netns, ["ip", "link", "set", "eth0", "up"])
    for cidr in me.underlay:
        node.sb.run(node.netns, ["ip", "addr", "add", cidr, "dev", "eth0"] + (["nodad"] if ":" in cidr else []))
    path = node.tmp / "nodes.json"
    path.write_text(json.dumps(topology.node_list([me, topology.node_addressing(2)])))
    return str(path)


def test_the_agent_serves_health_and_counts_cni_requests(node):
    agent = node.start_agent("--node-name", "node1", "--nodes-file", two_node_source(node),
                             "--resync-interval", "1", "--state-file", str(node.tmp / "node.json"),
                             "--status-file", str(node.tmp / "network.json"),
                             "--healthz-bind-address", HEALTHZ, "--metrics-bind-address", METRICS)
    sandbox.wait_for(lambda: get(node.netns, HEALTHZ, "/healthz")[0] == 200, what="/healthz to answer 200")

    node.add("p1")
    assert node.cni("DEL", "p1").ok

    code, text = get(node.netns, METRICS, "/metrics")
    assert code == 200
    seen = samples(text)
    assert seen[("netplane_agent_cni_requests_total", (("result", "ok"), ("verb", "ADD")))] == 1
    assert seen[("netplane_agent_cni_requests_total", (("result", "ok"), ("verb", "DEL")))] == 1
    assert seen[("netplane_agent_cni_request_duration_seconds_count", (("verb", "ADD"),))] == 1
    assert seen[("netplane_agent_pod_network_peers", ())] == 1
    assert seen[("netplane_agent_pod_network_reconciles_total", ())] >= 1
    assert seen[("netplane_agent_pod_network_reconcile_failures_total", ())] == 0

    code, body = get(node.netns, HEALTHZ, "/healthz")
    health = json.loads(body)
    assert code == 200 and health["cni"] == "serving"
    assert health["podNetwork"]["ready"] and health["podNetwork"]["peers"] == 1
    assert get(node.netns, HEALTHZ, "/livez")[0] == 200
    assert get(node.netns, HEALTHZ, "/metrics")[0] == 404
    assert get(node.netns, METRICS, "/healthz")[0] == 404

    assert node.sb.stop(agent) == 0           # SIGTERM by its pid: a clean stop, servers closed
    assert get(node.netns, HEALTHZ, "/healthz")[0] == 0
