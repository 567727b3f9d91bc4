"""A full sync's compile and encoding, without a kernel: from the parsed
policies to the bytes each mode hands the kernel, for N Services of 10
endpoints (the programming benchmark's cluster: this node holds one
endpoint in ten).

- ipvs: compile_family, the nftables transaction around IPVS as nft text,
  and every IPVS netlink message (virtual and real servers) encoded;
- nftables and iptables: compile, and the text nft / iptables-restore
  reads (their own renderers).

Each measurement is a fresh process (`python -m netplane.bench.full_sync_encode
--one MODE N`), as a restarted daemon would do it; objects are built and
parsed before the clock starts. The modes run interleaved, round by round.
Writes full_sync_encode.{json,md,png} to benchmarks/results/ (or --out).

Usage: python -m netplane.bench.full_sync_encode [--sizes 1000,10000] [--rounds 5]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from netplane.bench import results
from netplane.bench.machine import describe

MODES = ("ipvs", "nftables", "iptables")
NAME = "full_sync_encode"


def policies(n: int):
    import netaddr

    from netplane.bench.programming import filler_objects, target_objects
    from netplane.proxy.policy import Node, family_policies
    from netplane.proxy.settings import Settings
    from netplane.proxy.state import snapshot

    objects = filler_objects(n) + target_objects("pod-a")
    settings = Settings(Node("node1"), (netaddr.IPAddress("192.168.200.11"),), (netaddr.IPNetwork("10.96.0.0/11"),))
    return settings, family_policies(snapshot(objects[0::2], objects[1::2]).ports, 4, settings.node)


def one(mode_name: str, n: int) -> dict:
    """In this (fresh) process: the seconds from policies to bytes."""
    from netplane.gcpause import cyclic_gc_paused
    from netplane.proxy import modes
    from netplane.proxy.settings import nodeport_addresses

    settings, pol = policies(n)
    mode = modes.get(mode_name)
    ctx = mode.context(settings, mode.options(), 4, nodeport_addresses(settings, 4, None))
    with cyclic_gc_paused():
        started = time.perf_counter()
        plan = mode.compile(pol, ctx, None, None, None)
        compiled = time.perf_counter()
        size = len(_bytes(mode_name, mode, plan))
        done = time.perf_counter()
    return {"compile_s": compiled - started, "encode_s": done - compiled, "total_s": done - started, "bytes": size}


def _bytes(mode_name: str, mode, plan) -> bytes:
    if mode_name != "ipvs":
        return mode.render(plan).encode()
    from netplane.proxy.ipvs import netlink
    from netplane.proxy.nftables import render

    c = plan.changes
    messages = b"".join(netlink.messages(0x20, 4, 1, c.add_servers, c.edit_servers, c.dests, c.delete_servers))
    return render.script(c.nft).encode() + messages


def measure(sizes, rounds: int, say=print) -> dict:
    samples = {(m, n): [] for m in MODES for n in sizes}
    for r in range(rounds):
        for n in sizes:
            for m in MODES:
                done = subprocess.run([sys.executable, "-m", "netplane.bench.full_sync_encode", "--one", m, str(n)],
                                      capture_output=True, text=True, check=True)
                samples[(m, n)].append(json.loads(done.stdout))
                say(f"round {r + 1}/{rounds}: {m} at {n}: {samples[(m, n)][-1]['total_s']:.3f} s")
    rows = []
    for (m, n), got in samples.items():
        totals = [s["total_s"] for s in got]
        rows.append({"mode": m, "services": n, "median_s": statistics.median(totals), "min_s": min(totals),
                     "max_s": max(totals), "compile_s": statistics.median(s["compile_s"] for s in got),
                     "encode_s": statistics.median(s["encode_s"] for s in got), "bytes": got[0]["bytes"],
                     "samples": got})
    return {"benchmark": NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": describe(Path(__file__).resolve().parents[2]), "rounds": rounds, "results": rows}


def markdown(report: dict) -> str:
    lines = ["# A full sync's compile and encoding (no kernel)", "",
             f"{report['when']}; medians of {report['rounds']} fresh processes, interleaved; "
             "10 endpoints per Service.", "",
             "| mode | Services | compile + encode (median) | spread | compile | encode | bytes | vs ipvs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ipvs = {r["services"]: r["median_s"] for r in report["results"] if r["mode"] == "ipvs"}
    for r in sorted(report["results"], key=lambda r: (r["services"], MODES.index(r["mode"]))):
        lines.append(f"| {r['mode']} | {r['services']:,} | {r['median_s']:.3f} s | {r['min_s']:.3f}-{r['max_s']:.3f} | "
                     f"{r['compile_s']:.3f} s | {r['encode_s']:.3f} s | {r['bytes']:,} | "
                     f"{r['median_s'] / ipvs[r['services']]:.2f}x |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in MODES:
        rows = sorted((r for r in report["results"] if r["mode"] == m), key=lambda r: r["services"])
        xs = [r["services"] for r in rows]
        ys = [r["median_s"] for r in rows]
        err = [[y - r["min_s"] for y, r in zip(ys, rows)], [r["max_s"] - y for y, r in zip(ys, rows)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=m)
    ax.axhline(1.0, color="grey", linestyle=":", label="goal (ipvs at 10k)")
    ax.set_xscale("log")
    ax.set_xlabel("Services (10 endpoints each)")
    ax.set_ylabel("compile + encode, s (fresh process)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "benchmarks" / "results")
    p.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return 0
    report = measure([int(s) for s in args.sizes.split(",")], args.rounds)
    paths = results.write(args.out, NAME, report, markdown, plot)
    print(markdown(report))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
