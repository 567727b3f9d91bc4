"""Demo Services for the lab, and the checks that send real traffic to them.

With `netplane lab up --proxy` every pod runs the echo server
(netplane/lab/echo.py), every node runs `netplane proxy` in iptables mode on
the lab's manifests directory, and a client namespace outside the cluster
sits on the underlay. The Services cover the proxy's features; each check
names what it expects, so the table shows at a glance what answered.
"""
import json
import os
import sys
import time
from dataclasses import dataclass

from netplane import sandbox
from netplane.lab import topology
from netplane.proxy import build as b

TARGET_PORT = 8080
CLIENT_ALLOWED, CLIENT_DENIED = (a.split("/")[0] for a in topology.CLIENT_ADDRESSES[:2])
LB_IP, EXTERNAL_IP = "192.0.2.10", "192.0.2.20"
HTTP = {"name": "http", "port": 80, "protocol": "TCP"}
DNS = {"name": "dns", "port": 53, "protocol": "UDP"}


def endpoints(lab, pods, family: int = 4) -> list[dict]:
    return [b.endpoint(ip, lab.record.pods[p].node) for p in pods for ip in lab.record.pods[p].ips
            if (":" in ip) == (family == 6)]


def demo_objects(lab) -> list[dict]:
    pods = sorted(lab.record.pods)
    first_node = min(lab.record.nodes, key=topology.node_number)
    local_pods = [p for p in pods if lab.record.pods[p].node == first_node]
    target = [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}]
    objects = [
        b.service("echo", ["10.96.0.10", "fd00:96::10"], [HTTP, DNS]),
        b.service("echo-nodeport", "10.96.0.14", [dict(HTTP, nodePort=30080)], type="NodePort"),
        b.service("echo-local", "10.96.0.15", [dict(HTTP, nodePort=30081)], type="NodePort",
                  externalTrafficPolicy="Local"),
        b.service("echo-lb", "10.96.0.16", [dict(HTTP, nodePort=30082)], type="LoadBalancer", ingress=[LB_IP],
                  loadBalancerSourceRanges=[f"{CLIENT_ALLOWED}/32"]),
        b.service("echo-sticky", "10.96.0.11", [HTTP], sessionAffinity="ClientIP"),
        b.service("echo-external", "10.96.0.12", [HTTP], externalIPs=[EXTERNAL_IP]),
        b.service("echo-hairpin", "10.96.0.13", [HTTP]),
        b.service("no-endpoints", "10.96.0.99", [HTTP]),
    ]
    for name, members in (("echo-nodeport", pods), ("echo-local", local_pods), ("echo-lb", pods),
                          ("echo-sticky", pods), ("echo-external", pods), ("echo-hairpin", pods[:1])):
        objects.append(b.endpoint_slice(name, endpoints(lab, members), target))
    objects += [b.endpoint_slice("echo", endpoints(lab, pods), target + [{"name": "dns", "port": TARGET_PORT,
                                                                          "protocol": "UDP"}]),
                b.endpoint_slice("echo", endpoints(lab, pods, 6), target, family=6)]
    return objects


def write_manifests(lab, objects: list[dict], name: str = "demo.json") -> str:
    """Replace one manifests file atomically (the proxies watch the directory)."""
    os.makedirs(lab.manifests_dir, exist_ok=True)
    path = os.path.join(lab.manifests_dir, name)
    with open(path + ".tmp", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects}, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


# A write reaches a proxy through inotify within milliseconds; a sync that
# ends this long after the write has seen it, so its report can be trusted.
DELIVERY = 0.05


def publish(lab, objects: list[dict], name: str, timeout: float = 10.0) -> None:
    """Write manifests and wait until every proxy reports a sync that holds
    them (/healthz lastUpdated, whatever the mode), not on any rule text."""
    write_manifests(lab, objects, name)
    since = time.time() + DELIVERY
    sandbox.wait_for(lambda: lab.proxies_synced_since(since), timeout=timeout, interval=0.05,
                     what=f"every proxy to sync {name}")


def probe(lab, where: str, proto: str, host: str, port: int, count: int = 1, timeout: float = 2.0,
          source: str = "", **extra) -> dict:
    argv = [sys.executable, "-m", "netplane.lab.probe", proto, host, str(port), "--count", str(count),
            "--timeout", str(timeout)] + (["--source", source] if source else [])
    for key, value in extra.items():
        argv += [f"--{key}", str(value)]
    done = lab.run(where, argv)
    if done.returncode:
        raise RuntimeError(f"probe in {where} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


@dataclass(frozen=True)
class Check:
    service: str
    target: str
    source: str
    expect: str
    got: str
    ok: bool


def run_checks(lab) -> list[Check]:
    pods = sorted(lab.record.pods)
    first, second = sorted(lab.record.nodes, key=topology.node_number)[:2]
    node_ip = {n: next(ip for ip in r.internal_ips if ":" not in ip) for n, r in lab.record.nodes.items()}
    pod = pods[0]
    checks = [
        ("echo", pod, "tcp", "10.96.0.10", 80, {}, "several pods answer", _spread),
        ("echo", pod, "tcp", "fd00:96::10", 80, {}, "several pods answer (IPv6)", _spread),
        ("echo", pod, "udp", "10.96.0.10", 53, {}, "several pods answer (UDP)", _spread),
        _nodeport_check(lab, node_ip[second], second),
        ("echo-local", "client", "tcp", node_ip[first], 30081, {}, "a local pod sees the client", _client_kept),
        ("echo-local", "client", "tcp", node_ip[second], 30081, {"timeout": 1}, "dropped: no local endpoint",
         _dropped),
        ("echo-lb", "client", "tcp", LB_IP, 80, {"source": CLIENT_ALLOWED}, "allowed source answers", _answered),
        ("echo-lb", "client", "tcp", LB_IP, 80, {"source": CLIENT_DENIED, "timeout": 1}, "other source dropped",
         _dropped),
        ("echo-external", "client", "tcp", EXTERNAL_IP, 80, {}, "answers", _answered),
        ("echo-sticky", pod, "tcp", "10.96.0.11", 80, {}, "one pod answers every time", _sticky),
        _hairpin_check(lab, pod),
        ("no-endpoints", pod, "tcp", "10.96.0.99", 80, {}, "refused at once", _refused),
    ]
    out = []
    for service, where, proto, host, port, opts, expect, judge in checks:
        count = 1 if judge in (_dropped, _refused, _client_kept) else 12
        result = probe(lab, where, proto, host, port, count=count, **opts)
        got, ok = judge(result, lab)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        out.append(Check(service, f"{proto} {target}", where + (f" ({opts['source']})" if "source" in opts else ""),
                         expect, got, ok))
    return out


def _names(result) -> list[str]:
    return sorted({a.split()[0] for a in result["answers"]})


def _seen(result) -> set[str]:
    """The client addresses the answering pods saw."""
    return {a.split()[1] for a in result["answers"]}


def _describe(result, seen: bool = False) -> str:
    if result["failed"]:
        return ", ".join(f"{k} x{v}" for k, v in result["errors"].items())
    text = "answered by " + ", ".join(_names(result))
    return text + f"; seen as {', '.join(sorted(_seen(result)))}" if seen else text


def _spread(result, _lab):
    return _describe(result), not result["failed"] and len(_names(result)) > 1


def _answered(result, _lab):
    return _describe(result), not result["failed"] and result["ok"] > 0


def _masqueraded(result, _lab):
    return _describe(result, seen=True), not result["failed"] and not _seen(result) & {CLIENT_ALLOWED, CLIENT_DENIED}


def _nodeport_check(lab, node_ip: str, node: str):
    """A node port under the Cluster policy, from outside: masqueraded; where
    the mode keeps the client's address for the node's own pods (their
    replies come back through it anyway), only the other nodes' pods see
    the node."""
    from netplane.proxy import modes

    mode = lab.record.proxy_mode
    if not mode or modes.get(mode).snat_local_endpoints:
        return ("echo-nodeport", "client", "tcp", node_ip, 30080, {}, "answers, client masqueraded", _masqueraded)
    return ("echo-nodeport", "client", "tcp", node_ip, 30080, {}, "answers; masqueraded to other nodes' pods",
            _masqueraded_off_node(node))


def _masqueraded_off_node(node: str):
    def judge(result, lab):
        clients = {CLIENT_ALLOWED, CLIENT_DENIED}
        ok = not result["failed"]
        for answer in result["answers"]:
            pod, seen = answer.split()[:2]
            local = lab.record.pods[pod].node == node
            ok = ok and ((seen in clients) == local)
        return _describe(result, seen=True), ok
    return judge


def _client_kept(result, _lab):
    return _describe(result, seen=True), not result["failed"] and _seen(result) == {CLIENT_ALLOWED}


def _dropped(result, _lab):
    return _describe(result), result["errors"].get("timeout") == result["failed"] > 0


def _refused(result, _lab):
    return _describe(result), result["errors"].get("refused") == result["failed"] > 0


def _sticky(result, _lab):
    return _describe(result), not result["failed"] and len(_names(result)) == 1


def _hairpin_check(lab, pod):
    """A pod reaching itself through its Service: masqueraded where the
    packet is NATed (else its reply would skip the node); a mode that
    translates the socket at connect() just connects the pod to itself."""
    from netplane.proxy import modes

    direct = bool(lab.record.proxy_mode) and modes.get(lab.record.proxy_mode).translates_at_connect
    expect = "itself answers, directly" if direct else "itself answers, masqueraded"
    return ("echo-hairpin", pod, "tcp", "10.96.0.13", 80, {}, expect, _hairpin(pod, direct))


def _hairpin(pod, direct: bool = False):
    def judge(result, lab):
        own = set(lab.record.pods[pod].ips)
        seen_self = bool(_seen(result) & own)
        ok = not result["failed"] and _names(result) == [pod] and seen_self == direct
        return _describe(result, seen=True), ok
    return judge


def table(checks: list[Check]) -> list[str]:
    rows = [("service", "target", "from", "expected", "got", "")]
    rows += [(c.service, c.target, c.source, c.expect, c.got, "ok" if c.ok else "FAIL") for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5] for r in rows]


def enable(lab, timeout: float = 20.0, proxy_args: tuple[str, ...] = (), mode: str = "iptables") -> None:
    """Echo servers in every pod, the demo Services, a proxy on every node,
    and the external client; returns once every proxy installed the rules."""
    lab.add_client()
    for pod in sorted(lab.record.pods):
        lab.serve(pod)
    write_manifests(lab, demo_objects(lab))
    since = time.time()
    for node in sorted(lab.record.nodes, key=topology.node_number):
        lab.start_proxy(node, *proxy_args, mode=mode)
    for node in lab.record.nodes:
        sandbox.wait_for(lambda node=node: lab.proxy_synced_since(node, since), timeout=timeout, interval=0.1,
                         what=f"the proxy on {node} to sync")


def switch_mode(lab, mode: str, timeout: float = 20.0, proxy_args: tuple[str, ...] = ()) -> None:
    """Restart every node's proxy in another mode, as an operator switching
    modes would; returns once each has synced (its first full sync then
    removes the old mode's rules)."""
    since = time.time()
    for node in sorted(lab.record.nodes, key=topology.node_number):
        lab.stop(f"proxy/{node}")
        lab.start_proxy(node, *proxy_args, mode=mode)
    for node in lab.record.nodes:
        sandbox.wait_for(lambda node=node: lab.proxy_synced_since(node, since), timeout=timeout, interval=0.1,
                         what=f"the proxy on {node} to sync")


def rules(lab, node: str, table: str = "nat", family: int = 4) -> str:
    done = lab.run(node, ["iptables-save" if family == 4 else "ip6tables-save", "-t", table])
    return done.stdout
