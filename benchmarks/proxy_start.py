"""What the drop-in work costs at start: `netplane proxy --once`, a fresh
process from spawn to exit with every Service in the kernel, this tree
beside a baseline revision, interleaved in one run.

Since the baseline, a start also checks CAP_NET_ADMIN, binds nothing (--once),
reads its Node (none here: the manifests hold none), writes kube-proxy's
conntrack timeouts in the node's namespace, detects the iptables backend
(two iptables-save runs per backend and family), logs the summary and
checks br_netfilter. This measures what that adds, end to end, as an
operator meets it (the command, not an inner loop).

Each sample: a fresh network namespace (loopback and a veth pair, one end
with the node IP), the command run in it (`python -S` with the tree first on
PYTHONPATH, then the venv's site-packages, so each tree runs its own code
and nothing else differs), then a check that the kernel holds every
Service (iptables: one NP-SVC chain per port; nftables: one service-ips
element per port), then the namespace deleted. Trees and modes take turns,
the order rotating each round.

The baseline is a `git worktree` of --baseline (default: the revision
this work started from), given this tree's compiled Cython modules when
their sources did not change (else it refuses: the comparison would not
be fair).

Prints p50/p90 per (mode, size, tree) and the ratio this/baseline; writes
JSON, markdown and a PNG to benchmarks/results/.

Usage: python benchmarks/proxy_start.py [--baseline REV] [--services 100,1000] [--rounds 7]
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netplane import sandbox
from netplane.bench.proxy.stats import percentile

TREE = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
NODE_IP, CLUSTER_CIDR = "192.168.200.11", "10.244.0.0/16"
MODES = ("iptables", "nftables")


def manifests(path: Path, services: int) -> None:
    """`services` ClusterIP Services of one port, each with two endpoints."""
    docs = []
    for i in range(services):
        name, ip = f"s{i}", f"10.96.{i // 250}.{i % 250 + 1}"
        docs.append(json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "b"},
                                "spec": {"clusterIP": ip, "clusterIPs": [ip],
                                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
        docs.append(json.dumps({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{name}-1", "namespace": "b", "labels": {"kubernetes.io/service-name": name}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.244.{1 + j}.{i % 250 + 2}"], "conditions": {"ready": True},
                           "nodeName": f"n{1 + j}"} for j in range(2)]}))
    path.write_text("\n---\n".join(docs) + "\n")


def baseline_tree(rev: str, where: Path) -> Path:
    changed = subprocess.run(["git", "-C", str(TREE), "diff", "--quiet", rev, "HEAD", "--", "ext", "setup.py"])
    if changed.returncode != 0:
        raise SystemExit(f"proxy_start: the Cython sources changed since {rev}: build that tree to compare it")
    subprocess.run(["git", "-C", str(TREE), "worktree", "add", "--detach", "--quiet", str(where), rev], check=True)
    for built in (TREE / "netplane" / "_ext").glob("*.so"):
        shutil.copy2(built, where / "netplane" / "_ext" / built.name)
    return where


def held(sb: sandbox.Sandbox, netns: str, mode: str) -> int:
    """How many Services the kernel holds in `mode`."""
    if mode == "iptables":
        out = sb.run(netns, ["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
        return sum(1 for line in out.splitlines() if line.startswith(":NP-SVC-"))
    out = sb.run(netns, ["nft", "-j", "list", "map", "ip", "netplane", "service-ips"],
                 capture_output=True, text=True).stdout
    elements = json.loads(out)["nftables"][1]["map"].get("elem", [])
    return len(elements)


def one(sb: sandbox.Sandbox, tree: Path, mode: str, services: int, path: Path, n: int) -> float:
    netns = sb.netns(f"start{n}")
    for argv in (["ip", "link", "set", "lo", "up"], ["ip", "link", "add", "node0", "type", "veth", "peer", "node1"],
                 ["ip", "addr", "add", f"{NODE_IP}/24", "dev", "node0"], ["ip", "link", "set", "node0", "up"],
                 ["ip", "link", "set", "node1", "up"]):
        sb.run(netns, argv)
    site = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    env = {**os.environ, "PYTHONPATH": f"{tree}:{site}"}
    argv = [sys.executable, "-S", "-m", "netplane", "proxy", "--once", "--mode", mode, "--manifests", str(path),
            "--node-name", "n1", "--node-ip", NODE_IP, "--cluster-cidr", CLUSTER_CIDR, "--log-level", "WARNING"]
    started = time.perf_counter()
    done = sb.run(netns, argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"proxy_start: {tree.name} {mode} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    if held(sb, netns, mode) != services:
        raise SystemExit(f"proxy_start: {tree.name} {mode} left {held(sb, netns, mode)} of {services} Services")
    sandbox.delete_netns(Path(netns).name)
    return elapsed


def measure(args, base: Path, scratch: Path) -> dict:
    trees = {"this": TREE, "baseline": base}
    samples: dict[str, list[float]] = {}
    subjects = [(t, m) for m in MODES for t in trees]
    n = 0
    with sandbox.Sandbox() as sb:
        for size in args.services:
            path = scratch / f"services-{size}.json"
            manifests(path, size)
            for r in range(args.rounds):
                turn = subjects[r % len(subjects):] + subjects[:r % len(subjects)]
                for tree, mode in turn:
                    n += 1
                    samples.setdefault(f"{mode}/{size}/{tree}", []).append(one(sb, trees[tree], mode, size, path, n))
                print(f"  {size} Services, round {r + 1}/{args.rounds} done", flush=True)
    return samples


def report(samples: dict[str, list[float]], args) -> dict:
    rows = []
    for mode in MODES:
        for size in args.services:
            this, base = samples[f"{mode}/{size}/this"], samples[f"{mode}/{size}/baseline"]
            p50, b50 = percentile(this, 50), percentile(base, 50)
            rows.append({"mode": mode, "services": size, "this_p50_s": p50, "this_p90_s": percentile(this, 90),
                         "baseline_p50_s": b50, "baseline_p90_s": percentile(base, 90), "ratio_p50": p50 / b50})
    return {"baseline": args.baseline, "rounds": args.rounds, "machine": platform.node(), "rows": rows,
            "samples": samples}


def write(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "proxy_start.json").write_text(json.dumps(result, indent=1))
    lines = [f"# `netplane proxy --once`, spawn to exit: this tree beside {result['baseline']}", "",
             "| mode | Services | this p50 (p90), s | baseline p50 (p90), s | this/baseline |", "|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['services']:,} | {r['this_p50_s']:.3f} ({r['this_p90_s']:.3f}) | "
                     f"{r['baseline_p50_s']:.3f} ({r['baseline_p90_s']:.3f}) | {r['ratio_p50']:.2f} |")
    (RESULTS / "proxy_start.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(result)


def plot(result: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r['mode']}\n{r['services']:,}" for r in result["rows"]]
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [r["baseline_p50_s"] for r in result["rows"]], 0.4, label=result["baseline"])
    ax.bar([i + 0.2 for i in x], [r["this_p50_s"] for r in result["rows"]], 0.4, label="this tree")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("spawn to exit, s (p50)")
    ax.set_title("netplane proxy --once: start cost")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "proxy_start.png", dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="15a51d1", help="the revision to compare with (default 15a51d1)")
    p.add_argument("--services", default="100,1000", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("proxy_start: needs root (it makes network namespaces)")
    scratch = Path(tempfile.mkdtemp(prefix="np-start-"))
    try:
        base = baseline_tree(args.baseline, scratch / "baseline")
        write(report(measure(args, base, scratch), args))
    finally:
        subprocess.run(["git", "-C", str(TREE), "worktree", "remove", "--force", str(scratch / "baseline")],
                       capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
