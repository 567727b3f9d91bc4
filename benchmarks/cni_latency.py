"""CNI ADD/DEL latency: netplane against the reference bridge + host-local pair.

Both plugins run side by side in one run, on the same node namespace,
with samples interleaved so that any drift in the machine hits both alike:
- sequential: one pod at a time;
- concurrent: 16 pods at once, as a runtime starting a burst of pods does.
netplane is measured as a runtime meets it: the plugin executable that
`netplane cni install` puts in the CNI bin dir, a fresh process per call,
forwarding to a running `netplane agent`. Its native client (the default)
and its Python twin are both measured; then, with the agent stopped, the
standalone path (the native client execs the plugin in-process).

After every DEL, each contender's pod namespace is checked to hold no
CNI_IFNAME any more (the spec's DEL removes it), and the run fails if one
does: a DEL is only timed as done when the name is free.

Prints p50/p90 per case, the ratio netplane/reference (below 1.0 means
netplane is faster) and the issue's goals, and writes JSON, a markdown
table and a PNG plot to benchmarks/results/.

Usage: python benchmarks/cni_latency.py [--rounds N] [--burst 16]
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from netplane import sandbox
from netplane.cni import install, runtime
from netplane.agent.launch import start_agent
from netplane.netlink import messages as m
from netplane.netlink.channel import Channel
from netplane.netlink.netns import open_netns, setns

RESULTS = Path(__file__).parent / "results"
VERSION = "1.0.0"  # the newest version the Debian reference plugins speak


def reference_conf(data_dir: str) -> dict:
    return {"cniVersion": VERSION, "name": "ref", "type": "bridge", "bridge": "cni0", "isGateway": True,
            "ipMasq": False, "hairpinMode": True, "mtu": 1500,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]], "dataDir": data_dir}}


def netplane_conf(data_dir: str) -> dict:
    return {"cniVersion": VERSION, "name": "np", "type": "netplane", "bridge": "np0",
            "subnet": "10.77.0.0/16", "mtu": 1500, "dataDir": data_dir}


class Contender:
    def __init__(self, name: str, plugin: str, conf: dict, pods: list[str]) -> None:
        self.name, self.plugin, self.conf, self.pods = name, plugin, conf, pods
        self.counter = 0
        self.samples: dict[str, list[float]] = {}

    def one(self, verb: str, pod: int, cid: str) -> float:
        env = runtime.env_for(verb, container_id=cid, netns=self.pods[pod], ifname="eth0")
        out = runtime.invoke(self.plugin, env, self.conf)
        if not out.ok:
            raise RuntimeError(f"{self.name} {verb} failed (exit {out.exit_code}): {out.stdout.decode()} "
                               f"{out.stderr.decode()}")
        return out.seconds * 1e3

    def batch(self, size: int, case: str) -> None:
        """ADD `size` pods at once, then DEL them at once; record each call."""
        self.counter += 1
        cids = [f"{self.name.replace(' ', '-')}-{self.counter}-{i}" for i in range(size)]
        for verb in ("ADD", "DEL"):
            times = [0.0] * size
            gate = threading.Barrier(size)

            def worker(i: int, verb=verb, gate=gate, times=times) -> None:
                gate.wait()
                times[i] = self.one(verb, i, cids[i])

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(size)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if 0.0 in times:
                raise RuntimeError(f"{self.name} {verb}: a worker failed")
            if verb == "DEL":
                self.check_names_free(size)
            self.samples.setdefault(f"{verb} {case}", []).extend(times)

    def check_names_free(self, size: int) -> None:
        for pod in self.pods[:size]:
            if interface_in(pod, "eth0"):
                raise RuntimeError(f"{self.name}: eth0 is still in {pod} after DEL returned")


def interface_in(netns_path: str, name: str) -> bool:
    fd = open_netns(netns_path)
    try:
        with Channel.open(fd) as pod:
            lookup = m.get_link(name, missing_ok=True)
            pod.send(lookup)
            return bool(lookup.replies)
    finally:
        os.close(fd)


def summarise(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50": statistics.median(ordered),
            "p90": ordered[int(0.9 * (len(ordered) - 1))], "mean": statistics.fmean(ordered)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="sequential samples per verb (default 60)")
    parser.add_argument("--burst", type=int, default=16, help="pods per concurrent batch (default 16)")
    parser.add_argument("--bursts", type=int, default=6, help="concurrent batches (default 6)")
    parser.add_argument("--standalone", type=int, default=20, help="standalone-path samples (default 20)")
    args = parser.parse_args()
    sandbox.reap_stale()
    tmp = tempfile.mkdtemp(prefix="netplane-bench-")
    try:
        with sandbox.Sandbox() as sb:
            report = measure(sb, tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write(report)
    return 0


AGENT_CLIENTS = (("netplane", "native"), ("netplane python client", "python"))
STANDALONE = "netplane standalone"
# The goals: (case, contender, the most its p50 may be, in units of the reference's p50)
GOALS = [(f"{verb} {case}", "netplane", 0.5) for verb in ("ADD", "DEL")
         for case in ("sequential", "concurrent x16")] + [
        (f"{verb} sequential", STANDALONE, 2.0) for verb in ("ADD", "DEL")]


def measure(sb: sandbox.Sandbox, tmp: str, args) -> dict:
    node = sb.netns("node")
    pods = max(args.burst, 1)
    ref = Contender("reference", f"{runtime.REFERENCE_CNI_PATH}/bridge", reference_conf(f"{tmp}/ref"),
                    [sb.netns(f"ref{i}") for i in range(pods)])
    np_pods = [sb.netns(f"np{i}") for i in range(pods)]
    np_conf = netplane_conf(f"{tmp}/np")
    ours = [Contender(name, install.install(os.path.join(tmp, client), client=client)[0], np_conf, np_pods)
            for name, client in AGENT_CLIENTS]
    # Every plugin process is a child of this one, so enter the node once
    # here rather than paying for an nsenter exec inside every sample.
    node_fd = open_netns(node)
    setns(node_fd)
    os.close(node_fd)
    agent = start_agent(sb, node, os.path.join(tmp, "agent.log"))
    contenders = [ref, *ours]
    for c in contenders:
        c.batch(1, "warmup")
    for _ in range(args.rounds):
        for c in contenders:
            c.batch(1, "sequential")
    for _ in range(args.bursts):
        for c in contenders:
            c.batch(args.burst, f"concurrent x{args.burst}")
    sb.stop(agent)
    standalone = Contender(STANDALONE, ours[0].plugin, np_conf, np_pods)
    standalone.batch(1, "warmup")
    for _ in range(args.standalone):
        for c in (ref, standalone):
            c.batch(1, "sequential")
    return report_of(contenders + [standalone], args)


def report_of(contenders: list[Contender], args) -> dict:
    cases = {}
    for c in contenders:
        for case, samples in c.samples.items():
            if "warmup" not in case:
                cases.setdefault(case, {})[c.name] = summarise(samples)
    ratios = {case: {name: s["p50"] / by["reference"]["p50"] for name, s in by.items() if name != "reference"}
              for case, by in cases.items() if "reference" in by}
    return {"benchmark": "cni_latency", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": sys.version.split()[0]},
            "path_measured": "netplane: the installed native client (a fresh process per call) -> a running "
                             "agent; netplane python client: its Python twin -> the same agent; netplane "
                             "standalone: the native client with no agent, exec'ing the plugin in-process; "
                             "every DEL checked to leave no eth0 in the pod",
            "params": vars(args), "cases": cases, "ratio_p50_netplane_over_reference": ratios,
            "goals": [{"case": case, "contender": who, "at_most": limit,
                       "ratio": ratios.get(case, {}).get(who),
                       "met": ratios.get(case, {}).get(who) is not None and ratios[case][who] <= limit}
                      for case, who, limit in GOALS]}


def write(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cni_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# CNI ADD/DEL latency (ms)", "",
             f"{report['when']}, {report['machine']['cpus']} CPUs, kernel {report['machine']['kernel']}. "
             f"{report['path_measured']}.", "",
             "| case | plugin | n | p50 | p90 | ratio p50 vs reference |", "|---|---|---|---|---|---|"]
    for case, by in report["cases"].items():
        for name, s in by.items():
            ratio = report["ratio_p50_netplane_over_reference"].get(case, {}).get(name)
            lines.append(f"| {case} | {name} | {s['n']} | {s['p50']:.1f} | {s['p90']:.1f} | "
                         f"{'' if ratio is None else f'{ratio:.2f}'} |")
    lines += ["", "| goal | ratio | met |", "|---|---|---|"]
    for goal in report["goals"]:
        ratio = "–" if goal["ratio"] is None else f"{goal['ratio']:.2f}"
        lines.append(f"| {goal['contender']} {goal['case']} ≤ {goal['at_most']}× reference | {ratio} | "
                     f"{'yes' if goal['met'] else 'no'} |")
    table = "\n".join(lines) + "\n"
    (RESULTS / "cni_latency.md").write_text(table)
    print(table)
    plot(report)


def plot(report: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in report["cases"] if "reference" in report["cases"][c]]
    names = ["reference"] + [name for name, _ in AGENT_CLIENTS] + [STANDALONE]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [report["cases"][c].get(name, {}).get("p50", 0.0) for c in cases]
        offset = (k - (len(names) - 1) / 2) * width
        bars = ax.bar([i + offset for i in range(len(cases))], values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel("p50 latency per call (ms)")
    ax.set_yscale("log")
    ax.set_title("CNI ADD/DEL p50: netplane vs bridge + host-local (log scale)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "cni_latency.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
