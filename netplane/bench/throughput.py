"""Throughput through a node port from outside, against straight to the pod,
for every proxy mode, through the running daemon (`netplane proxy`).

What the eBPF mode's issue asks: "Throughput through a NodePort against
straight to the pod, one TCP stream (iperf3): ratio >= 0.9", per mode.

One lab per mode (2 nodes, routed, 1 pod per node), the modes one after
the other. node2-pod1 runs `iperf3 -s -J` (port 5201), the only server. node1
runs `netplane proxy --mode MODE` on its own manifests: S Services (default
100; the filler Services of the first-packet benchmark, every 4th a
NodePort) and the measured one, zz-iperf (10.96.255.253:5201, type
NodePort, nodePort 32601, externalTrafficPolicy Cluster, its one endpoint
node2-pod1:5201: remote to node1, so node1 DNATs to the pod and SNATs to
its own address). node2 runs no proxy. The client is the lab's external
client namespace (192.168.200.2, on the underlay segment with the nodes),
with a route to node2's pod CIDR via node2 (in the client namespace only).
Three cases, one TCP stream each:

    nodeport   iperf3 -c 192.168.200.11 -p 32601    (through node1: DNAT + SNAT)
    direct     iperf3 -c <node2-pod1's IP> -p 5201  (via node2 only)
    via-node1  iperf3 -B 192.168.200.3 -c <node2-pod1's IP> -p 5201
               (plain routing through node1 both ways, no Service: the
               node port's hops without its translation)

The third case only explains the first two: the client's second address
is routed via node1 (a rule and a table in the client namespace, its ICMP
redirects ignored there) and node2 sends its replies to it via node1 (one
/32 route in node2's namespace), so the packets cross the same devices as
through the node port. Each run is `-t T -O O -J --get-server-output` (the
omitted first second(s) leave out slow start), R rounds, the cases' order
rotating round by round (after one discarded second of each). A sample
reads end.sum_received.bits_per_second, and the server's own report says
whom it saw: through the node port node1's address (SNAT), else the
client's address used; its local address must be the pod's, so every byte
went to node2-pod1; via node1, node1's eth0 must have received at least
the bytes sent. Reported per mode: the median Gbit/s of each case with its
spread (min..max over rounds); the ratio nodeport/direct (of the medians),
with the spread of the same-round ratios, against the goal; and, the same
way, nodeport/via-node1 (the proxy's own cost) and via-node1/direct (the
extra node's).

Nothing here touches the host namespace; the lab is torn down, also on
failure, Ctrl-C or SIGTERM. Needs root and iperf3 (scripts/bootstrap
installs it). `python -m netplane.bench.throughput [--modes ebpf,nftables,iptables]
[--services 100] [--rounds 5] [--seconds 5] [--omit 1] [--out DIR]` writes
proxy_throughput.{json,md,png} to benchmarks/results/ (or DIR).
"""
import argparse
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
GOAL = 0.9                                   # nodeport / direct, one stream
SERVICE_IP, PORT, NODE_PORT = "10.96.255.253", 5201, 32601
PROXY_NODE = fp.SMALL_NODE                   # node1: the node port the client goes through
KINDS = ("nodeport", "direct", "via-node1")
VIA_IP = topology.CLIENT_ADDRESSES[1].split("/")[0]      # the client's second address, routed via node1
VIA_TABLE = 200
# name, numerator, denominator, goal (None: no goal)
RATIOS = (("nodeport_over_direct", "nodeport", "direct", GOAL), ("nodeport_over_via", "nodeport", "via-node1", None),
          ("via_over_direct", "via-node1", "direct", None))


# -- one iperf3 run -------------------------------------------------------------------------

def iperf_argv(host: str, port: int, seconds: int, omit: int, bind: str | None = None) -> list[str]:
    return ["iperf3", "-c", host, "-p", str(port), *(["-B", bind] if bind else []), "-t", str(seconds),
            "-O", str(omit), "-J", "--get-server-output"]


def case_address(kind: str, server_ip: str) -> tuple[str, int, str, str | None]:
    """(host, port, the client address the server must see, the source to bind or None) of a case."""
    if kind == "nodeport":
        ip = fp.node_ip(PROXY_NODE)
        return ip, NODE_PORT, ip, None
    if kind == "via-node1":
        return server_ip, PORT, VIA_IP, VIA_IP
    return server_ip, PORT, fp.EXTERNAL_IP, None


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


def parse_sample(result: dict, server_ip: str, seen: str) -> dict:
    """One run's numbers from iperf3's JSON; raises when it failed or its path was not the one asked:
    the server must have served on the pod's address and seen `seen` as its client."""
    if result.get("error"):
        raise RuntimeError(f"iperf3: {result['error']}")
    server = result.get("server_output_json") or {}             # the server runs with -J too
    connected = (server.get("start", {}).get("connected") or [{}])[0]
    saw = [_plain(connected.get("remote_host")), _plain(connected.get("local_host"))]
    if saw != [seen, server_ip]:
        raise RuntimeError(f"iperf3: the server saw {saw[0]} -> {saw[1]}, not {seen} -> {server_ip}")
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
        sent = result["end"]["sum_sent"]["bytes"]
    except (RuntimeError, KeyError) as err:
        raise RuntimeError(f"{kind} ({host}:{port} from the client): {err}") from None
    if kind != "direct" and crossed < sent:
        raise RuntimeError(f"{kind}: {PROXY_NODE}'s eth0 received {crossed:,} bytes of the {sent:,} sent: "
                           "the stream did not cross it")
    return {**out, "node1_rx_bytes": crossed, "sent_bytes": sent}


# -- statistics -----------------------------------------------------------------------------

def gbps_summary(samples: list[dict]) -> dict:
    """The median Gbit/s of samples, its spread (min..max), the median retransmits and client CPU."""
    gbps = [x["bps"] / 1e9 for x in samples]
    return {"median_gbps": statistics.median(gbps), "spread_gbps": [min(gbps), max(gbps)],
            "retransmits": statistics.median(x["retransmits"] or 0 for x in samples),
            "cpu_client_pct": statistics.median(x["cpu_client_pct"] for x in samples)}


def summarise(rounds: list[dict], goal: float = GOAL) -> dict:
    """rounds: [{"nodeport": sample, "direct": sample, ...}, ...]. Per case measured, the median Gbit/s
    and its spread; each ratio of RATIOS whose cases were measured (the first, "ratio", against the
    goal), of the medians, with the spread of the same-round ratios."""
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
        directory = Path(lab.dir, "manifests-node1")
        fp.write_cluster(directory, fp.with_node_ports(filler_objects(services)),
                         fp.target_objects(server_ip, NODE_PORT, name="zz-iperf", cluster_ip=SERVICE_IP, port=PORT,
                                           pod_port=PORT))
        first_sync = fp.start_proxies(lab, mode, {PROXY_NODE: directory}, say)
        time.sleep(1.0)                                        # let the sync's aftermath settle
        for kind in KINDS:                                     # warm-up (and the path checked), discarded
            sample(lab, kind, server_ip, 1, 0)
        out = []
        for r in range(rounds):
            order = KINDS[r % len(KINDS):] + KINDS[:r % len(KINDS)]
            out.append({kind: sample(lab, kind, server_ip, seconds, omit) for kind in order})
            say(f"    round {r + 1}: " + ", ".join(f"{k} {out[-1][k]['bps'] / 1e9:.2f}" for k in KINDS) + " Gbit/s")
        return {"mode": mode, "server_ip": server_ip, "first_sync_s": first_sync[PROXY_NODE], "rounds": out,
                "summary": summarise(out), "before_proxy": {"rounds": before, **gbps_summary(before)},
                "loadavg": load + [loadavg()], "kernel": fp.kernel_objects(lab, PROXY_NODE, mode),
                "log_errors": fp._log_errors(lab, PROXY_NODE)}
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
                         "node_port": NODE_PORT, "proxy_node": PROXY_NODE, "client": fp.EXTERNAL_IP, "goal": GOAL},
              "results": []}
    for mode in modes:
        say(f"{mode}: lab up; {services:,} Services on {PROXY_NODE}")
        report["results"].append(measure_mode(mode, services, rounds, seconds, omit, say))
    return report


# -- report ---------------------------------------------------------------------------------

def table(report: dict) -> list[str]:
    lines = ["| mode | straight to the pod, Gbit/s (spread) | through node1's node port, Gbit/s (spread) | "
             "nodeport / direct (same-round spread) | goal | result | direct before any proxy, Gbit/s | "
             "retransmits, direct / nodeport |", "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        s, before = r["summary"], r.get("before_proxy")
        d, n, x = s["direct"], s["nodeport"], s["ratio"]
        lines.append(f"| {r['mode']} | {_gbps(d)} | {_gbps(n)} | **{x['value']:.3f}** "
                     f"({x['spread'][0]:.3f}..{x['spread'][1]:.3f}) | >= {x['goal']} | "
                     f"{'PASS' if x['ok'] else 'MISS'} | {_gbps(before) if before else '-'} | "
                     f"{d['retransmits']:.0f} / {n['retransmits']:.0f} |")
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


def markdown(report: dict) -> str:
    m, p = report["machine"], report["params"]
    lines = ["# Throughput through a node port from outside, against straight to the pod, by proxy mode", "",
             f"{report['when']}, {m['cpus']} CPUs, kernel {m['kernel']}, {m.get('iperf3', '')}; "
             f"{m.get('tree', '')}.", "", *table(report), ""]
    via = via_table(report)
    if via:
        lines += ["The same hops as the node port's without the Service (ratios of the medians; in brackets "
                  "the same-round spread):", "", *via, ""]
    lines += ["## Method", "",
             f"One lab per mode ({p['lab']}); the modes run one after the other in this one run, the two cases "
             f"within a mode alternate round by round. node2-pod1 runs `iperf3 -s`, the only server. node1's proxy "
             f"reads {p['services']:,} Services, the measured one zz-iperf included ({p['service']}, type "
             f"NodePort, nodePort {p['node_port']}, externalTrafficPolicy Cluster, its one endpoint node2-pod1: "
             "node1 DNATs to the pod and SNATs to its own address); node2 runs no proxy. From the lab's client "
             f"namespace ({p['client']}, on the underlay with the nodes): `iperf3 -c 192.168.200.11 -p "
             f"{p['node_port']}` (nodeport) and `iperf3 -c <pod IP>` through a route via node2 (direct), each "
             f"`-t {p['seconds']} -O {p['omit']} -J --get-server-output`, one TCP stream, {p['rounds']} rounds "
             "after a discarded 1 s run of each; before the proxy started, the direct case alone the same "
             "number of times ('before any proxy'). Gbit/s: end.sum_received, median over rounds, spread min..max; "
             "the ratio is of the medians, its spread that of the same-round ratios. Every run's server report "
             "is checked: it served on the pod's address, and saw node1's address (through the node port) or "
             "the client's (direct). The third case, via-node1, binds the client's second address "
             f"({VIA_IP}), which a rule in the client namespace routes to node2's pods via node1 (ICMP redirects "
             "ignored there) and a /32 route in node2's namespace brings back the same way: plain routing "
             "through node1 both ways, no Service, so nodeport / via-node1 is what the translation costs and "
             "via-node1 / direct what the extra node costs; node1's eth0 must have received at least the bytes "
             "sent. Nothing is pinned: client, server and every node's forwarding share the "
             "machine's CPUs, so these are CPU-bound numbers, and the node port's path has one node more to "
             "cross (two more veths and a bridge pass, a forwarding step and its NAT).", ""]
    for r in report["results"]:
        lines.append(f"- {r['mode']}: first sync {r['first_sync_s']:.1f} s; 1-min load average before and after "
                     f"{', '.join(f'{x:.2f}' for x in r.get('loadavg', []))}; installed {json.dumps(r['kernel'])}; "
                     "per-round Gbit/s " + "; ".join(
                         f"{k} " + ", ".join(f"{x[k]['bps'] / 1e9:.2f}" for x in r["rounds"])
                         for k in KINDS if k in r["rounds"][0]))
        for e in r.get("log_errors", []):
            lines.append(f"  - proxy log error: {e}")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results_ = report["results"]
    kinds = [k for k in ("direct", "nodeport", "via-node1") if k in results_[0]["summary"]]
    labels = {"direct": "straight to the pod", "nodeport": "through node1's node port",
              "via-node1": "via node1, plain routing (no Service)"}
    fig, ax = plt.subplots(figsize=(max(6, 3.2 * len(results_)), 4.8))
    width = 0.8 / len(kinds)
    offset = [(k - (len(kinds) - 1) / 2) * width for k in range(len(kinds))]
    for k, kind in enumerate(kinds):
        values = [r["summary"][kind]["median_gbps"] for r in results_]
        err = [[v - r["summary"][kind]["spread_gbps"][0] for v, r in zip(values, results_)],
               [r["summary"][kind]["spread_gbps"][1] - v for v, r in zip(values, results_)]]
        bars = ax.bar([i + offset[k] for i in range(len(results_))], values, width, yerr=err, capsize=3,
                      color=f"C{k}", label=labels[kind])
        ax.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center")
    before = [(i + offset[0], r["before_proxy"]["median_gbps"]) for i, r in enumerate(results_) if r.get("before_proxy")]
    if before:
        ax.plot(*zip(*before), "k_", markersize=16, markeredgewidth=2, label="straight to the pod, before any proxy")
    top = max(r["summary"][kind]["spread_gbps"][1] for r in results_ for kind in kinds)
    for i, r in enumerate(results_):
        x = r["summary"]["ratio"]
        ax.text(i, top * 1.04, f"ratio {x['value']:.2f} ({x['spread'][0]:.2f}..{x['spread'][1]:.2f})\n"
                f"goal >= {x['goal']}: {'PASS' if x['ok'] else 'MISS'}", ha="center", fontsize=8)
    ax.set_ylim(0, top * 1.25)
    ax.set_xticks(range(len(results_)), [r["mode"] for r in results_])
    ax.set_ylabel("iperf3, one TCP stream, Gbit/s\n(median of rounds; whiskers: spread)")
    ax.set_title(f"From outside: node port against straight to the pod, {report['params']['services']:,} Services, "
                 f"{report['machine']['cpus']} CPUs", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: dict, out: Path) -> dict[str, Path]:
    return results.write(out, NAME, report, markdown, plot)


# -- the command line -----------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fp.modes_and_out(p)
    p.add_argument("--services", type=int, default=100, help="Services on node1's proxy, the measured one included")
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
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(128 + s)))
    report = run(args.modes, args.services, args.rounds, args.seconds, args.omit,
                 say=lambda text: print(text, flush=True))
    paths = write(report, args.out)
    print()
    print("\n".join(table(report)))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
