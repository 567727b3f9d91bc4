"""Pod-to-pod TCP throughput across nodes, against node-to-node on the same underlay.

For each mode (routed, vxlan) a 2-node lab is built (netplane.lab: nodes
and pods are network namespaces, the nodes joined by veths to a bridge in
an underlay namespace, MTU 1500), with one pod per node. Two iperf3 TCP
cases are measured in the same lab:
- underlay: server in node2's namespace, client in node1's, to node2's
  underlay address: the ceiling the pod network is compared with;
- pod: server in node2-pod1, client in node1-pod1, to the pod address:
  through the pod veths, both nodes' forwarding and, in vxlan mode, the
  VXLAN encapsulation (pod MTU 1450).
Each family (IPv4, and IPv6 as a second row) is measured the same way.

Samples are interleaved, underlay then pod, round after round, so that any
drift of the machine hits both cases alike; every sample is one
`iperf3 -c -J -t SECONDS -O OMIT` run (the omitted first second(s) leave
out slow start) and reads end.sum_received.bits_per_second. The servers
are persistent `iperf3 -s`, one port per case, stopped at the end.

Reported per mode and family: the median Gbit/s of both cases, their ratio
(pod/underlay, of the medians), the min-max of the per-round ratios (pod
sample over the underlay sample of the same round), and the goal from the
issue: routed >= 0.95 of the underlay, vxlan >= 0.85. Nothing is pinned:
client, server and the kernel's forwarding share the machine's CPUs (two
on the lab VM), so these are CPU-bound numbers, not link speeds.

Writes pod_network_throughput.{json,md,png} to benchmarks/results/ (or
--out). Needs root; every lab is torn down, also on failure or Ctrl-C.

Usage: python benchmarks/pod_network_throughput.py [--samples 5] [--seconds 3]
           [--modes routed,vxlan] [--families 4,6] [--out DIR]
"""
import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netplane.lab import Lab
from netplane.sandbox import stop_process

RESULTS = Path(__file__).parent / "results"
NAME = "pod_network_throughput"
GOALS = {"routed": 0.95, "vxlan": 0.85}
KINDS = ("underlay", "pod")
BASE_PORT = 5201


@dataclass
class Case:
    kind: str                  # "underlay" or "pod"
    family: int
    server: str                # node or pod name in the lab
    client: str
    address: str
    port: int
    samples: list[dict] = field(default_factory=list)


def cases_of(lab: Lab, families: list[int]) -> list[Case]:
    """underlay then pod, per family: the order the samples are taken in."""
    rec, cases = lab.record, []
    for family in families:
        cases.append(Case("underlay", family, "node2", "node1", _of_family(rec.nodes["node2"].internal_ips, family), 0))
        cases.append(Case("pod", family, "node2-pod1", "node1-pod1", _of_family(rec.pods["node2-pod1"].ips, family), 0))
    for i, case in enumerate(cases):
        case.port = BASE_PORT + i          # one persistent server per case
    return cases


def _of_family(ips: list[str], family: int) -> str:
    return next(ip for ip in ips if (":" in ip) == (family == 6))


# -- iperf3 ---------------------------------------------------------------------

def start_server(lab: Lab, case: Case) -> subprocess.Popen:
    return lab.spawn(case.server, ["iperf3", "-s", "-p", str(case.port)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_listening(lab: Lab, case: Case, server: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not lab.run(case.server, ["ss", "-Hltn", f"sport = :{case.port}"]).stdout.strip():
        if server.poll() is not None:
            raise RuntimeError(f"iperf3 server in {case.server} exited with {server.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"iperf3 server in {case.server} not listening on {case.port}")
        time.sleep(0.05)


def sample(lab: Lab, case: Case, seconds: int, omit: int, retry_for: float = 5.0) -> dict:
    """One iperf3 run; retried briefly while the server refuses (still starting)."""
    argv = ["iperf3", "-c", case.address, "-p", str(case.port), "-t", str(seconds), "-O", str(omit), "-J"]
    deadline = time.monotonic() + retry_for
    while True:
        proc = lab.run(case.client, argv, timeout=seconds + omit + 30)
        result = json.loads(proc.stdout) if proc.stdout.strip() else {"error": proc.stderr.strip()}
        error = result.get("error")
        if not error:
            break
        if "refused" not in error or time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 {case.client} -> {case.address}: {error}")
        time.sleep(0.2)
    end = result["end"]
    return {"bps": end["sum_received"]["bits_per_second"],
            "retransmits": end["sum_sent"].get("retransmits"),
            "cpu_client_pct": end["cpu_utilization_percent"]["host_total"],
            "cpu_server_pct": end["cpu_utilization_percent"]["remote_total"]}


# -- one mode -------------------------------------------------------------------

def measure_mode(mode: str, args) -> dict:
    lab, servers = Lab(f"tput{mode}{os.getpid()}"[:20]), []
    try:
        lab.up(nodes=2, mode=mode, pods_per_node=1)
        cases = cases_of(lab, args.families)
        for case in cases:
            servers.append(start_server(lab, case))
            wait_listening(lab, case, servers[-1])
        path = {"pod_mtu": _mtu(lab, "node1-pod1"), "underlay_mtu": _mtu(lab, "node1")}
        for rnd in range(args.samples):
            for case in cases:
                case.samples.append(sample(lab, case, args.seconds, args.omit))
            print(f"  {mode} round {rnd + 1}/{args.samples}: " + ", ".join(
                f"{c.kind} v{c.family} {c.samples[-1]['bps'] / 1e9:.2f}" for c in cases) + " Gbit/s", flush=True)
    finally:
        for server in servers:
            stop_process(server)
        lab.down()
    return {"mode": mode, "path": path, "cases": [asdict(c) for c in cases], "summary": summarise(mode, cases)}


def _mtu(lab: Lab, where: str) -> int:
    return json.loads(lab.run(where, ["ip", "-j", "link", "show", "eth0"]).stdout)[0]["mtu"]


def summarise(mode: str, cases: list[Case]) -> list[dict]:
    rows = []
    for family in sorted({c.family for c in cases}):
        by = {c.kind: [s["bps"] for s in c.samples] for c in cases if c.family == family}
        underlay, pod = statistics.median(by["underlay"]), statistics.median(by["pod"])
        pairs = [p / u for u, p in zip(by["underlay"], by["pod"])]
        ratio = pod / underlay
        cpu = {f"{c.kind}_cpu_client_pct": statistics.median(s["cpu_client_pct"] for s in c.samples)
               for c in cases if c.family == family}
        rows.append({"family": family, "underlay_gbps": underlay / 1e9, "pod_gbps": pod / 1e9,
                     "ratio": ratio, "pair_ratio_min": min(pairs), "pair_ratio_max": max(pairs),
                     "goal": GOALS[mode], "pass": ratio >= GOALS[mode], **cpu})
    return rows


# -- report ---------------------------------------------------------------------

def machine() -> dict:
    iperf = subprocess.run(["iperf3", "--version"], capture_output=True, text=True).stdout.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "")
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": model,
            "iperf3": iperf[0] if iperf else "unknown"}


def table(report: dict) -> list[str]:
    lines = ["| mode | family | pod MTU | underlay Gbit/s | pod-to-pod Gbit/s | ratio | per-round ratio min-max "
             "| goal | result |", "|---|---|---|---|---|---|---|---|---|"]
    for m in report["modes"]:
        for r in m["summary"]:
            lines.append(f"| {m['mode']} | IPv{r['family']} | {m['path']['pod_mtu']} | {r['underlay_gbps']:.2f} | "
                         f"{r['pod_gbps']:.2f} | {r['ratio']:.3f} | {r['pair_ratio_min']:.3f}-"
                         f"{r['pair_ratio_max']:.3f} | >= {r['goal']:.2f} | {'PASS' if r['pass'] else 'MISS'} |")
    return lines


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
    mach, p = report["machine"], report["params"]
    lines = ["# Pod-to-pod TCP throughput vs the underlay", "",
             f"{report['when']}, {mach['cpus']} CPUs ({mach['cpu_model']}), kernel {mach['kernel']}, {mach['iperf3']}.",
             "", *table(report), "",
             f"Method: one 2-node lab per mode, one pod per node; iperf3 TCP, one stream, {p['samples']} samples "
             f"per case of `-t {p['seconds']} -O {p['omit']}`, underlay (node1 -> node2 underlay address) and "
             "pod (node1-pod1 -> node2-pod1) interleaved round by round. Gbit/s are medians of "
             "end.sum_received; ratio = pod median / underlay median; the min-max is over the per-round "
             "ratios. Nothing is pinned: both iperf3 ends and the kernel's forwarding share the CPUs, so the "
             "underlay figure is a CPU ceiling of veth + bridge, not a link speed.", ""]
    text = "\n".join(lines)
    (out / f"{NAME}.md").write_text(text)
    print("\n".join(table(report)))
    plot(report, out)


def plot(report: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(m, r) for m in report["modes"] for r in m["summary"]]
    labels = [f"{m['mode']} IPv{r['family']}" for m, r in groups]
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(groups)), 4.8))
    width = 0.38
    for k, kind in enumerate(KINDS):
        values = [r[f"{kind}_gbps"] for _, r in groups]
        spread = [_spread(m, r["family"], kind) for m, r in groups]
        xs = [i + (k - 0.5) * width for i in range(len(groups))]
        bars = ax.bar(xs, values, width, label="node-to-node (underlay)" if kind == "underlay" else "pod-to-pod",
                      yerr=list(zip(*[(v - lo, hi - v) for v, (lo, hi) in zip(values, spread)])), capsize=3)
        ax.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center")
    top = max(hi for m, r in groups for kind in KINDS for _, hi in [_spread(m, r["family"], kind)])
    for i, (_, r) in enumerate(groups):
        verdict = "PASS" if r["pass"] else "MISS"
        ax.text(i, top * 1.04, f"ratio {r['ratio']:.2f}\n(goal {r['goal']:.2f}: {verdict})", ha="center",
                fontsize=8)
    ax.set_ylim(0, top * 1.22)
    ax.set_xticks(range(len(groups)), labels)
    ax.set_ylabel("iperf3 TCP Gbit/s (median; whiskers min-max)")
    ax.set_title(f"Pod-to-pod vs node-to-node throughput, {report['machine']['cpus']} CPUs, "
                 f"kernel {report['machine']['kernel']}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(out / f"{NAME}.png", dpi=120)


def _spread(mode_report: dict, family: int, kind: str) -> tuple[float, float]:
    bps = [s["bps"] / 1e9 for c in mode_report["cases"] if c["family"] == family and c["kind"] == kind
           for s in c["samples"]]
    return min(bps), max(bps)


# -- main -----------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5, help="iperf3 runs per case (default 5)")
    parser.add_argument("--seconds", type=int, default=3, help="measured seconds per run (default 3)")
    parser.add_argument("--omit", type=int, default=1, help="leading seconds left out of each run (default 1)")
    parser.add_argument("--modes", default="routed,vxlan", help="comma-separated (default routed,vxlan)")
    parser.add_argument("--families", default="4,6", help="IP families, comma-separated (default 4,6)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    args = parser.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.families = [int(f) if f.strip().isdigit() else 0 for f in args.families.split(",")]
    if not set(args.modes) <= set(GOALS) or not set(args.families) <= {4, 6} or args.samples < 1:
        parser.error("--modes from routed,vxlan; --families from 4,6; --samples >= 1")
    return args


def _loadavg() -> float:
    """Other work on the machine shows here (the benchmark alone keeps it near 1.5)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _raise_exit)      # run the finally blocks: labs down, servers stopped
    report = {"benchmark": NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
              "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "goals": GOALS, "modes": []}
    for mode in args.modes:
        print(f"{mode}: building the lab and measuring", flush=True)
        load = _loadavg()
        report["modes"].append(measure_mode(mode, args))
        report["modes"][-1]["loadavg_1min_before_after"] = [load, _loadavg()]
    write(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
