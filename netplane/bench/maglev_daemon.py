"""Maglev tables as a user meets them: the running eBPF-mode daemon, a
fresh process, from the manifests on disk to the tables in the kernel.

A node namespace of its own (programming.py's Node: the node IP on a veth
both of whose ends it holds; a cgroup and a bpffs of the run's own), and
N NodePort Services x E endpoints in a manifests file. For each path, the
compiled one (netplane._ext.maglev) and the pure one
(NETPLANE_NO_EXTENSIONS=1), in turn, `netplane proxy --mode ebpf` starts,
and its log says, for its full sync, how long computing the tables took
and how long the whole sync into the maps took. Then one Service's
endpoints change, and the partial sync's log line says how many tables it
computed (the goal: one). The kernel memory of the tables is read from
the kernel (bpftool: the inner maps' memlock). The runs alternate
(compiled, pure, compiled, ...) so drift hits both alike.

Needs root; nothing touches the host namespace, and everything is removed
also on failure. `python -m netplane.bench.maglev_daemon`.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netplane.bench import programming as pg
from netplane.bench import results
from netplane.bench.machine import describe

NAME = "maglev_daemon"
ROOT = Path(__file__).resolve().parents[2]
FULL = re.compile(r"IPv4 eBPF maps: full sync in (\d+) ms .*?(\d+) Maglev tables written in (\d+) ms, "
                  r"of which (\d+) ms computing tables")
PARTIAL = re.compile(r"IPv4 eBPF maps: (\d+) Maglev table\(s\) computed in ([\d.]+) ms")
GOALS = {"fast_s": 3.0, "ratio": 20.0}


def objects(services: int, endpoints: int) -> list[dict]:
    """N NodePort Services (30000 + i), E endpoints each on nodes 1..10."""
    from netplane.proxy import build as b
    out = []
    for i in range(services):
        name = f"np{i:05d}"
        eps = [b.endpoint(*pg.filler_endpoint(i * endpoints + k)) for k in range(endpoints)]
        out += [b.service(name, pg.filler_ip(i), [{"name": "http", "port": 80, "nodePort": 30000 + i}],
                          type="NodePort"),
                b.endpoint_slice(name, eps, [{"name": "http", "port": 8080}])]
    return out


def changed(services: int, endpoints: int) -> list[dict]:
    """The same, but the first Service loses an endpoint."""
    out = objects(services, endpoints)
    out[1]["endpoints"] = out[1]["endpoints"][:-1]
    return out


def table_memory(bpftool: str = "bpftool") -> int:
    """Bytes the kernel charges for the Maglev tables (inner maps are named np_lut)."""
    done = subprocess.run([bpftool, "-j", "map", "show"], capture_output=True, text=True, check=True)
    return sum(m.get("bytes_memlock", 0) for m in json.loads(done.stdout) if m.get("name") == "np_lut")


def one_run(path: str, services: int, endpoints: int, work: Path, timeout: float) -> dict:
    from netplane.sandbox import Sandbox

    manifests = work / f"manifests-{path}"
    manifests.mkdir()
    pg.atomic_write_json(manifests / "services.json", pg.as_list(objects(services, endpoints)))
    log = work / f"daemon-{path}.log"
    env = pg._clean_env()
    if path == "pure":
        env["NETPLANE_NO_EXTENSIONS"] = "1"
    mode = pg.Mode("ebpf")
    env_dir = work / f"env-{path}"          # the cgroup's name comes from it: unique per run
    env_dir.mkdir()
    netplane = str(Path(sys.executable).with_name("netplane"))
    with pg.node_environment(mode, env_dir) as (mode, preexec), Sandbox() as sandbox:
        netns = pg.Node(sandbox, pg.Params(netplane=netplane), preexec).netns
        argv = pg.daemon_argv(netplane, mode, manifests, log)
        started = time.monotonic()
        daemon = sandbox.spawn(netns, argv, env=env, preexec_fn=preexec, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            full = _wait(log, FULL, daemon, started + timeout)
            memory = table_memory()
            pg.atomic_write_json(manifests / "services.json", pg.as_list(changed(services, endpoints)))
            partial = _wait(log, PARTIAL, daemon, time.monotonic() + 60)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            sandbox.run(netns, argv[:2] + ["--cleanup", "--mode", "ebpf", *mode.flags])
    sync_ms, tables, _, compute_ms = (int(x) for x in full.groups())
    return {"path": path, "full_sync_s": sync_ms / 1000, "tables": tables, "compute_s": compute_ms / 1000,
            "changed_tables": int(partial.group(1)), "changed_compute_ms": float(partial.group(2)),
            "memory_bytes": memory}


def _wait(log: Path, pattern: re.Pattern, daemon, deadline: float) -> re.Match:
    while time.monotonic() < deadline:
        found = pattern.search(log.read_text()) if log.exists() else None
        if found:
            return found
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited ({daemon.returncode}): {log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"no line like {pattern.pattern!r} in {log}")


def summarize(runs: list[dict]) -> dict:
    by = {p: [r for r in runs if r["path"] == p] for p in ("compiled", "pure")}
    med = {p: {k: statistics.median(r[k] for r in rs) for k in ("full_sync_s", "compute_s")} for p, rs in by.items()}
    return {"compiled": med["compiled"], "pure": med["pure"],
            "ratio": med["pure"]["compute_s"] / med["compiled"]["compute_s"],
            "changed_tables": sorted({r["changed_tables"] for r in runs}),
            "memory_bytes": runs[0]["memory_bytes"]}


def markdown(report: dict) -> str:
    s, a = report["summary"], report["args"]
    m = report["machine"]
    lines = ["# Maglev tables through the running eBPF-mode daemon\n",
             f"{report['when']}, {m['cpus']} CPUs, kernel {m['kernel']}; {m.get('tree', '')}\n",
             f"{a['services']:,} NodePort Services x {a['endpoints']} endpoints, M = 16381; "
             f"{a['rounds']} round(s) per path, alternating.\n",
             "| path | tables computed (median s) | full sync into the maps (median s) |", "|---|---|---|"]
    for path in ("compiled", "pure"):
        lines.append(f"| {path} | {s[path]['compute_s']:.2f} | {s[path]['full_sync_s']:.2f} |")
    lines += ["", f"pure / compiled, computing the tables: **{s['ratio']:.1f}x** (goal ≥ {GOALS['ratio']:.0f}x); "
              f"compiled: **{s['compiled']['compute_s']:.2f} s** (goal ≤ {GOALS['fast_s']:.0f} s).",
              f"One Service's endpoints changed: its partial sync computed {s['changed_tables']} table(s).",
              f"Kernel memory of the tables (bpftool memlock of the inner maps): "
              f"{s['memory_bytes'] / 2 ** 20:.0f} MiB.", "", "## Runs", "",
              "| path | full sync s | tables | computing s | changed: tables | changed: ms |", "|---|---|---|---|---|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['path']} | {r['full_sync_s']:.2f} | {r['tables']} | {r['compute_s']:.2f} | "
                     f"{r['changed_tables']} | {r['changed_compute_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = report["runs"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, p in enumerate(("compiled", "pure")):
        values = [r["compute_s"] for r in runs if r["path"] == p]
        ax.bar(i, statistics.median(values), yerr=[[statistics.median(values) - min(values)],
                                                     [max(values) - statistics.median(values)]], capsize=6)
    ax.set_xticks([0, 1], ["compiled (Cython)", "pure Python"])
    ax.set_ylabel("s to compute the tables")
    ax.set_title(f"{report['args']['services']:,} Maglev tables (M=16381) in the daemon's full sync")
    ax.axhline(GOALS["fast_s"], ls="--", c="grey", lw=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=10_000)
    p.add_argument("--endpoints", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2, help="runs per path, alternating")
    p.add_argument("--timeout", type=float, default=900.0, help="s for a full sync")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("maglev_daemon: needs root (namespaces, cgroups, BPF)", file=sys.stderr)
        return 2
    runs = []
    with tempfile.TemporaryDirectory(prefix="np-maglev-") as tmp:
        for i in range(a.rounds):
            for path in ("compiled", "pure"):
                work = Path(tmp) / f"{path}-{i}"
                work.mkdir()
                runs.append(one_run(path, a.services, a.endpoints, work, a.timeout))
                print(json.dumps(runs[-1]), flush=True)
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": describe(ROOT, ()), "args": vars(a) | {"out": str(a.out)}, "runs": runs, "summary": summarize(runs)}
    paths = results.write(a.out, NAME, report, markdown, plot)
    print(markdown(report))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
