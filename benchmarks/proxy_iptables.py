"""iptables mode: sync cost and data-path cost, as the number of Services grows.

A 2-node lab (routed mode) with one pod per node; node2-pod1 runs the echo
server. For each size N, N Services with 10 endpoints each are written (the
measured Service, zz-target, sorts last, so its rule is the last one the
nat table's NP-SERVICES chain reaches; its one endpoint is the real pod),
and on node1:

- sync cost, through the real IptablesBackend in node1's namespace:
  a full sync (compile, then iptables-restore, timed apart), a partial
  sync after one endpoint of one Service changed (same split), and a sync
  with nothing changed;
- data-path cost, from node1-pod1 (client) to node2-pod1 (server): the
  median and p90 of connect + first byte over M connections, straight to
  the pod IP (the floor) and through the Service's cluster IP, interleaved
  in blocks of 25 so drift hits both alike. The ratio is service/direct.

Writes proxy_iptables.{json,md,png} to benchmarks/results/ (or --out).
Needs root; the lab is torn down, also on failure or Ctrl-C.

Usage: python benchmarks/proxy_iptables.py [--sizes 100,500,1000,2000] [--connections 400] [--out DIR]
"""
import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

NAME = "proxy_iptables"
ENDPOINTS = 10
TARGET_IP = "10.96.255.254"


# -- inner jobs (run inside a lab namespace by the outer script) ----------------

def objects(n: int, server_ip: str, server_node: str, shift: int = 0) -> list[dict]:
    from netplane.proxy import build as b

    out = []
    for i in range(n - 1):
        name = f"svc{i:05d}"
        ip = f"10.96.{(i + 1) // 250}.{(i + 1) % 250 + 1}"
        eps = [f"10.244.{100 + (i * ENDPOINTS + k) // 250 % 100}.{(i * ENDPOINTS + k) % 250 + 2}"
               for k in range(ENDPOINTS)]
        if i == 0 and shift:
            eps[0] = f"10.244.99.{shift % 250 + 2}"          # the one endpoint change
        out += [b.service(name, ip, [{"name": "http", "port": 80}]),
                b.endpoint_slice(name, [b.endpoint(e, "node2") for e in eps], [{"name": "http", "port": 8080}])]
    out += [b.service("zz-target", TARGET_IP, [{"name": "http", "port": 80}]),
            b.endpoint_slice("zz-target", [b.endpoint(server_ip, server_node)], [{"name": "http", "port": 8080}])]
    return out


def inner_sync(n: int, server_ip: str, server_node: str) -> dict:
    import netaddr

    from netplane.proxy.backend import Settings
    from netplane.proxy.iptables.backend import IptablesBackend, context
    from netplane.proxy.iptables.compile import compile_family
    from netplane.proxy.state import changed, snapshot
    from netplane.proxy.policy import Node, family_policies

    settings = Settings(Node("node1"), (netaddr.IPAddress("192.168.200.11"),),
                        (netaddr.IPNetwork("10.244.0.0/16"),))
    backend = IptablesBackend(settings, clean_conntrack=False)
    runner = backend.runners[4]
    result = {"services": n}

    def timed_sync(snap, names, previous):
        t0 = time.perf_counter()
        views = {4: family_policies(snap.ports, 4, settings.node)}
        t1 = time.perf_counter()
        plan = compile_family(views[4], context(settings, 4), previous=previous, changed=names,
                              installed={t: runner.chains(t) for t in ("filter", "nat")} if names is None else None)
        t2 = time.perf_counter()
        runner.restore(plan.parts)
        t3 = time.perf_counter()
        if names is None:
            runner.ensure_jumps()
        t4 = time.perf_counter()
        backend.compiled[4] = plan
        return plan, {"views_s": t1 - t0, "compile_s": t2 - t1, "apply_s": t3 - t2, "jumps_s": t4 - t3,
                      "text_bytes": len(plan.text), "rules": plan.text.count("\n-A ")}

    first = snapshot(*_split(objects(n, server_ip, server_node)))
    plan, result["full"] = timed_sync(first, None, None)
    second = snapshot(*_split(objects(n, server_ip, server_node, shift=1)))
    plan, result["partial"] = timed_sync(second, changed(first.ports, second.ports), plan)
    t0 = time.perf_counter()
    backend.sync({4: family_policies(second.ports, 4, settings.node)}, set())   # nothing changed: canary check only
    result["noop_s"] = time.perf_counter() - t0
    return result


def _split(objs):
    return [o for o in objs if o["kind"] == "Service"], [o for o in objs if o["kind"] == "EndpointSlice"]


def inner_latency(targets: list[str], connections: int, block: int = 25) -> dict:
    import socket

    samples = {t: [] for t in targets}
    deadline = time.monotonic() + 10                  # the server may still be starting
    for target in targets:
        host, port = target.rsplit(":", 1)
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    for _ in range(connections // block):
        for target in targets:
            host, port = target.rsplit(":", 1)
            for _ in range(block):
                t0 = time.perf_counter()
                with socket.create_connection((host, int(port)), timeout=2) as s:
                    s.recv(64)
                samples[target].append(time.perf_counter() - t0)
    return {t: {"median_us": statistics.median(v) * 1e6, "p90_us": sorted(v)[int(len(v) * 0.9)] * 1e6,
                "n": len(v)} for t, v in samples.items()}


# -- outer ------------------------------------------------------------------------

def run_inner(lab, where: str, *args: str) -> dict:
    done = lab.run(where, [sys.executable, __file__, "--inner", *args])
    if done.returncode:
        raise RuntimeError(f"inner job in {where} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def measure(args) -> list[dict]:
    from netplane.lab import Lab
    from netplane.lab import services

    lab = Lab("bench").up(2, "routed", pods_per_node=1)
    rows = []
    try:
        server, client = "node2-pod1", "node1-pod1"
        server_ip = lab.record.pods[server].ips[0]
        lab.serve(server)
        lab.run("node1", ["ip", "route", "replace", "10.96.0.0/16", "dev", "eth0"], check=True)
        floor = run_inner(lab, client, "latency", str(args.connections), f"{server_ip}:8080")[f"{server_ip}:8080"]
        print(f"no rules at all: direct median {floor['median_us']:.0f} µs", flush=True)
        for n in args.sizes:
            print(f"{n} services: syncing", flush=True)
            row = run_inner(lab, "node1", "sync", str(n), server_ip, "node2")
            print(f"{n} services: measuring connections", flush=True)
            lat = run_inner(lab, client, "latency", str(args.connections), f"{server_ip}:8080",
                            f"{TARGET_IP}:80")
            row["direct"], row["service"] = lat[f"{server_ip}:8080"], lat[f"{TARGET_IP}:80"]
            row["ratio"] = row["service"]["median_us"] / row["direct"]["median_us"]
            row["floor"], row["ratio_to_floor"] = floor, row["service"]["median_us"] / floor["median_us"]
            rows.append(row)
            print("  " + _row(row), flush=True)
        run_inner(lab, "node1", "cleanup")
        assert "NP-" not in services.rules(lab, "node1")
    finally:
        lab.down()
    return rows


def _row(r: dict) -> str:
    f, p = r["full"], r["partial"]
    return (f"| {r['services']} | {f['rules']} | {f['text_bytes'] / 1e6:.1f} | {f['compile_s'] * 1e3:.0f} | "
            f"{f['apply_s'] * 1e3:.0f} | {p['compile_s'] * 1e3:.1f} | {p['apply_s'] * 1e3:.1f} | "
            f"{r['noop_s'] * 1e3:.1f} | {r['direct']['median_us']:.0f} | {r['service']['median_us']:.0f} | "
            f"{r['ratio']:.2f} | {r['floor']['median_us']:.0f} | {r['ratio_to_floor']:.2f} |")


HEADER = ["| services | rules | text MB | full compile ms | full apply ms | partial compile ms | partial apply ms "
          "| no-op sync ms | direct µs (median) | via service µs (median) | ratio | no rules µs | service / no rules |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = ["# iptables mode: sync and data-path cost by number of Services", "",
             f"{report['when']}, {m['cpus']} CPUs, kernel {m['kernel']}, {m['iptables']}.", "",
             *HEADER, *[_row(r) for r in report["rows"]], "",
             f"Each Service has {ENDPOINTS} endpoints; the measured one sorts last. Full = every chain written "
             "(plus reading the NP- chains back with iptables-save); partial = one endpoint of one Service "
             "changed: only that Service's chains are in the transaction; views (categorisation) time is "
             "in the JSON. No-op = a sync with nothing changed (the canary check). Latency: connect + first "
             f"byte from node1-pod1 to node2-pod1, {report['params']['connections']} connections per path, "
             "interleaved in blocks of 25; ratio = service median / direct median. Direct connections also "
             "cross node1's nat PREROUTING (NP-SERVICES) as new connections, so the rules cost both paths; "
             "'no rules' is the direct median measured once before any rule was installed.", ""]
    (out / f"{NAME}.md").write_text("\n".join(lines))
    print("\n".join(HEADER + [_row(r) for r in report["rows"]]))
    plot(report, out)


def plot(report: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    sizes = [r["services"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("full", "full sync"), ("partial", "partial sync (1 endpoint)")):
        a.plot(sizes, [r[key]["compile_s"] * 1e3 for r in rows], "o--", label=f"{label}: compile")
        a.plot(sizes, [r[key]["apply_s"] * 1e3 for r in rows], "o-", label=f"{label}: iptables-restore")
    a.set_xscale("log"), a.set_yscale("log")
    a.set_xlabel("services (10 endpoints each)"), a.set_ylabel("ms"), a.legend(fontsize=8)
    a.set_title("sync cost", fontsize=10)
    b.plot(sizes, [r["direct"]["median_us"] for r in rows], "o-", label="direct to the pod IP")
    b.plot(sizes, [r["service"]["median_us"] for r in rows], "o-", label="through the cluster IP (last rule)")
    b.axhline(rows[0]["floor"]["median_us"], color="grey", linestyle=":", label="direct, no rules installed")
    b.set_xscale("log"), b.set_xlabel("services"), b.set_ylabel("connect + first byte, µs (median)")
    b.set_ylim(bottom=0), b.legend(fontsize=8), b.set_title("data path", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / f"{NAME}.png", dpi=120)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,500,1000,2000", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--connections", type=int, default=400)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return p.parse_args()


def inner(argv: list[str]) -> None:
    job = argv[0]
    if job == "sync":
        print(json.dumps(inner_sync(int(argv[1]), argv[2], argv[3])))
    elif job == "latency":
        print(json.dumps(inner_latency(argv[2:], int(argv[1]))))
    elif job == "cleanup":
        import netaddr

        from netplane.proxy.backend import Settings
        from netplane.proxy.iptables.backend import IptablesBackend
        from netplane.proxy.policy import Node
        settings = Settings(Node("node1"), (netaddr.IPAddress("192.168.200.11"),))
        print(json.dumps(IptablesBackend(settings).cleanup()))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        inner(sys.argv[2:])
        return 0
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(128 + s)))
    version = subprocess.run(["iptables", "-V"], capture_output=True, text=True).stdout.strip()
    report = {"benchmark": NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": {"kernel": platform.release(), "cpus": os.cpu_count(), "iptables": version},
              "params": {"sizes": args.sizes, "connections": args.connections}, "rows": measure(args)}
    write(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
