"""Maglev lookup tables, computed: what building every Service's table costs
the proxy's CPU, compiled (ext/maglev.pyx) and in pure Python
(netplane/proxy/ebpf/maglev.py), and the kernel memory the tables take.

S Services of E backends each (default 10,000 x 10), each backend at a
random but seeded 10.x.y.z:8080, distinct within its Service, with ids
numbered across the cluster; every table M slots (default 16381) under one
seed. Both paths build their tables in the same run, each table timed
alone: the fastest available implementation (netplane.fastpath) all S, the
pure twin all S too or, with --pure-sample N, the first N, its total then
extrapolated to S (and labelled so). Every pure table is checked equal to
the fast path's, outside the timing. Memory: S x M x 4 bytes at the fixed
size, and at compact sizing (maglev.table_size(E, M, compact=True)).

No root, no kernel: `python -m netplane.bench.maglev [--services S]
[--endpoints E] [--size M] [--pure-sample N] [--out DIR]` writes
maglev_tables.{json,md,png} to benchmarks/results/ (or DIR).
"""
import argparse
import random
import time
from pathlib import Path

from netplane import fastpath
from netplane.bench import results
from netplane.bench.machine import describe
from netplane.proxy.ebpf import entries
from netplane.proxy.ebpf import maglev as pure

NAME = "maglev_tables"
ROOT = Path(__file__).resolve().parents[2]
PORT = 8080
MIB = 1 << 20


def cluster(services: int, endpoints: int, seed: int) -> list[tuple[list[bytes], list[int]]]:
    """Each Service's backend names and ids."""
    rng = random.Random(seed)
    out = []
    for s in range(services):
        hosts = rng.sample(range(1 << 24), endpoints)
        names = [pure.name(entries.address(f"10.{h >> 16}.{h >> 8 & 255}.{h & 255}"), PORT) for h in hosts]
        out.append((names, list(range(s * endpoints + 1, (s + 1) * endpoints + 1))))
    return out


def build(module, services: list[tuple[list[bytes], list[int]]], m: int, seed: int, check=None) -> float:
    """Seconds `module` spends on the tables, each timed alone; check(i, table)
    runs on each one outside the timing."""
    spent = 0.0
    for i, (names, ids) in enumerate(services):
        t = time.perf_counter()
        table = module.table(names, ids, m, seed)
        spent += time.perf_counter() - t
        if check:
            check(i, table)
    return spent


def run(services: int, endpoints: int, size: int = pure.DEFAULT_SIZE, pure_sample: int | None = None,
        seed: int = 1, say=print) -> dict:
    fast = fastpath.load("maglev")
    tables = cluster(services, endpoints, seed)
    sample = tables[:pure_sample or services]

    def same(i: int, table: bytes) -> None:
        names, ids = sample[i]
        if table != fast.table(names, ids, size, seed):
            raise RuntimeError(f"Service {i}: the pure table differs from {fast.__name__}'s")

    say(f"{services:,} Services x {endpoints} backends, M = {size}: {fast.__name__}")
    fast_s = build(fast, tables, size, seed)
    say(f"  {fast_s:.2f} s; pure Python on {len(sample):,} tables")
    measured = build(pure, sample, size, seed, check=same)
    pure_s = measured * services / len(sample)
    compact = sum(pure.table_size(len(names), size, compact=True) for names, _ in tables)
    return {"benchmark": NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": describe(ROOT, ()),
            "params": {"services": services, "endpoints": endpoints, "size": size, "seed": seed,
                       "pure_sample": pure_sample},
            "fast": {"module": fast.__name__, "compiled": fastpath.is_compiled(fast), "tables": services,
                     "total_s": fast_s, "per_table_us": fast_s / services * 1e6},
            "pure": {"module": pure.__name__, "tables": len(sample), "measured_s": measured, "total_s": pure_s,
                     "per_table_us": measured / len(sample) * 1e6, "extrapolated": len(sample) < services},
            "ratio": pure_s / fast_s,
            "memory": {"fixed": {"size": size, "bytes": services * size * 4},
                       "compact": {"sizes": sorted({pure.table_size(len(n), size, compact=True) for n, _ in tables}),
                                   "bytes": compact * 4}}}


# -- report -------------------------------------------------------------------------------

def _how(path: dict, services: int) -> str:
    if path.get("extrapolated"):
        return f"**extrapolated** from {path['tables']:,} tables ({path['measured_s']:.2f} s)"
    return f"measured, all {services:,} tables"


def table(report: dict) -> list[str]:
    services = report["params"]["services"]
    fast, slow = report["fast"], report["pure"]
    label = "compiled" if fast["compiled"] else "fastest (not compiled)"
    return ["| path | total s | per table µs | |", "|---|---|---|---|",
            f"| {label} ({fast['module']}) | {fast['total_s']:.2f} | {fast['per_table_us']:,.0f} | "
            f"{_how(fast, services)} |",
            f"| pure ({slow['module']}) | {slow['total_s']:.2f} | {slow['per_table_us']:,.0f} | "
            f"{_how(slow, services)} |",
            "", f"pure / {label}: **{report['ratio']:.1f}x**"]


def memory_table(report: dict) -> list[str]:
    p, mem = report["params"], report["memory"]
    return ["| sizing | M | kernel memory (S x M x 4 bytes) |", "|---|---|---|",
            f"| fixed | {mem['fixed']['size']} | {mem['fixed']['bytes'] / MIB:,.1f} MiB |",
            f"| compact (>= {pure.SLOTS_PER_BACKEND} slots a backend, at most {p['size']}) | "
            f"{', '.join(map(str, mem['compact']['sizes']))} | {mem['compact']['bytes'] / MIB:,.1f} MiB |"]


def markdown(report: dict) -> str:
    m, p = report["machine"], report["params"]
    return "\n".join([
        "# Maglev lookup tables: compiled against pure Python", "",
        f"{report['when']}, {m['cpus']} CPUs, kernel {m['kernel']}; {m.get('tree', '')}.", "",
        f"{p['services']:,} Services x {p['endpoints']} backends, M = {p['size']}, seed {p['seed']}.", "",
        *table(report), "", *memory_table(report), "",
        "## Method", "",
        "Each backend at a random but seeded 10.x.y.z:8080, distinct within its Service; its name is the "
        "mapped address and the port (maglev.name()). Both paths run in the same process, one after the "
        "other, each table timed alone (time.perf_counter around one table() call): the fast path on every "
        "table, the pure one on every table or, with --pure-sample N, on the first N, its total then "
        "extrapolated to all of them (marked above). Every pure table is checked equal to the fast path's, "
        "outside the timing. Memory counts the tables' slots only (4 bytes each), not a map's own overhead.",
        ""])


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fast, slow, mem = report["fast"], report["pure"], report["memory"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    bars = left.bar(["compiled" if fast["compiled"] else "fastest", "pure"],
                    [fast["per_table_us"], slow["per_table_us"]], color=["C0", "C1"])
    if slow["extrapolated"]:
        bars[1].set_hatch("//")
        bars[1].set_label(f"pure: from {slow['tables']:,} of {report['params']['services']:,} tables")
        left.legend(fontsize=8)
    left.set(yscale="log", ylabel="µs per table", title=f"one table, M = {report['params']['size']} "
             f"({report['ratio']:.1f}x)")
    right.bar([f"fixed (M = {mem['fixed']['size']})", "compact"],
              [mem["fixed"]["bytes"] / MIB, mem["compact"]["bytes"] / MIB], color=["C2", "C3"])
    right.set(ylabel="MiB", title=f"{report['params']['services']:,} Services' tables in the kernel")
    for ax in (left, right):
        ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict, out: Path) -> dict[str, Path]:
    return results.write(out, NAME, report, markdown, plot)


# -- command line -------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=10_000)
    p.add_argument("--endpoints", type=int, default=10, help="backends per Service")
    p.add_argument("--size", type=int, default=pure.DEFAULT_SIZE, choices=pure.SIZES, help="M, slots a table")
    p.add_argument("--pure-sample", type=int, metavar="N",
                   help="run the pure path on the first N tables only and extrapolate (default: all, measured)")
    p.add_argument("--seed", type=int, default=1, help="the backends' addresses and the tables' seed")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    if args.services < 1 or not 1 <= args.endpoints <= args.size:
        p.error(f"--services must be positive and --endpoints within 1..{args.size}")
    if args.pure_sample is not None and not 1 <= args.pure_sample <= args.services:
        p.error("--pure-sample must be within 1..--services")
    if not 0 <= args.seed <= pure.U64:
        p.error("--seed must be within 0..2**64-1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args.services, args.endpoints, args.size, args.pure_sample, args.seed,
                 say=lambda text: print(text, flush=True))
    paths = write(report, args.out)
    print("\n".join(["", *table(report), "", *memory_table(report), ""]))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
