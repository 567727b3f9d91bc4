"""Throughput through a node port from outside, against straight to the pod,
for every proxy mode, through the running daemon (`netplane proxy`).

What the eBPF mode's issue asks: "Throughput through a NodePort against
straight to the pod, one TCP stream (iperf3): ratio >= 0.9", per mode.

One lab per mode (2 nodes, routed, 1 pod per node), the modes one after
the other. node2-pod1 runs `iperf3 -s -J` (port 5201), the only server.
Both nodes run `netplane proxy --mode MODE`, the same mode, on the same
manifests: S Services (default 100; the filler Services of the
first-packet benchmark, every 4th a NodePort) and the measured one,
zz-iperf (10.96.255.253:5201, type NodePort, nodePort 32601,
externalTrafficPolicy Cluster, its one endpoint node2-pod1:5201): remote
to node1, so node1 DNATs to the pod and SNATs to its own address; local to
node2, so node2 DNATs and, under iptables and nftables, masquerades too
(kube-proxy's semantics for external traffic under the Cluster policy: the
pod sees node2's address on its side, the pod bridge's 10.244.2.1), while
the eBPF mode keeps the client's address (the pod's replies come back
through node2 anyway). The client is the lab's external client namespace
(192.168.200.2, on the underlay segment with the nodes), with a route to
node2's pod CIDR via node2 (in the client namespace only). Four cases, one
TCP stream each:

    nodeport        iperf3 -c 192.168.200.11 -p 32601   (through node1: DNAT + SNAT,
                    then node2: one node more than direct)
    nodeport-local  iperf3 -c 192.168.200.12 -p 32601   (node2's own node port, the
                    backend on that node: the same hops as direct)
    direct          iperf3 -c <node2-pod1's IP> -p 5201 (via node2 only)
    via-node1       iperf3 -B 192.168.200.3 -c <node2-pod1's IP> -p 5201
                    (plain routing through node1 both ways, no Service: the
                    node port's hops without its translation)

nodeport / direct crosses one node more than direct does (node1's veths,
bridge pass and forwarding step); nodeport-local / direct is the
like-for-like comparison, the proxy's own cost on an equal path, and
both are held against the goal. The proxy on node2 (earlier runs had none
there, as in the first-packet benchmark, where node2 is only the server's
node) installs its rules or programs for all S Services on node2, which
the direct case crosses too, as it did not before: that is fair, since
traffic straight to a pod in a real cluster crosses that node's proxy
rules as well. The 'before any proxy' direct runs (taken before either
proxy starts) show the path with none.

via-node1 only explains the first two: the client's second address is
routed via node1 (a rule and a table in the client namespace, its ICMP
redirects ignored there) and node2 sends its replies to it via node1 (one
/32 route in node2's namespace), so the packets cross the same devices as
through node1's node port. Each run is `-t T -O O -J --get-server-output`
(the omitted first second(s) leave out slow start), R rounds, the cases'
order rotating round by round (after one discarded second of each). A
sample reads end.sum_received.bits_per_second, and the server's own
report says whom it saw: through node1's node port node1's address
(SNAT); through node2's, the client's or node2's (by mode, as above);
else the client's address used; its local address must be the pod's, so
every byte went to node2-pod1. Through node1 (nodeport, via-node1),
node1's eth0 must have received at least the bytes the server received;
direct and through node2's node port, fewer (the stream did not cross
node1). Reported per mode: the median Gbit/s of
each case with its spread (min..max over rounds); the ratios
nodeport-local/direct and nodeport/direct (of the medians), with the
spread of the same-round ratios, against the goal; and, the same way,
nodeport/via-node1 (the proxy's own cost on node1's path) and
via-node1/direct (the extra node's).

Nothing here touches the host namespace; the lab is torn down, also on
failure, Ctrl-C or SIGTERM. Needs root and iperf3 (scripts/bootstrap
installs it). `python -m netplane.bench.throughput [--modes ebpf,nftables,iptables]
[--services 100] [--rounds 5] [--seconds 5] [--omit 1] [--out DIR]` writes
proxy_throughput.{json,md,png} to benchmarks/results/ (or DIR).
"""
import argparse
import ipaddress
import json
import signal
import statistics
import subprocess
import time
from pathlib import Path

from netplane.bench import first_packet as fp
from netplane.bench import results
from netplane.bench.machine import describe, loadavg
from netplane.lab import topology

NAME = "proxy_throughput"
GOAL = 0.9                                   # through a node port / direct, one stream
SERVICE_IP, PORT, NODE_PORT = "10.96.255.253", 5201, 32601
PROXY_NODE = fp.SMALL_NODE                   # node1: the node port with the backend on another node
LOCAL_NODE = fp.SERVER_NODE                  # node2: the backend's node, its own node port
KINDS = ("nodeport", "nodeport-local", "direct", "via-node1")
THROUGH_NODE1 = ("nodeport", "via-node1")    # the cases whose stream must cross node1 (the others must not)
VIA_IP = topology.CLIENT_ADDRESSES[1].split("/")[0]      # the client's second address, routed via node1
VIA_TABLE = 200
# name, numerator, denominator, goal (None: no goal); the first is the summary's "ratio"
RATIOS = (("nodeport_over_direct", "nodeport", "direct", GOAL),
          ("nodeport_local_over_direct", "nodeport-local", "direct", GOAL),
          ("nodeport_over_via", "nodeport", "via-node1", None), ("via_over_direct", "via-node1", "direct", None))


# -- one iperf3 run -------------------------------------------------------------------------

def iperf_argv(host: str, port: int, seconds: int, omit: int, bind: str | None = None) -> list[str]:
    return ["iperf3", "-c", host, "-p", str(port), *(["-B", bind] if bind else []), "-t", str(seconds),
            "-O", str(omit), "-J", "--get-server-output"]


def pod_gateway(node: str) -> str:
    """A lab node's IPv4 address on its pod bridge (the pod CIDR's first address: node2, 10.244.2.1),
    the source a MASQUERADE towards one of its own pods picks."""
    cidr = next(c for c in topology.node_addressing(topology.node_number(node)).pod_cidrs if ":" not in c)
    return str(ipaddress.ip_network(cidr)[1])


def case_address(kind: str, server_ip: str) -> tuple[str, int, tuple[str, ...], str | None]:
    """(host, port, the client addresses the server may see, the source to bind or None) of a case.
    Through node2's own node port the server sees the client (the eBPF mode: a local backend keeps
    it) or node2 (iptables, nftables: external Cluster traffic is masqueraded, to node2's address on
    the pod's side, its bridge's; its underlay address accepted too)."""
    if kind == "nodeport":
        ip = fp.node_ip(PROXY_NODE)
        return ip, NODE_PORT, (ip,), None
    if kind == "nodeport-local":
        return fp.node_ip(LOCAL_NODE), NODE_PORT, (fp.EXTERNAL_IP, pod_gateway(LOCAL_NODE), fp.node_ip(LOCAL_NODE)), None
    if kind == "via-node1":
        return server_ip, PORT, (VIA_IP,), VIA_IP
    return server_ip, PORT, (fp.EXTERNAL_IP,), None


def route_via(lab, via: str, server_node: str) -> None:
    """The client's VIA_IP reaches server_node's pods through `via`, both ways: a rule and a table in the
    client namespace (which ignores ICMP redirects, or `via` would send it straight on), and a /32
    route back in server_node's namespace."""
    cidr = next(c for c in lab.record.nodes[server_node].pod_cidrs if ":" not in c)
    lab.run(fp.EXTERNAL, ["sysctl", "-qw", "net.ipv4.conf.all.accept_redirects=0",
                          "net.ipv4.conf.eth0.accept_redirects=0"], check=True)
    lab.run(fp.EXTERNAL, ["ip", "rule", "add", "from", VIA_IP, "lookup", str(VIA_TABLE), "priority", "100"], check=True)
    lab.run(fp.EXTERNAL, ["ip", "route", "replace", cidr, "via", fp.node_ip(via), "table", str(VIA_TABLE)], check=True)
    lab.run(server_node, ["ip", "route", "replace", f"{VIA_IP}/32", "via", fp.node_ip(via)], check=True)


def rx_bytes(lab, where: str, device: str = "eth0") -> int:
    return json.loads(lab.run(where, ["ip", "-s", "-j", "link", "show", device], check=True).stdout)[0]["stats64"]["rx"]["bytes"]


def parse_sample(result: dict, server_ip: str, seen: str | tuple[str, ...]) -> dict:
    """One run's numbers from iperf3's JSON; raises when it failed or its path was not the one asked:
    the server must have served on the pod's address and seen `seen` (or one of them) as its client."""
    if result.get("error"):
        raise RuntimeError(f"iperf3: {result['error']}")
    seen = (seen,) if isinstance(seen, str) else tuple(seen)
    server = result.get("server_output_json") or {}             # the server runs with -J too
    connected = (server.get("start", {}).get("connected") or [{}])[0]
    saw = [_plain(connected.get("remote_host")), _plain(connected.get("local_host"))]
    if saw[0] not in seen or saw[1] != server_ip:
        raise RuntimeError(f"iperf3: the server saw {saw[0]} -> {saw[1]}, not {' or '.join(seen)} -> {server_ip}")
    end = result["end"]
    return {"bps": end["sum_received"]["bits_per_second"], "retransmits": end["sum_sent"].get("retransmits"),
            "cpu_client_pct": end["cpu_utilization_percent"]["host_total"],
            "cpu_server_pct": end["cpu_utilization_percent"]["remote_total"],
            "server_saw": saw}


def _plain(address: str | None) -> str | None:
    """An IPv4 address as a dual-stack socket may show it (::ffff:a.b.c.d)."""
    return address[7:] if address and address.startswith("::ffff:") else address


def sample(lab, kind: str, server_ip: str, seconds: int, omit: int) -> dict:
    host, port, seen, bind = case_address(kind, server_ip)
    rx = rx_bytes(lab, PROXY_NODE)
    done = lab.run(fp.EXTERNAL, iperf_argv(host, port, seconds, omit, bind), timeout=seconds + omit + 30)
    crossed = rx_bytes(lab, PROXY_NODE) - rx
    try:
        result = json.loads(done.stdout)
    except ValueError:
        result = {"error": (done.stderr or done.stdout).strip()[-500:] or f"exit {done.returncode}"}
    try:
        out = parse_sample(result, server_ip, seen)
        sent, got = result["end"]["sum_sent"]["bytes"], result["end"]["sum_received"]["bytes"]
    except (RuntimeError, KeyError) as err:
        raise RuntimeError(f"{kind} ({host}:{port} from the client): {err}") from None
    # held against what the server received, not what the client wrote: at the end of a run the
    # client's count includes its socket buffer, which may never go out (with -O 0 it can exceed
    # everything that crossed any device)
    if kind in THROUGH_NODE1 and crossed < got:
        raise RuntimeError(f"{kind}: {PROXY_NODE}'s eth0 received {crossed:,} bytes, the server {got:,}: "
                           "the stream did not cross it")
    if kind not in THROUGH_NODE1 and crossed >= got:
        raise RuntimeError(f"{kind}: {PROXY_NODE}'s eth0 received {crossed:,} bytes, the server {got:,}: "
                           "the stream crossed it")
    return {**out, "node1_rx_bytes": crossed, "sent_bytes": sent, "received_bytes": got}


# -- statistics -----------------------------------------------------------------------------

def gbps_summary(samples: list[dict]) -> dict:
    """The median Gbit/s of samples, its spread (min..max), the median retransmits and client CPU."""
    gbps = [x["bps"] / 1e9 for x in samples]
    return {"median_gbps": statistics.median(gbps), "spread_gbps": [min(gbps), max(gbps)],
            "retransmits": statistics.median(x["retransmits"] or 0 for x in samples),
            "cpu_client_pct": statistics.median(x["cpu_client_pct"] for x in samples)}


def summarise(rounds: list[dict], goal: float = GOAL) -> dict:
    """rounds: [{"nodeport": sample, "direct": sample, ...}, ...]. Per case measured, the median Gbit/s
    and its spread; each ratio of RATIOS whose cases were measured (the first one keyed "ratio"; those
    with a goal held against it), of the medians, with the spread of the same-round ratios."""
    kinds = [k for k in KINDS if k in rounds[0]]
    out = {kind: gbps_summary([r[kind] for r in rounds]) for kind in kinds}
    for name, a, b, limit in RATIOS:
        if a not in out or b not in out:
            continue
        paired = [r[a]["bps"] / r[b]["bps"] for r in rounds]
        value = out[a]["median_gbps"] / out[b]["median_gbps"]
        key = "ratio" if name == "nodeport_over_direct" else name
        out[key] = {"of": [a, b], "value": value, "spread": [min(paired), max(paired)], "per_round": paired}
        if limit is not None:
            out[key].update(goal=goal, ok=value >= goal)
    return out


# -- one mode, one lab ----------------------------------------------------------------------

def wait_listening(lab, where: str, port: int, server: subprocess.Popen, timeout: float = 10.0) -> None:
    from netplane import sandbox

    sandbox.wait_for(lambda: server.poll() is not None or lab.run(where, ["ss", "-Hltn", f"sport = :{port}"]).stdout.strip(),
                     timeout=timeout, interval=0.05, what=f"iperf3 in {where} to listen")
    if server.poll() is not None:
        raise RuntimeError(f"iperf3 -s in {where} exited ({server.returncode})")


def measure_mode(mode: str, services: int, rounds: int, seconds: int, omit: int, say=print) -> dict:
    from netplane import sandbox
    from netplane.bench.programming import filler_objects
    from netplane.lab import Lab

    load = [loadavg()]
    lab = Lab(f"tp{mode}"[:20]).up(2, "routed", pods_per_node=1)      # a failed up removes what it made
    server = None
    try:
        server_ip = next(ip for ip in lab.record.pods[fp.SERVER].ips if ":" not in ip)
        server = lab.spawn(fp.SERVER, ["iperf3", "-s", "-J", "-p", str(PORT)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(lab, fp.SERVER, PORT, server)
        lab.add_client()
        fp.client_route(lab, fp.SERVER_NODE)
        route_via(lab, PROXY_NODE, fp.SERVER_NODE)
        sample(lab, "direct", server_ip, 1, 0)                # warm-up, discarded
        before = []
        for r in range(rounds):                                # the floor with no proxy anywhere
            before.append(sample(lab, "direct", server_ip, seconds, omit))
            say(f"    before any proxy, round {r + 1}: direct {before[-1]['bps'] / 1e9:.2f} Gbit/s")
        directory = Path(lab.dir, "manifests-cluster")         # one cluster: both nodes read the same
        fp.write_cluster(directory, fp.with_node_ports(filler_objects(services)),
                         fp.target_objects(server_ip, NODE_PORT, name="zz-iperf", cluster_ip=SERVICE_IP, port=PORT,
                                           pod_port=PORT))
        nodes = (PROXY_NODE, LOCAL_NODE)
        first_sync = fp.start_proxies(lab, mode, {node: directory for node in nodes}, say)
        time.sleep(1.0)                                        # let the syncs' aftermath settle
        for kind in KINDS:                                     # warm-up (and the path checked), discarded
            sample(lab, kind, server_ip, 1, 0)
        out = []
        for r in range(rounds):
            order = KINDS[r % len(KINDS):] + KINDS[:r % len(KINDS)]
            out.append({kind: sample(lab, kind, server_ip, seconds, omit) for kind in order})
            say(f"    round {r + 1}: " + ", ".join(f"{k} {out[-1][k]['bps'] / 1e9:.2f}" for k in KINDS) + " Gbit/s")
        return {"mode": mode, "server_ip": server_ip, "first_sync_s": first_sync, "rounds": out,
                "summary": summarise(out), "before_proxy": {"rounds": before, **gbps_summary(before)},
                "loadavg": load + [loadavg()], "kernel": {node: fp.kernel_objects(lab, node, mode) for node in nodes},
                "log_errors": {node: fp._log_errors(lab, node) for node in nodes}}
    finally:
        if server is not None:
            sandbox.stop_process(server)
        lab.down()


# -- the whole run --------------------------------------------------------------------------

def machine() -> dict:
    info = describe(Path(__file__).resolve().parents[2], ("iptables", "nft"))
    version = subprocess.run(["iperf3", "--version"], capture_output=True, text=True).stdout.splitlines()
    info["iperf3"] = version[0] if version else "unknown"
    return info


def run(modes: list[str], services: int, rounds: int, seconds: int, omit: int, say=print) -> dict:
    report = {"benchmark": NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
              "params": {"modes": modes, "services": services, "rounds": rounds, "seconds": seconds, "omit": omit,
                         "lab": "2 nodes, routed, 1 pod per node", "service": f"{SERVICE_IP}:{PORT}",
                         "node_port": NODE_PORT, "proxy_node": PROXY_NODE, "local_node": LOCAL_NODE,
                         "proxy_nodes": [PROXY_NODE, LOCAL_NODE], "client": fp.EXTERNAL_IP, "goal": GOAL},
              "results": []}
    for mode in modes:
        say(f"{mode}: lab up; {services:,} Services on {PROXY_NODE} and {LOCAL_NODE}")
        report["results"].append(measure_mode(mode, services, rounds, seconds, omit, say))
    return report


# -- report ---------------------------------------------------------------------------------

def _verdict(x: dict | None) -> str:
    if not x:
        return "-"
    return f"{_ratio(x)} {'PASS' if x['ok'] else 'MISS'}"


def table(report: dict) -> list[str]:
    lines = ["| mode | straight to the pod, Gbit/s (spread) | through node2's own node port (backend local: "
             "direct's hops), Gbit/s (spread) | through node1's node port (one node more), Gbit/s (spread) | "
             "**nodeport-local / direct: like for like** (same-round spread) | nodeport / direct: one node more "
             "(same-round spread) | goal | direct before any proxy, Gbit/s | "
             "retransmits, direct / nodeport-local / nodeport |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        s, before = r["summary"], r.get("before_proxy")
        d, n, loc = s["direct"], s["nodeport"], s.get("nodeport-local")
        lines.append(f"| {r['mode']} | {_gbps(d)} | {_gbps(loc) if loc else '-'} | {_gbps(n)} | "
                     f"{_verdict(s.get('nodeport_local_over_direct'))} | {_verdict(s['ratio'])} | "
                     f">= {s['ratio']['goal']} | {_gbps(before) if before else '-'} | "
                     f"{d['retransmits']:.0f} / {loc['retransmits'] if loc else float('nan'):.0f} / "
                     f"{n['retransmits']:.0f} |")
    return lines


def _gbps(s: dict) -> str:
    return f"{s['median_gbps']:.2f} ({s['spread_gbps'][0]:.2f}..{s['spread_gbps'][1]:.2f})"


def _ratio(x: dict) -> str:
    return f"**{x['value']:.3f}** ({x['spread'][0]:.3f}..{x['spread'][1]:.3f})"


def via_table(report: dict) -> list[str]:
    """Where the node port's loss goes: the same hops through node1 without the Service (empty when
    that case was not measured)."""
    rows = [r for r in report["results"] if "via-node1" in r["summary"]]
    if not rows:
        return []
    lines = ["| mode | via node1, plain routing, Gbit/s (spread) | nodeport / via node1: the translation's cost | "
             "via node1 / direct: the extra node's |", "|---|---|---|---|"]
    for r in rows:
        s = r["summary"]
        lines.append(f"| {r['mode']} | {_gbps(s['via-node1'])} | {_ratio(s['nodeport_over_via'])} | "
                     f"{_ratio(s['via_over_direct'])} |")
    return lines


def server_saw(r: dict, kind: str = "nodeport-local") -> list[str]:
    """The client addresses the server saw in a case, over the rounds, in order of first sight."""
    return list(dict.fromkeys(x[kind]["server_saw"][0] for x in r["rounds"] if kind in x))


def _per_node(value, fmt=str) -> str:
    """A per-node dict as 'node1 X, node2 Y' (an older report's single value as it is)."""
    if isinstance(value, dict):
        return ", ".join(f"{node} {fmt(v)}" for node, v in value.items())
    return fmt(value)


def markdown(report: dict) -> str:
    m, p = report["machine"], report["params"]
    local = p.get("local_node", LOCAL_NODE)
    lines = ["# Throughput through a node port from outside, against straight to the pod, by proxy mode", "",
             f"{report['when']}, {m['cpus']} CPUs, kernel {m['kernel']}, {m.get('iperf3', '')}; "
             f"{m.get('tree', '')}.", "",
             f"The goal: through a NodePort against straight to the pod, one TCP stream, ratio >= {p['goal']}. "
             f"Two ratios are held against it. **nodeport-local / direct is the like-for-like comparison**: the "
             f"client enters {local}, the node of the backend, through its own node port, so the stream crosses "
             f"the same hops as straight to the pod and the ratio is the proxy's cost alone. nodeport / direct "
             f"goes in through node1's node port and so crosses one node more than direct does (node1's veths, "
             "bridge pass and forwarding step, on top of its translation): that ratio mixes the proxy's cost "
             "with the extra node's (split in the second table).", "", *table(report), ""]
    via = via_table(report)
    if via:
        lines += ["The same hops as node1's node port without the Service (ratios of the medians; in brackets "
                  "the same-round spread):", "", *via, ""]
    lines += ["## Method", "",
             f"One lab per mode ({p['lab']}); the modes run one after the other in this one run, the cases "
             f"within a mode alternate round by round. node2-pod1 runs `iperf3 -s`, the only server. Both nodes "
             f"run the proxy, the same mode, on the same manifests: {p['services']:,} Services, the measured one "
             f"zz-iperf included ({p['service']}, type NodePort, nodePort {p['node_port']}, "
             "externalTrafficPolicy Cluster, its one endpoint node2-pod1). node1 DNATs to the pod and SNATs to "
             f"its own address; {local} (the endpoint is local) DNATs and, in iptables and nftables, masquerades "
             f"too (kube-proxy's semantics for external Cluster traffic: the pod sees {local}'s bridge address, "
             f"{pod_gateway(local)}), while the eBPF mode keeps the client's address for a local endpoint. Earlier "
             f"runs had no proxy on {local}; with one there its rules or programs for every Service are on the "
             "path of the direct case too, which is fair: traffic straight to a pod in a real cluster crosses "
             "that node's proxy rules as well ('before any proxy' is the direct case with none anywhere). From "
             f"the lab's client namespace ({p['client']}, on the underlay with the nodes): `iperf3 -c "
             f"{fp.node_ip(PROXY_NODE)} -p {p['node_port']}` (nodeport), `iperf3 -c {fp.node_ip(local)} -p "
             f"{p['node_port']}` (nodeport-local) and `iperf3 -c <pod IP>` through a route via {local} "
             f"(direct), each `-t {p['seconds']} -O {p['omit']} -J --get-server-output`, one TCP stream, "
             f"{p['rounds']} rounds after a discarded 1 s run of each; before the proxies started, the direct "
             "case alone the same number of times ('before any proxy'). Gbit/s: end.sum_received, median over "
             "rounds, spread min..max; a ratio is of the medians, its spread that of the same-round ratios. "
             "Every run's server report is checked: it served on the pod's address, and saw node1's address "
             f"(through node1's node port), the client's or {local}'s (through {local}'s, by mode), or the "
             "client's (direct); node1's eth0 must have received at least the bytes the server did through "
             f"node1's node port, fewer direct and through {local}'s (the stream did not cross node1). The fourth case, via-node1, binds the "
             f"client's second address ({VIA_IP}), which a rule in the client namespace routes to node2's pods "
             "via node1 (ICMP redirects ignored there) and a /32 route in node2's namespace brings back the same "
             "way: plain routing through node1 both ways, no Service, so nodeport / via-node1 is what node1's "
             "translation costs and via-node1 / direct what the extra node costs; node1's eth0 must have "
             "received at least the bytes the server did. Nothing is pinned: client, server and every node's forwarding "
             "share the machine's CPUs, so these are CPU-bound numbers.", ""]
    for r in report["results"]:
        saw = server_saw(r)
        lines.append(f"- {r['mode']}: first sync {_per_node(r['first_sync_s'], lambda x: f'{x:.1f} s')}; "
                     "1-min load average before and after "
                     f"{', '.join(f'{x:.2f}' for x in r.get('loadavg', []))}; installed "
                     f"{_per_node(r['kernel'], json.dumps)}; "
                     + (f"through {local}'s node port the server saw {', '.join(saw)}; " if saw else "")
                     + "per-round Gbit/s " + "; ".join(
                         f"{k} " + ", ".join(f"{x[k]['bps'] / 1e9:.2f}" for x in r["rounds"])
                         for k in KINDS if k in r["rounds"][0]))
        errors = r.get("log_errors", [])
        for node, found in (errors.items() if isinstance(errors, dict) else [(PROXY_NODE, errors)]):
            for e in found:
                lines.append(f"  - proxy log error on {node}: {e}")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results_ = report["results"]
    kinds = [k for k in ("direct", "nodeport-local", "nodeport", "via-node1") if k in results_[0]["summary"]]
    labels = {"direct": "straight to the pod", "nodeport-local": "through node2's own node port (backend local)",
              "nodeport": "through node1's node port (one node more)",
              "via-node1": "via node1, plain routing (no Service)"}
    colors = {"direct": "C0", "nodeport": "C1", "via-node1": "C2", "nodeport-local": "C3"}
    fig, ax = plt.subplots(figsize=(max(6.5, 3.6 * len(results_)), 5.2))
    width = 0.8 / len(kinds)
    offset = [(k - (len(kinds) - 1) / 2) * width for k in range(len(kinds))]
    for k, kind in enumerate(kinds):
        values = [r["summary"][kind]["median_gbps"] for r in results_]
        err = [[v - r["summary"][kind]["spread_gbps"][0] for v, r in zip(values, results_)],
               [r["summary"][kind]["spread_gbps"][1] - v for v, r in zip(values, results_)]]
        bars = ax.bar([i + offset[k] for i in range(len(results_))], values, width, yerr=err, capsize=3,
                      color=colors[kind], label=labels[kind])
        ax.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center")
    before = [(i + offset[0], r["before_proxy"]["median_gbps"]) for i, r in enumerate(results_) if r.get("before_proxy")]
    if before:
        ax.plot(*zip(*before), "k_", markersize=16, markeredgewidth=2, label="straight to the pod, before any proxy")
    top = max(r["summary"][kind]["spread_gbps"][1] for r in results_ for kind in kinds)
    for i, r in enumerate(results_):
        text = []
        for key, what in (("nodeport_local_over_direct", "nodeport-local/direct"), ("ratio", "nodeport/direct")):
            x = r["summary"].get(key)
            if x:
                text.append(f"{what} {x['value']:.2f} ({x['spread'][0]:.2f}..{x['spread'][1]:.2f}) "
                            f"{'PASS' if x['ok'] else 'MISS'}")
        ax.text(i, top * 1.04, "\n".join(text), ha="center", fontsize=8)
    ax.set_ylim(0, top * 1.3)
    ax.set_xticks(range(len(results_)), [r["mode"] for r in results_])
    ax.set_ylabel("iperf3, one TCP stream, Gbit/s\n(median of rounds; whiskers: spread)")
    ax.set_title(f"From outside: node port against straight to the pod (goal >= {report['params']['goal']}), "
                 f"{report['params']['services']:,} Services, {report['machine']['cpus']} CPUs", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: dict, out: Path) -> dict[str, Path]:
    return results.write(out, NAME, report, markdown, plot)


# -- the command line -----------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fp.modes_and_out(p)
    p.add_argument("--services", type=int, default=100, help="Services on each node's proxy, the measured one included")
    p.add_argument("--rounds", type=int, default=5, help="rounds of one run per case (at least 3)")
    p.add_argument("--seconds", type=int, default=5, help="measured seconds per run (iperf3 -t)")
    p.add_argument("--omit", type=int, default=1, help="leading seconds left out of each run (iperf3 -O)")
    args = p.parse_args(argv)
    fp.parse_modes(p, args)
    if args.services < 1 or args.rounds < 1 or args.seconds < 1 or args.omit < 0:
        p.error("--services, --rounds and --seconds must be positive, --omit at least 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the lab's `finally: lab.down()` runs
    from netplane import sandbox
    signal.signal(signal.SIGTERM, sandbox.raise_exit)
    report = run(args.modes, args.services, args.rounds, args.seconds, args.omit,
                 say=lambda text: print(text, flush=True))
    paths = write(report, args.out)
    print()
    print("\n".join(table(report)))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
