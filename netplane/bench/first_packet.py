"""The data path's first packet, for every proxy mode: what a new connection
pays to cross a node whose proxy holds a small or a large cluster.

One lab per mode (3 nodes, routed, 2 pods per node). node2-pod1 runs the
lab's echo server (it answers every TCP connection with one line and
closes). node1 and node3 each run `netplane proxy --mode MODE`, in the same
mode, on their OWN manifests directory: node1's holds a small cluster,
node3's a large one (N Services counting the measured one; the fillers
have 10 endpoints each, fake pod IPs, as in the programming benchmark).
The measured Service, zz-target (10.96.255.254:80 -> node2-pod1:8080),
sorts last and is in both. node2 runs no proxy.

Clients are node1-pod1 (its node holds the small cluster) and node3-pod1
(the large one); each hosts a worker process (`python -m
netplane.bench.first_packet worker`), started once and told what to do over
its stdin, so no interpreter start-up falls inside a block. A connection is
timed from connect() to the first byte of the server's answer (connect,
send a byte, first byte back; the socket made beforehand, SO_LINGER 0 so
the close is a reset and leaves no TIME_WAIT behind), and every answer must
come from node2-pod1. Four targets:

    vip-small     the cluster IP, from node1-pod1  (crosses node1: small cluster)
    vip-large     the cluster IP, from node3-pod1  (crosses node3: large cluster)
    direct-node1  node2-pod1's IP, from node1-pod1 (the floor on node1)
    direct-node3  node2-pod1's IP, from node3-pod1 (the floor on node3)

For each of R rounds, one block of C connections per target, the order
rotating by one target per round, so drift and warm-up hit every target
alike. Per target: the median over rounds of the per-round median, and the
spread (min..max of the per-round medians). Ratios: vip-large / vip-small
(cluster size; the two clients are symmetric, both one hop from node2), and
vip / direct on each client node; each ratio's spread is that of the
same-round ratios. Before any proxy starts, the two direct targets are
measured the same way ("before any proxy"): a direct connection also
crosses its node's service rules as a new connection, so the floor with
rules installed is itself a measurement.

Nothing here touches the host namespace; the lab is torn down, also on
failure, Ctrl-C or SIGTERM. Needs root. `benchmarks/proxy_first_packet.py`
is the command line.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from netplane.bench import results
from netplane.bench.machine import describe

NAME = "proxy_first_packet"
TARGET_IP, TARGET_PORT, POD_PORT = "10.96.255.254", 80, 8080
SERVER = "node2-pod1"
SMALL_NODE, LARGE_NODE = "node1", "node3"
CLIENT = {SMALL_NODE: "node1-pod1", LARGE_NODE: "node3-pod1"}
TARGETS = ("vip-small", "vip-large", "direct-node1", "direct-node3")
FLOOR_TARGETS = ("direct-node1", "direct-node3")
LIMITS = {"size": 1.05, "vip": 1.10}     # the nftables-mode issue's acceptance limits
WARMUP = 50                              # connections per target before round 1, discarded
SYNC_TIMEOUT = 900.0                     # s for a proxy's first sync


# -- the worker, inside a client pod ---------------------------------------------------

def worker() -> None:
    """Read jobs, one JSON line each: {"host", "port", "n", "expect", "wait"};
    answer each with {"us": [per-connection µs], "errors": {kind: count}}."""
    import socket
    import struct

    linger = struct.pack("ii", 1, 0)
    for line in sys.stdin:
        job = json.loads(line)
        address, expect = (job["host"], job["port"]), job["expect"].encode()
        if job.get("wait"):
            _wait_connectable(address, job["wait"])
        us, errors = [], {}
        for _ in range(job["n"]):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.settimeout(2.0)
            try:
                t0 = time.perf_counter()
                s.connect(address)
                s.send(b"x")
                data = s.recv(64)
                t1 = time.perf_counter()
            except OSError as err:
                kind = type(err).__name__
                errors[kind] = errors.get(kind, 0) + 1
                continue
            finally:
                s.close()
            if not data.startswith(expect):
                errors["wrong answer"] = errors.get("wrong answer", 0) + 1
                continue
            us.append((t1 - t0) * 1e6)
        print(json.dumps({"us": us, "errors": errors}), flush=True)


def _wait_connectable(address, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError as err:
            if time.monotonic() > deadline:
                raise SystemExit(f"{address[0]}:{address[1]} never answered within {timeout:g} s: {err}") from None
            time.sleep(0.05)


class Worker:
    """A worker process in a client pod, driven over its stdin and stdout."""

    def __init__(self, lab, pod: str) -> None:
        self.pod, self.err_path = pod, os.path.join(lab.dir, f"worker-{pod}.err")
        with open(self.err_path, "wb") as err:
            self.proc = lab.spawn(pod, [sys.executable, "-m", "netplane.bench.first_packet", "worker"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)

    def block(self, host: str, port: int, n: int, wait: float = 0.0) -> dict:
        self.proc.stdin.write(json.dumps({"host": host, "port": port, "n": n, "expect": SERVER,
                                          "wait": wait}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=5)
            raise RuntimeError(f"the worker in {self.pod} exited ({self.proc.returncode}): "
                               f"{Path(self.err_path).read_text(errors='replace').strip()[-2000:]}")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- statistics ---------------------------------------------------------------------------

def block_stats(result: dict) -> dict:
    us = sorted(result["us"])
    if not us:
        raise RuntimeError(f"a block had no successful connection: errors {result['errors']}")
    return {"median_us": statistics.median(us), "p10_us": us[int(len(us) * 0.1)], "p90_us": us[int(len(us) * 0.9)],
            "mean_us": statistics.fmean(us), "min_us": us[0], "n": len(us), "errors": result["errors"]}


def summarise(rounds: list[dict]) -> dict:
    """Over rounds: the median of the per-round medians, their spread, and the median p90."""
    medians = [r["median_us"] for r in rounds]
    return {"median_us": statistics.median(medians), "spread_us": [min(medians), max(medians)],
            "p90_us": statistics.median(r["p90_us"] for r in rounds),
            "errors": sum(sum(r["errors"].values()) for r in rounds), "rounds": rounds}


def ratio(targets: dict, a: str, b: str, limit: float) -> dict:
    """targets[a] / targets[b]: of the medians over rounds, and the spread of the same-round ratios."""
    paired = [x["median_us"] / y["median_us"] for x, y in zip(targets[a]["rounds"], targets[b]["rounds"])]
    value = targets[a]["median_us"] / targets[b]["median_us"]
    return {"of": [a, b], "value": value, "spread": [min(paired), max(paired)], "per_round": paired,
            "limit": limit, "ok": value <= limit}


def ratios(targets: dict) -> dict:
    return {"large_over_small": ratio(targets, "vip-large", "vip-small", LIMITS["size"]),
            "vip_over_direct_node1": ratio(targets, "vip-small", "direct-node1", LIMITS["vip"]),
            "vip_over_direct_node3": ratio(targets, "vip-large", "direct-node3", LIMITS["vip"])}


# -- manifests ------------------------------------------------------------------------------

def target_objects(server_ip: str) -> list[dict]:
    from netplane.proxy import build as b

    return [b.service("zz-target", TARGET_IP, [{"name": "http", "port": TARGET_PORT}]),
            b.endpoint_slice("zz-target", [b.endpoint(server_ip, SERVER.split("-")[0])],
                             [{"name": "http", "port": POD_PORT}])]


def write_cluster(directory: Path, fillers: list[dict], server_ip: str) -> None:
    """The fillers in one List file, the measured Service in its own (as the programming bench)."""
    from netplane.bench.programming import as_list, atomic_write_json

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / "services.json", as_list(fillers))
    atomic_write_json(directory / "zz-target.json", as_list(target_objects(server_ip)))


# -- one mode, one lab ----------------------------------------------------------------------

def _address(target: str, server_ip: str) -> tuple[str, str, int]:
    """(client pod, host, port) of a target."""
    if target == "vip-small":
        return CLIENT[SMALL_NODE], TARGET_IP, TARGET_PORT
    if target == "vip-large":
        return CLIENT[LARGE_NODE], TARGET_IP, TARGET_PORT
    return CLIENT[target.removeprefix("direct-")], server_ip, POD_PORT


def interleaved(workers: dict, targets: tuple[str, ...], server_ip: str, rounds: int, connections: int,
                say=print) -> dict:
    """R rounds of one block per target, the order rotating by one each round."""
    out = {t: [] for t in targets}
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for t in order:
            pod, host, port = _address(t, server_ip)
            stats = block_stats(workers[pod].block(host, port, connections))
            out[t].append({"round": r + 1, "position": order.index(t) + 1, **stats})
        say("    round %d: %s" % (r + 1, ", ".join(f"{t} {out[t][-1]['median_us']:.0f}" for t in targets)))
    return {t: summarise(v) for t, v in out.items()}


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _tail(path: str, n: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(none)"


def start_proxies(lab, mode: str, dirs: dict[str, Path], say=print) -> dict:
    """Start a proxy on each node on its own manifests; wait for each one's first sync."""
    from netplane import sandbox

    since = time.time()
    for node, directory in dirs.items():
        lab.start_proxy(node, source=("--manifests", str(directory)), mode=mode)
    took = {}
    for node in dirs:
        pid = lab.record.processes[f"proxy/{node}"]
        home = lab.node_dir(node)
        sandbox.wait_for(lambda node=node, pid=pid: lab.proxy_synced_since(node, since) or not _pid_alive(pid),
                         timeout=SYNC_TIMEOUT, interval=0.1, what=f"the proxy on {node} to sync")
        if not _pid_alive(pid):
            raise RuntimeError(f"the {mode} proxy on {node} exited:\n{_tail(home + '/proxy.out')}\n"
                               f"{_tail(home + '/proxy.log')}")
        took[node] = time.time() - since
        say(f"  proxy on {node} synced {took[node]:.1f} s after the start")
    return took


def kernel_objects(lab, node: str, mode: str) -> dict:
    """What the node's mode installed (counted, never timed)."""
    if mode == "iptables":
        text = lab.run(node, ["iptables-save", "-t", "nat"]).stdout
        return {"nat_rules": sum(1 for line in text.splitlines() if line.startswith("-A NP-")),
                "nat_chains": sum(1 for line in text.splitlines() if line.startswith(":NP-")),
                "NP-SERVICES_rules": sum(1 for line in text.splitlines() if line.startswith("-A NP-SERVICES "))}
    if mode == "nftables":
        done = lab.run(node, ["nft", "-j", "list", "ruleset"])
        try:
            objects = json.loads(done.stdout)["nftables"]
        except (ValueError, KeyError):
            return {"error": done.stderr.strip()[-500:]}
        ours = [o for o in objects if any(isinstance(v, dict) and v.get("table") == "netplane" for v in o.values())]
        return {"chains": sum(1 for o in ours if "chain" in o), "rules": sum(1 for o in ours if "rule" in o),
                "elements": sum(len(o.get("set", o.get("map", {})).get("elem", [])) for o in ours)}
    return {}


def _log_errors(lab, node: str) -> list[str]:
    try:
        text = Path(lab.node_dir(node), "proxy.log").read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if "level=error" in line][:10]


def measure_mode(mode: str, sizes: tuple[int, int], fillers: dict[int, list[dict]], rounds: int,
                 connections: int, say=print) -> dict:
    from netplane.lab import Lab

    lab = Lab(f"fp{mode}"[:20]).up(3, "routed", pods_per_node=2)   # a failed up removes what it made
    workers: dict = {}
    try:
        server_ip = next(ip for ip in lab.record.pods[SERVER].ips if ":" not in ip)
        lab.serve(SERVER)
        workers = {pod: Worker(lab, pod) for pod in CLIENT.values()}
        for pod in CLIENT.values():
            workers[pod].block(server_ip, POD_PORT, WARMUP, wait=10)
        say(f"  before any proxy: {rounds} rounds x {connections} connections, direct")
        floor = interleaved(workers, FLOOR_TARGETS, server_ip, rounds, connections, say)

        dirs = {SMALL_NODE: Path(lab.dir, "manifests-small"), LARGE_NODE: Path(lab.dir, "manifests-large")}
        for directory, n in zip(dirs.values(), sizes):
            write_cluster(directory, fillers[n], server_ip)
        first_sync = start_proxies(lab, mode, dirs, say)
        time.sleep(1.0)                                   # let the syncs' aftermath settle
        for t in TARGETS:                                 # the VIP answers (or the error says why not)
            pod, host, port = _address(t, server_ip)
            warm = workers[pod].block(host, port, WARMUP, wait=10)
            if len(warm["us"]) < WARMUP:
                raise RuntimeError(f"{mode}: warm-up to {t} ({host}:{port} from {pod}) failed: {warm['errors']}")
        say(f"  {rounds} rounds x {connections} connections x {len(TARGETS)} targets")
        targets = interleaved(workers, TARGETS, server_ip, rounds, connections, say)
        return {"mode": mode, "sizes": {SMALL_NODE: sizes[0], LARGE_NODE: sizes[1]}, "server_ip": server_ip,
                "first_sync_s": first_sync, "targets": targets, "before_proxy": floor, "ratios": ratios(targets),
                "kernel": {node: kernel_objects(lab, node, mode) for node in dirs},
                "log_errors": {node: _log_errors(lab, node) for node in dirs}}
    finally:
        for w in workers.values():
            w.stop()
        lab.down()


# -- the whole run -------------------------------------------------------------------------

def machine() -> dict:
    return describe(Path(__file__).resolve().parent.parent.parent, ("iptables", "nft"))


def run(modes: list[str], sizes: tuple[int, int], rounds: int, connections: int, say=print) -> dict:
    from netplane.bench.programming import filler_objects

    fillers = {n: filler_objects(n) for n in sorted(set(sizes))}
    report = {"benchmark": NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
              "params": {"modes": modes, "sizes": {SMALL_NODE: sizes[0], LARGE_NODE: sizes[1]}, "rounds": rounds,
                         "connections": connections, "warmup": WARMUP, "endpoints_per_service": 10,
                         "lab": "3 nodes, routed, 2 pods per node", "target": f"{TARGET_IP}:{TARGET_PORT}",
                         "limits": LIMITS},
              "results": []}
    for mode in modes:
        say(f"{mode}: lab up; {sizes[0]:,} Services on {SMALL_NODE}, {sizes[1]:,} on {LARGE_NODE}")
        report["results"].append(measure_mode(mode, sizes, fillers, rounds, connections, say))
    return report


# -- report ---------------------------------------------------------------------------------

LABEL = {"vip-small": "cluster IP from node1-pod1", "vip-large": "cluster IP from node3-pod1",
         "direct-node1": "pod IP from node1-pod1", "direct-node3": "pod IP from node3-pod1"}


def _cluster(r: dict, target: str) -> int:
    return r["sizes"][SMALL_NODE if target in ("vip-small", "direct-node1") else LARGE_NODE]


def table(report: dict) -> list[str]:
    lines = ["| mode | target | node's Services | median µs | spread µs (per-round medians) | p90 µs | "
             "before any proxy µs | errors |", "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        for t in TARGETS:
            s = r["targets"][t]
            before = r["before_proxy"].get(t)
            lines.append(f"| {r['mode']} | {t}: {LABEL[t]} | {_cluster(r, t):,} | {s['median_us']:.0f} | "
                         f"{s['spread_us'][0]:.0f}..{s['spread_us'][1]:.0f} | {s['p90_us']:.0f} | "
                         + (f"{before['median_us']:.0f} ({before['spread_us'][0]:.0f}..{before['spread_us'][1]:.0f})"
                            if before else "-") + f" | {s['errors']} |")
    return lines


def ratio_table(report: dict) -> list[str]:
    small, large = report["params"]["sizes"][SMALL_NODE], report["params"]["sizes"][LARGE_NODE]
    lines = [f"| mode | VIP {large:,} / VIP {small:,} (limit {LIMITS['size']}) | "
             f"VIP / direct on node1, {small:,} Services (limit {LIMITS['vip']}) | "
             f"VIP / direct on node3, {large:,} Services (limit {LIMITS['vip']}) |", "|---|---|---|---|"]
    for r in report["results"]:
        cells = []
        for key in ("large_over_small", "vip_over_direct_node1", "vip_over_direct_node3"):
            x = r["ratios"][key]
            cells.append(f"**{x['value']:.3f}** ({x['spread'][0]:.3f}..{x['spread'][1]:.3f}) "
                         f"{'ok' if x['ok'] else 'OVER'}")
        lines.append(f"| {r['mode']} | " + " | ".join(cells) + " |")
    return lines


def markdown(report: dict) -> str:
    m, p = report["machine"], report["params"]
    small, large = p["sizes"][SMALL_NODE], p["sizes"][LARGE_NODE]
    lines = ["# First packet through the node, by proxy mode", "",
             f"{report['when']}, {m['cpus']} CPUs, kernel {m['kernel']}, {m.get('iptables', '')}, "
             f"{m.get('nft', '')}; {m.get('tree', '')}.", "",
             *table(report), "", "Ratios (of the medians over rounds; in brackets the spread of the same-round "
             "ratios):", "", *ratio_table(report), "",
             "## Method", "",
             f"One lab per mode ({p['lab']}); the modes run one after the other in this one run. node2-pod1 "
             f"runs the lab's echo server. node1's proxy reads a cluster of {small:,} Services, node3's (same "
             f"mode) one of {large:,}; both counts include the measured Service zz-target ({p['target']} -> "
             f"node2-pod1:{POD_PORT}, sorting last); the others have {p['endpoints_per_service']} endpoints each "
             "(fake pod IPs). node2 runs no proxy. A connection is timed from connect() to the first byte back "
             "(connect, one byte sent, the server's line received; socket made beforehand, closed with "
             "SO_LINGER 0), from a worker process started once in each client pod; every answer must come from "
             f"node2-pod1. {p['rounds']} rounds; in each, one block of {p['connections']} connections per target, "
             "the order rotating by one target per round (after a discarded warm-up of "
             f"{p['warmup']} per target). Per target: the median over rounds of the per-round median, its spread "
             "(min..max of the per-round medians) and the median over rounds of the per-round p90. The two "
             "clients are symmetric (each one hop from node2), so VIP from node3 / VIP from node1 is the cost "
             "of the cluster's size; VIP / direct on a node is the cost of the Service on top of the "
             "route. A direct connection is a new connection too and crosses the same node's service rules "
             "(it just matches none of them); 'before any proxy' is the direct median measured the same way "
             "before the proxies started (no rules at all). Per-round numbers, the kernel objects each proxy "
             "installed and its first-sync time are in the JSON.", ""]
    for r in report["results"]:
        lines.append(f"- {r['mode']}: first sync {', '.join(f'{n} {s:.1f} s' for n, s in r['first_sync_s'].items())}; "
                     f"installed {json.dumps(r['kernel'])}")
        for node, errs in r.get("log_errors", {}).items():
            for e in errs:
                lines.append(f"  - {node} proxy log error: {e}")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], results):
        for i, t in enumerate(TARGETS):
            rounds = r["targets"][t]["rounds"]
            ax.plot([x["round"] for x in rounds], [x["median_us"] for x in rounds], "o-", color=f"C{i}",
                    label=f"{t} ({_cluster(r, t):,} Services)")
        for i, t in enumerate(TARGETS):
            before = r["before_proxy"].get(t)
            if before:
                ax.axhline(before["median_us"], color=f"C{i}", linestyle=":", linewidth=1)
        ax.set_title(f"{r['mode']} (dotted: direct, before any proxy)", fontsize=10)
        ax.set_xlabel("round"), ax.set_ylim(bottom=0)
        ax.set_xticks(range(1, report["params"]["rounds"] + 1))
        ax.legend(fontsize=8, loc="lower right")
    axes[0][0].set_ylabel("connect + first byte, µs (per-round median)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: dict, out: Path) -> dict[str, Path]:
    return results.write(out, NAME, report, markdown, plot)


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    worker()
