"""The rule counts the metrics publish, against what a real kernel holds:
a full and a partial sync of the iptables and nftables modes in a
namespace of their own, then the kernel listed with iptables-save and nft,
and /metrics and /proxyMode served from inside the namespace."""
import json
import sys

import pytest

from netplane import sandbox
from netplane.proxy.nftables.names import TABLE

pytestmark = pytest.mark.kernel

# runs inside the namespace: a full sync, then a partial one adding an endpoint;
# prints the count series and what the metrics server answers
SCRIPT = """
import json, subprocess, sys, urllib.error, urllib.request
import netaddr
from netplane.proxy import build as b, modes
from netplane.proxy.dataplane import Dataplane
from netplane.proxy.metrics import ProxyMetrics
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.settings import Settings
from netplane.proxy.state import snapshot

settings = Settings(Node("n1"), (netaddr.IPAddress("192.168.200.11"),), (netaddr.IPNetwork("10.244.0.0/16"),))
plane = Dataplane(modes.get(sys.argv[1]), settings, local_addresses=lambda: [], clean_conntrack=None, sweep=False)
metrics = ProxyMetrics()
plane.report_to(metrics)
ports = [{"name": "http", "port": 80, "nodePort": 30080}]
services = [b.service("web", "10.96.0.10", ports, type="NodePort"),
            b.service("api", "10.96.0.11", [{"name": "http", "port": 80}], sessionAffinity="ClientIP")]

def sync(endpoints, changed):
    slices = [b.endpoint_slice("web", endpoints, [{"name": "http", "port": 8080}]),
              b.endpoint_slice("api", ["10.244.1.9"], [{"name": "http", "port": 8080}])]
    plane.sync({4: family_policies(snapshot(services, slices).ports, 4, settings.node)}, changed)

def series():
    return {f"{s.name}{json.dumps(s.labels, sort_keys=True)}": s.value for m in metrics.registry.collect()
            for s in m.samples if "iptables_total" in s.name or "iptables_last" in s.name or "objects" in s.name}

def saved(table):
    if sys.argv[1] != "iptables":
        return None
    out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.startswith("-A NP-"))

sync(["10.244.1.5"], None)
full = series()
after_full = {t: saved(t) for t in ("nat", "filter")}
sync(["10.244.1.5", "10.244.2.6"], {next(n for n in snapshot(services, []).ports if n.name == "web")})
partial = series()
server = metrics.serve("127.0.0.1", 0)
url = f"http://127.0.0.1:{server.server_address[1]}"
answers = {}
for path in ("/metrics", "/proxyMode", "/other"):
    try:
        with urllib.request.urlopen(url + path, timeout=5) as r:
            answers[path] = [r.status, r.read().decode()[:40]]
    except urllib.error.HTTPError as err:
        answers[path] = [err.code, ""]
server.shutdown()
print(json.dumps({"full": full, "partial": partial, "answers": answers, "last_full": plane.last_full,
                  "after_full": after_full}))
"""


@pytest.fixture
def netns():
    with sandbox.Sandbox() as sb:
        yield sb, sb.netns("metrics")


def run(sb, ns, mode: str) -> dict:
    done = sb.run(ns, [sys.executable, "-c", SCRIPT, mode], text=True)
    return json.loads(done.stdout)


def key(name: str, **labels) -> str:
    return f"{name}{json.dumps(labels, sort_keys=True)}"


def np_rules(sb, ns, table: str) -> int:
    saved = sb.run(ns, ["iptables-save", "-t", table], text=True).stdout
    return sum(1 for line in saved.splitlines() if line.startswith("-A NP-"))


def test_iptables_counts_match_iptables_save(netns):
    sb, ns = netns
    out = run(sb, ns, "iptables")
    assert not out["last_full"]
    for table in ("nat", "filter"):
        total = key("kubeproxy_sync_proxy_rules_iptables_total", ip_family="IPv4", table=table)
        assert out["full"][total] == out["after_full"][table] > 0         # what the kernel held after the full sync
        assert out["full"][key("kubeproxy_sync_proxy_rules_iptables_last", ip_family="IPv4", table=table)] == \
            out["after_full"][table]                                      # a full sync writes every rule
    nat_last = out["partial"][key("kubeproxy_sync_proxy_rules_iptables_last", ip_family="IPv4", table="nat")]
    assert 0 < nat_last < np_rules(sb, ns, "nat")                         # the partial sync wrote a few
    assert np_rules(sb, ns, "nat") > out["after_full"]["nat"]
    assert out["answers"]["/proxyMode"] == [200, "iptables"] and out["answers"]["/other"][0] == 404
    assert out["answers"]["/metrics"][0] == 200


def test_nftables_counts_match_nft_list(netns):
    sb, ns = netns
    out = run(sb, ns, "nftables")
    listed = json.loads(sb.run(ns, ["nft", "-j", "list", "table", "ip", TABLE], text=True).stdout)["nftables"]
    chains = [o for o in listed if "chain" in o]
    sets = [o.get("set") or o.get("map") for o in listed if "set" in o or "map" in o]
    elements = sum(len(s.get("elem", [])) for s in sets)
    held = out["partial"]
    assert held[key("netplane_proxy_objects", ip_family="IPv4", kind="chains")] == len(chains)
    assert held[key("netplane_proxy_objects", ip_family="IPv4", kind="sets")] == len(sets)
    assert held[key("netplane_proxy_objects", ip_family="IPv4", kind="elements")] == elements > 0
    assert out["answers"]["/proxyMode"] == [200, "nftables"]
