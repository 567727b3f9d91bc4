"""iptables rule generation at scale: pure Python against the Cython fast
path, netplane's compact layout against kube-proxy's, and what the kernel
then takes to load the result.

The cluster: N Services with 10 endpoints each, spread over 10 nodes, so
this node (node1) holds one endpoint in ten, as in a 10-node cluster. For
N in --sizes and both layouts:

- full compile: compile_family() from ready views to restore text, in a
  fresh process per implementation (NETPLANE_NO_EXTENSIONS=1 for pure);
  median of 7 runs for both, each run with the previous plan still alive
  (freeing it is not compiling);
- incremental compile: one endpoint of one Service changes, and the
  partial compile_family() that follows (median of 20);
- apply (root): the full text loaded with `iptables-restore --noflush`
  (nft backend, Debian's default) and `iptables-legacy-restore`, into an
  empty network namespace made for it and deleted after; combinations
  that take minutes (kube-proxy's layout on nft past 1k) are skipped;
- end to end: `netplane compile` on a 10k-Service `kind: List` JSON file
  (process start, read, parse, compile, print), wall clock, both paths.

Writes proxy_compile.{json,md,png} to benchmarks/results/ (or --out).

Usage: python benchmarks/proxy_compile.py [--sizes 1000,10000,30000] [--out DIR] [--no-apply]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "proxy_compile"
ENDPOINTS, NODES = 10, 10
LAYOUTS = ("compact", "kube-proxy")
END_TO_END_SIZE = 10000
REPEATS = 7             # full compiles per implementation: the first ones also pay for fresh memory
# (layout, restore binary) -> the largest size loaded: beyond it a load takes minutes
APPLY_LIMIT = {("compact", "iptables-restore"): 10000, ("kube-proxy", "iptables-restore"): 1000,
               ("compact", "iptables-legacy-restore"): 30000, ("kube-proxy", "iptables-legacy-restore"): 10000}


# -- the cluster -----------------------------------------------------------------

def objects(n: int, moved: int = 0) -> list[dict]:
    """N Services, 10 endpoints each over 10 nodes; `moved` replaces
    endpoint 0 of the first Service (the one endpoint change)."""
    from netplane.proxy import build as b

    out = []
    for i in range(n):
        name = f"svc{i:05d}"
        ip = f"10.{96 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"
        eps = []
        for k in range(ENDPOINTS):
            e = i * ENDPOINTS + k
            eps.append(b.endpoint(f"10.{100 + e // 62500}.{e // 250 % 250}.{e % 250 + 2}", f"node{e % NODES + 1}"))
        if i == 0 and moved:
            eps[0] = b.endpoint(f"10.99.0.{moved % 250 + 2}", "node2")
        out += [b.service(name, ip, [{"name": "http", "port": 80}]),
                b.endpoint_slice(name, eps, [{"name": "http", "port": 8080}])]
    return out


def snapshot_of(objs: list[dict]):
    from netplane.proxy.state import snapshot

    return snapshot([o for o in objs if o["kind"] == "Service"], [o for o in objs if o["kind"] != "Service"])


def views_of(snap, previous=None, changed=None):
    from netplane.proxy.policy import Node, family_policies

    return family_policies(snap.ports, 4, Node("node1"), previous, changed)


def context(layout: str):
    from netplane.proxy.iptables.rules import Context

    return Context(4, "10.244.0.0/16", False, ("-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8",),
                   layout=layout)


# -- inner jobs (fresh processes) -----------------------------------------------------

def inner_compile(n: int, layout: str, repeats: int) -> dict:
    from netplane import fastpath
    from netplane.proxy.iptables.compile import compile_family
    from netplane.proxy.state import changed

    ctx = context(layout)
    snap_a = snapshot_of(objects(n))
    views_a = views_of(snap_a)
    full, plan = [], None
    for _ in range(repeats):
        previous = plan         # freed after the clock stops: freeing the last plan is not compiling
        t = time.perf_counter()
        plan = compile_family(views_a, ctx)
        full.append(time.perf_counter() - t)
        del previous
    result = {"services": n, "layout": layout, "compiled": fastpath.is_compiled(fastpath.load("iptables_rules")),
              "full_s": statistics.median(full), "full_min_s": min(full), "text_bytes": len(plan.text.encode()),
              "rules": plan.text.count("\n-A "), "chains": plan.text.count("\n:")}
    # one endpoint change, back and forth: each partial compile consumes the previous result
    snap_b = snapshot_of(objects(n, moved=1))
    names = changed(snap_a.ports, snap_b.ports)
    views_b = views_of(snap_b, previous=views_a, changed=names)
    partial = []
    for k in range(20):
        target = views_b if k % 2 == 0 else views_a
        t = time.perf_counter()
        plan = compile_family(target, ctx, previous=plan, changed=names)
        partial.append(time.perf_counter() - t)
    result.update(partial_s=statistics.median(partial), partial_written=sum(map(len, plan.written.values())))
    return result


def inner_apply(n: int, layout: str, binaries: list[str]) -> dict:
    from netplane.proxy.iptables.compile import compile_family

    text = compile_family(views_of(snapshot_of(objects(n))), context(layout)).text.encode()
    out = {"services": n, "layout": layout}
    for binary in binaries:
        ns = f"np-bench-compile-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            t = time.perf_counter()
            subprocess.run(["ip", "netns", "exec", ns, binary, "--noflush"], input=text, check=True)
            out[binary] = time.perf_counter() - t
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=True)
    return out


def run_inner(*args: str, pure: bool = False, timeout: float = 1800) -> dict:
    env = {**os.environ, "NETPLANE_NO_EXTENSIONS": "1" if pure else "0"}
    proc = subprocess.run([sys.executable, __file__, "--inner", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"inner job {args} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


# -- end to end ---------------------------------------------------------------------

def end_to_end(repeats: int = 3) -> dict:
    netplane = str(Path(sys.executable).with_name("netplane"))
    out = {"services": END_TO_END_SIZE}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects(END_TO_END_SIZE)}))
        out["json_bytes"] = path.stat().st_size
        for label, pure in (("cython", False), ("pure", True)):
            walls, phases = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                proc = subprocess.run([netplane, "compile", "--manifests", tmp, "--node-name", "node1",
                                       "--cluster-cidr", "10.244.0.0/16", "--timing"],
                                      env={**os.environ, "NETPLANE_NO_EXTENSIONS": "1" if pure else "0"},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
                walls.append(time.perf_counter() - t)
                phases.append(proc.stderr.strip().splitlines()[-1])
            out[label] = {"wall_s": statistics.median(walls), "timing": phases[walls.index(statistics.median(walls))]}
    return out


# -- report -------------------------------------------------------------------------

def measure(args) -> dict:
    report = {"sizes": args.sizes, "endpoints_per_service": ENDPOINTS, "nodes": NODES, "cpus": os.cpu_count(),
              "compile": [], "apply": [], "end_to_end": None}
    for n in args.sizes:
        for layout in LAYOUTS:
            fast = run_inner("compile", str(n), layout, str(REPEATS))
            pure = run_inner("compile", str(n), layout, str(REPEATS), pure=True)
            assert fast["compiled"] and not pure["compiled"] and fast["text_bytes"] == pure["text_bytes"]
            row = {**fast, "pure_full_s": pure["full_s"], "pure_partial_s": pure["partial_s"],
                   "speedup": pure["full_s"] / fast["full_s"]}
            report["compile"].append(row)
            print(f"{n:>6} {layout:<10} full: cython {fast['full_s'] * 1000:7.1f} ms, pure {pure['full_s'] * 1000:7.0f} ms "
                  f"({row['speedup']:.1f}x); one endpoint: cython {fast['partial_s'] * 1000:.2f} ms, "
                  f"pure {pure['partial_s'] * 1000:.2f} ms; {fast['rules']} rules, {fast['chains']} chains", flush=True)
            if args.apply:
                binaries = [b for b in ("iptables-restore", "iptables-legacy-restore") if n <= APPLY_LIMIT[(layout, b)]]
                applied = run_inner("apply", str(n), layout, *binaries)
                report["apply"].append(applied)
                print(f"{n:>6} {layout:<10} apply: " + ", ".join(f"{b} {applied[b]:.2f} s" for b in binaries), flush=True)
    report["end_to_end"] = end_to_end()
    e2e = report["end_to_end"]
    print(f"netplane compile, {END_TO_END_SIZE} Services from JSON: cython {e2e['cython']['wall_s']:.2f} s, "
          f"pure {e2e['pure']['wall_s']:.2f} s")
    return report


def _ms(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 10 else f"{s:.1f} s"


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
    apply = {(a["services"], a["layout"]): a for a in report["apply"]}
    lines = ["# iptables compile: Cython against pure Python, compact against kube-proxy's layout",
             "", f"{report['endpoints_per_service']} endpoints per Service over {report['nodes']} nodes "
             f"(one in ten on this node), {report['cpus']} CPUs. Apply = `--noflush` load into an empty "
             "network namespace; '-' = not run (minutes).", "",
             "| services | layout | rules | chains | text | full compile (Cython) | full compile (pure) | speedup "
             "| one endpoint (Cython) | one endpoint (pure) | apply, nft | apply, legacy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["compile"]:
        a = apply.get((r["services"], r["layout"]), {})
        nft, legacy = a.get("iptables-restore"), a.get("iptables-legacy-restore")
        lines.append(f"| {r['services']:,} | {r['layout']} | {r['rules']:,} | {r['chains']:,} | "
                     f"{r['text_bytes'] / 1e6:.1f} MB | {_ms(r['full_s'])} | {_ms(r['pure_full_s'])} | "
                     f"{r['speedup']:.1f}x | {r['partial_s'] * 1e6:.0f} µs | {r['pure_partial_s'] * 1e6:.0f} µs | "
                     f"{f'{nft:.2f} s' if nft is not None else '-'} | {f'{legacy:.2f} s' if legacy is not None else '-'} |")
    e2e = report["end_to_end"]
    lines += ["", f"`netplane compile` on a {e2e['services']:,}-Service `kind: List` JSON file "
              f"({e2e['json_bytes'] / 1e6:.0f} MB), wall clock including the interpreter's start:", "",
              f"- Cython: {e2e['cython']['wall_s']:.2f} s ({e2e['cython']['timing']})",
              f"- pure: {e2e['pure']['wall_s']:.2f} s ({e2e['pure']['timing']})", ""]
    (out / f"{NAME}.md").write_text("\n".join(lines))


def plot(report: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    sizes = report["sizes"]
    for layout, style in zip(LAYOUTS, ("-", "--")):
        rows = [r for r in report["compile"] if r["layout"] == layout]
        left.plot(sizes, [r["full_s"] for r in rows], "o" + style, label=f"Cython, {layout}")
        left.plot(sizes, [r["pure_full_s"] for r in rows], "s" + style, label=f"pure, {layout}")
        for binary in ("iptables-restore", "iptables-legacy-restore"):
            points = [(a["services"], a[binary]) for a in report["apply"] if a["layout"] == layout and binary in a]
            if points:
                right.plot(*zip(*points), "o" + style, label=f"{binary}, {layout}")
    right.plot(sizes, [r["full_s"] for r in report["compile"] if r["layout"] == "compact"], "k:",
               label="Cython compile, compact")
    for ax, title in ((left, "full compile"), (right, "apply into the kernel")):
        ax.set(xscale="log", yscale="log", xlabel="services (10 endpoints each)", ylabel="seconds", title=title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{NAME}.png", dpi=110)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,30000", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--no-apply", dest="apply", action="store_false", help="skip the kernel loads (no root needed)")
    return p.parse_args()


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--inner":
        job, n, layout, *rest = sys.argv[2:]
        result = inner_compile(int(n), layout, int(rest[0])) if job == "compile" else inner_apply(int(n), layout, rest)
        print(json.dumps(result))
        return 0
    args = parse_args()
    if args.apply and os.geteuid() != 0:
        sys.exit("the apply measurements need root (or pass --no-apply)")
    report = measure(args)
    write(report, args.out)
    plot(report, args.out)
    print(f"wrote {args.out}/{NAME}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
