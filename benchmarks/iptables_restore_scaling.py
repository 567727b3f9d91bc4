"""How long a full iptables sync takes to load, by the shape of its
transactions, and why `iptables-restore --noflush` is slow on nf_tables.

The rule set is netplane's compact layout for N Services x 10 endpoints over
10 nodes (the cluster of benchmarks/proxy_compile.py). For each N in --sizes
every shape below is loaded twice into its own throwaway network namespace:
into the namespace holding only a few foreign rules ("empty"), then again
on top of itself ("loaded"), as a periodic full sync does. The foreign rules
(a chain of another program in nat and filter, with jumps from PREROUTING,
OUTPUT and INPUT) are checked afterwards: a shape that loses them is not
usable, however fast.

  one        one transaction, iptables-nft-restore --noflush (what netplane does)
  one -S     the same, with a `-S` line first in the nat table (see below)
  chunked    --noflush, K ports a transaction (--chunk): the static chains
             first, the ports' chains, the top-level chains last
  plain      one transaction WITHOUT --noflush: flushes the whole table,
             foreign rules included; the kernel's and parser's floor
  legacy     iptables-legacy-restore --noflush, the same text

and, at the largest N, a one-port partial sync (one endpoint moved) with and
without the `-S` line.

Why: iptables 1.8.9's nft backend records, for every command of a
transaction, the chain it names (and the chain it jumps to) in a sorted
linked list (nft-cache.c, cache_chain_list_insert), so that it can fetch
only those chains from the kernel; each insertion walks the list with
strcmp. A transaction of R rules over C chains costs O(R x C) in user space.
Without --noflush the table flush makes it fetch all chains and skip the
list. Any command that names no chain does the same; `-S` (list the table)
is one that changes nothing: its output goes to /dev/null, and it costs a
fetch of the table's rules, so it pays off only for big transactions.

Root only. Every namespace is deleted on exit, on an error and on Ctrl-C.

Usage: python benchmarks/iptables_restore_scaling.py [--sizes 1000,3000,10000]
           [--repeats 2] [--chunk 250] [--skip-one-above N]
"""
import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import proxy_compile as cluster                      # noqa: E402  (the cluster objects)
from netplane.proxy.iptables.compile import compile_family, static_chains, text as restore_text  # noqa: E402
from netplane.proxy.state import changed              # noqa: E402
from netplane.sandbox import Sandbox                  # noqa: E402

NFT, LEGACY = "iptables-nft-restore", "iptables-legacy-restore"
FOREIGN = b"""*nat
:FOREIGN-NAT - [0:0]
-A FOREIGN-NAT -d 192.0.2.1/32 -p tcp -j DNAT --to-destination 192.0.2.2
-A PREROUTING -j FOREIGN-NAT
-A OUTPUT -d 198.51.100.0/24 -j RETURN
COMMIT
*filter
:FOREIGN-FILTER - [0:0]
-A FOREIGN-FILTER -s 203.0.113.0/24 -j DROP
-A INPUT -j FOREIGN-FILTER
COMMIT
"""
FOREIGN_LINES = [line for line in FOREIGN.decode().splitlines() if line.startswith("-A ")]


# -- the transactions -------------------------------------------------------------

def full_plan(n: int):
    return compile_family(cluster.views_of(cluster.snapshot_of(cluster.objects(n))), cluster.context("compact"))


def one(plan) -> list[bytes]:
    return [plan.text.encode()]


def listing_first(transactions: list[bytes]) -> list[bytes]:
    """A `-S` first in the nat table: a command naming no chain, so that
    iptables-nft fetches the whole table instead of chain by chain."""
    return [t.replace(b"*nat\n", b"*nat\n-S\n") for t in transactions]


def chunked(plan, k: int) -> list[bytes]:
    """The full sync as several --noflush transactions: the static chains
    (NP-MARK-MASQ, which the ports jump to), then k ports' chains at a time,
    then the top-level chains, which jump to the ports' chains."""
    static = static_chains(plan.context)
    top = {t: {name: rules for name, rules in chains.items() if name not in static[t]}
           for t, chains in plan.tables.items()}
    ports = list(plan.fragments.values())
    parts = [restore_text.transaction(static, [], {})]
    parts += [restore_text.transaction({}, ports[i:i + k], {}) for i in range(0, len(ports), k)]
    parts.append(restore_text.transaction(top, [], {}))
    return ["".join(p).encode() for p in parts if p]


def one_port_change(n: int) -> tuple[bytes, bytes]:
    """A full sync's text and the partial sync that moves one endpoint."""
    ctx = cluster.context("compact")
    snap_a, snap_b = cluster.snapshot_of(cluster.objects(n)), cluster.snapshot_of(cluster.objects(n, moved=1))
    views_a = cluster.views_of(snap_a)
    full = compile_family(views_a, ctx)
    full_text = full.text.encode()
    names = changed(snap_a.ports, snap_b.ports)
    partial = compile_family(cluster.views_of(snap_b, previous=views_a, changed=names), ctx,
                             previous=full, changed=names)
    return full_text, partial.text.encode()


# -- running ------------------------------------------------------------------------

def load(sandbox: Sandbox, ns: str, argv: list[str], transactions: list[bytes]) -> float:
    """Seconds to feed the transactions, one restore process each, in order."""
    start = time.perf_counter()
    for data in transactions:
        proc = subprocess.Popen(["nsenter", f"--net={ns}", "--", *argv], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(data)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode:
            raise RuntimeError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()[-500:]}")
    return time.perf_counter() - start


def saved(sandbox: Sandbox, ns: str) -> tuple[str, bool]:
    """(digest of the NP- rules, whether every foreign rule is still there)."""
    out = sandbox.run(ns, ["iptables-nft-save"]).stdout.decode()
    lines = [line for line in out.splitlines() if not line.startswith("#")]
    ours = "\n".join(line for line in lines if "NP-" in line)
    return hashlib.sha256(ours.encode()).hexdigest()[:12], all(rule in lines for rule in FOREIGN_LINES)


def measure(n: int, args) -> dict:
    """shape -> {"empty": [s], "loaded": [s], "foreign": bool, "digest": str}."""
    plan = full_plan(n)
    shapes = {"one -S": ([NFT, "--noflush"], listing_first(one(plan))),
              f"chunked {args.chunk}": ([NFT, "--noflush"], chunked(plan, args.chunk)),
              "plain (flushes table)": ([NFT], one(plan)),
              "legacy --noflush": ([LEGACY, "--noflush"], one(plan))}
    if n <= args.skip_one_above:
        shapes = {"one --noflush": ([NFT, "--noflush"], one(plan)), **shapes}
    del plan
    out = {name: {"empty": [], "loaded": []} for name in shapes}
    for rep in range(args.repeats):
        for name, (argv, transactions) in shapes.items():
            with Sandbox() as sandbox:              # one namespace per load pair, gone right after
                ns = sandbox.netns("scal")
                load(sandbox, ns, [argv[0], "--noflush"], [FOREIGN])
                out[name]["empty"].append(load(sandbox, ns, argv, transactions))
                out[name]["loaded"].append(load(sandbox, ns, argv, transactions))
                if rep == 0 and argv[0] == NFT:
                    out[name]["digest"], out[name]["foreign"] = saved(sandbox, ns)
            print(f"  {n:>6} {name:<24} empty {out[name]['empty'][-1]:7.2f} s   "
                  f"loaded {out[name]['loaded'][-1]:7.2f} s", file=sys.stderr, flush=True)
    return out


def measure_partial(n: int, repeats: int) -> dict:
    full_text, partial = one_port_change(n)
    result = {"partial --noflush": [], "partial -S": []}
    with Sandbox() as sandbox:
        ns = sandbox.netns("partial")
        load(sandbox, ns, [NFT, "--noflush"], listing_first([full_text]))
        for _ in range(max(repeats, 3)):
            # the same change applied again is the same transaction: the chain is rewritten
            result["partial --noflush"].append(load(sandbox, ns, [NFT, "--noflush"], [partial]))
            result["partial -S"].append(load(sandbox, ns, [NFT, "--noflush"], listing_first([partial])))
    return result


# -- report -------------------------------------------------------------------------

def table(sizes: list[int], results: dict[int, dict], partial: dict | None, largest: int) -> str:
    shapes = list(dict.fromkeys(name for n in sizes for name in results[n]))
    head = "| shape | " + " | ".join(f"{n} empty | {n} loaded" for n in sizes) + " | NP- rules same | foreign kept |"
    rows = [head, "|" + "---|" * (2 * len(sizes) + 3)]
    reference = {n: next((r.get("digest") for r in results[n].values() if r.get("digest")), None) for n in sizes}
    for name in shapes:
        cells, same, kept = [], set(), set()
        for n in sizes:
            r = results[n].get(name)
            if r is None:
                cells += ["skipped", "skipped"]
                continue
            cells += [f"{statistics.median(r['empty']):.2f} s", f"{statistics.median(r['loaded']):.2f} s"]
            if "digest" in r:
                same.add(r["digest"] == reference[n])
                kept.add(r["foreign"])
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {_yes(same)} | {_yes(kept)} |")
    out = "\n".join(rows)
    if partial:
        out += f"\n\nOne-port partial sync at {largest} (into the loaded rule set), median:\n"
        out += "\n".join(f"- {name}: {statistics.median(v) * 1000:.0f} ms" for name, v in partial.items())
    return out


def _yes(values: set) -> str:
    return "n/a" if not values else "yes" if values == {True} else "NO"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,3000,10000", help="Service counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=2, help="loads per shape and size (medians reported)")
    ap.add_argument("--chunk", type=int, default=250, help="ports per transaction in the chunked shape")
    ap.add_argument("--skip-one-above", type=int, default=10000,
                    help="skip the plain one --noflush shape above this size (it takes ~50 s a load at 10k)")
    ap.add_argument("--no-partial", action="store_true", help="skip the one-port partial sync")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for n in sizes:
        print(f"size {n}", file=sys.stderr, flush=True)
        results[n] = measure(n, args)
    partial = None if args.no_partial else measure_partial(max(sizes), args.repeats)
    print(table(sizes, results, partial, max(sizes)))


if __name__ == "__main__":
    main()
