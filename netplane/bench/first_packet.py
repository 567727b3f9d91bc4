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

With the client targets (`benchmarks/proxy_nodeport.py`: NODEPORT_TARGETS,
written as proxy_nodeport.*), the lab also gets its external client
namespace (lab.add_client(): 192.168.200.2 on the underlay segment, beside
the nodes), a third worker runs there, and three more targets join the
rounds:

    nodeport-small  node1's IP : the nodePort   (crosses node1: small cluster)
    nodeport-large  node3's IP : the nodePort   (crosses node3: large cluster)
    direct-client   node2-pod1's IP             (the floor from outside: a
                    route to node2's pod CIDR via node2, in the client only)

The measured Service is then type NodePort (externalTrafficPolicy
Cluster), its one endpoint on node2, so node1 and node3 translate the
client's connection both ways (DNAT to the pod, SNAT to the node's own
address): every answer must show node2-pod1 and, as the address it saw,
the node's (through a node port) or the client's (direct). Every
NODEPORT_EVERY-th filler is a NodePort too (at most 2,500 of them, ports
30000 up), so the node-port lookup has a cluster's worth of ports around
it. Ratios added: nodeport-large / nodeport-small, and each against
direct-client; across modes, the eBPF mode against nftables per target
(of the per-mode medians: the modes run one after the other, in labs of
their own, while the targets within a mode are interleaved).

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
and `benchmarks/proxy_nodeport.py` are the command lines (main() below).
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from netplane.bench import results
from netplane.bench.procs import end_by_stdin
from netplane.bench.machine import describe, loadavg
from netplane.lab import topology

NAME, NODEPORT_NAME, AB_NAME = "proxy_first_packet", "proxy_nodeport", "proxy_nodeport_ab"
TARGET_IP, TARGET_PORT, POD_PORT = "10.96.255.254", 80, 8080
NODE_PORT = 32600                        # the target's nodePort (above every filler's)
NODEPORT_EVERY, NODEPORT_FIRST, NODEPORT_MAX = 4, 30000, 2500   # fillers that are NodePorts too
SERVER, SERVER_NODE = "node2-pod1", "node2"
SMALL_NODE, LARGE_NODE = "node1", "node3"
CLIENT = {SMALL_NODE: "node1-pod1", LARGE_NODE: "node3-pod1"}
EXTERNAL = "client"                      # the lab's client namespace, outside the cluster
EXTERNAL_IP = topology.CLIENT_ADDRESSES[0].split("/")[0]        # its (first) source address
TARGETS = ("vip-small", "vip-large", "direct-node1", "direct-node3")
CLIENT_TARGETS = ("nodeport-small", "nodeport-large", "direct-client")
NODEPORT_TARGETS = TARGETS + CLIENT_TARGETS
FLOOR_TARGETS = ("direct-node1", "direct-node3")
# the A/B variant (--ab A,B): both proxies read the same (large) cluster, each node in its own mode,
# so the targets are named after the node they cross, not the cluster size
AB_TARGETS = ("nodeport-node1", "nodeport-node3", "direct-client", "vip-node1", "vip-node3")
# the nftables-mode issue's limits (size, vip), the eBPF issue's (nodeport: 10k / 100 through a
# node port from outside; modes: the eBPF mode / nftables through that node port at the large size)
LIMITS = {"size": 1.05, "vip": 1.10, "nodeport": 1.05, "modes": 1.05}
WARMUP = 50                              # connections per target before round 1, discarded
SYNC_TIMEOUT = 900.0                     # s for a proxy's first sync
SYNC_FAILURES = 3                        # failed syncs before it that end the wait (the daemon would retry forever)


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
    """A worker process in a client pod (or the client namespace), driven over its stdin and stdout."""

    def __init__(self, lab, pod: str) -> None:
        self.pod, self.err_path = pod, os.path.join(lab.dir, f"worker-{pod}.err")
        with open(self.err_path, "wb") as err:
            self.proc = lab.spawn(pod, [sys.executable, "-m", "netplane.bench.first_packet", "worker"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)

    def block(self, host: str, port: int, n: int, wait: float = 0.0, expect: str = SERVER) -> dict:
        self.proc.stdin.write(json.dumps({"host": host, "port": port, "n": n, "expect": expect,
                                          "wait": wait}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=5)
            raise RuntimeError(f"the worker in {self.pod} exited ({self.proc.returncode}): "
                               f"{Path(self.err_path).read_text(errors='replace').strip()[-2000:]}")
        return json.loads(line)

    def stop(self) -> None:
        end_by_stdin(self.proc)


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


def ratio(targets: dict, a: str, b: str, limit: float | None = None) -> dict:
    """targets[a] / targets[b]: of the medians over rounds, and the spread of the same-round ratios
    (ok: None without a limit)."""
    paired = [x["median_us"] / y["median_us"] for x, y in zip(targets[a]["rounds"], targets[b]["rounds"])]
    value = targets[a]["median_us"] / targets[b]["median_us"]
    return {"of": [a, b], "value": value, "spread": [min(paired), max(paired)], "per_round": paired,
            "limit": limit, "ok": None if limit is None else value <= limit}


# key, numerator, denominator, the LIMITS key (None: no limit), column heading ({small}, {large}: sizes)
RATIOS = (
    ("large_over_small", "vip-large", "vip-small", "size", "VIP {large} / VIP {small}"),
    ("vip_over_direct_node1", "vip-small", "direct-node1", "vip", "VIP / direct on node1, {small} Services"),
    ("vip_over_direct_node3", "vip-large", "direct-node3", "vip", "VIP / direct on node3, {large} Services"),
    ("nodeport_large_over_small", "nodeport-large", "nodeport-small", "nodeport",
     "NodePort {large} / NodePort {small}, from outside"),
    ("nodeport_small_over_direct", "nodeport-small", "direct-client", None,
     "NodePort on node1 ({small}) / direct, from outside"),
    ("nodeport_large_over_direct", "nodeport-large", "direct-client", None,
     "NodePort on node3 ({large}) / direct, from outside"),
)


def ratios(targets: dict) -> dict:
    """Every ratio of RATIOS whose two targets were measured."""
    return {key: ratio(targets, a, b, LIMITS[limit] if limit else None)
            for key, a, b, limit, _ in RATIOS if a in targets and b in targets}


ACROSS = ("nodeport-small", "nodeport-large", "vip-small", "vip-large", "direct-client")


def across_modes(results: list[dict], a: str = "ebpf", b: str = "nftables") -> list[dict]:
    """Mode a against mode b, target by target: the ratio of the two modes' medians over rounds. The
    modes ran one after the other (each in its own lab), so no round pairs with another: the spread
    is the widest the two spreads allow (a's lowest over b's highest .. a's highest over b's lowest).
    The limit applies to the node port on the large cluster; direct-client crosses no proxy at all,
    so its ratio is what the two labs differ by with no mode in the path, and `over_floor` is the
    ratio with each mode's target first divided by its own lab's direct-client (the labs' difference
    taken out; None without that target)."""
    by = {r["mode"]: r for r in results}
    if a not in by or b not in by:
        return []
    out = []
    for t in ACROSS:
        x, y = by[a]["targets"].get(t), by[b]["targets"].get(t)
        if not x or not y:
            continue
        value = x["median_us"] / y["median_us"]
        fx, fy = by[a]["targets"].get("direct-client"), by[b]["targets"].get("direct-client")
        limit = LIMITS["modes"] if t == "nodeport-large" else None
        out.append({"target": t, "of": [a, b], "services": cluster_size(by[a], t), "value": value,
                    "spread": [x["spread_us"][0] / y["spread_us"][1], x["spread_us"][1] / y["spread_us"][0]],
                    "over_floor": value * fy["median_us"] / fx["median_us"] if fx and fy else None,
                    "limit": limit, "ok": None if limit is None else value <= limit})
    return out


# -- manifests ------------------------------------------------------------------------------

def target_objects(server_ip: str, node_port: int | None = None, name: str = "zz-target",
                   cluster_ip: str = TARGET_IP, port: int = TARGET_PORT, pod_port: int = POD_PORT) -> list[dict]:
    """The measured Service and its slice, one endpoint (server_ip, on SERVER's node); with a
    node_port, type NodePort under externalTrafficPolicy Cluster."""
    from netplane.proxy import build as b

    ports = [{"name": "tcp", "port": port, "protocol": "TCP"}]
    spec = {}
    if node_port:
        ports[0]["nodePort"] = node_port
        spec = {"type": "NodePort", "externalTrafficPolicy": "Cluster"}
    return [b.service(name, cluster_ip, ports, **spec),
            b.endpoint_slice(name, [b.endpoint(server_ip, SERVER_NODE)],
                             [{"name": "tcp", "port": pod_port, "protocol": "TCP"}])]


def with_node_ports(fillers: list[dict], every: int = NODEPORT_EVERY) -> list[dict]:
    """The fillers, every `every`-th Service (from the first) made a NodePort (Cluster policy) on
    ports NODEPORT_FIRST up, at most NODEPORT_MAX of them; the objects given are not changed."""
    out, i = [], 0
    for obj in fillers:
        if obj["kind"] == "Service":
            if i % every == 0 and i // every < NODEPORT_MAX:
                ports = [dict(obj["spec"]["ports"][0], nodePort=NODEPORT_FIRST + i // every),
                         *obj["spec"]["ports"][1:]]
                obj = {**obj, "spec": {**obj["spec"], "type": "NodePort", "externalTrafficPolicy": "Cluster",
                                       "ports": ports}}
            i += 1
        out.append(obj)
    return out


def write_cluster(directory: Path, fillers: list[dict], target: list[dict]) -> None:
    """The fillers in one List file, the measured Service (`target`: its objects) in its own, named
    after it (as the programming bench)."""
    from netplane.bench.programming import as_list, atomic_write_json

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / "services.json", as_list(fillers))
    atomic_write_json(directory / f"{target[0]['metadata']['name']}.json", as_list(target))


# -- one mode, one lab ----------------------------------------------------------------------

def node_ip(node: str) -> str:
    """A lab node's IPv4 address on the underlay (node1: 192.168.200.11)."""
    return next(ip for ip in topology.node_addressing(topology.node_number(node)).internal_ips if ":" not in ip)


def address(target: str, server_ip: str) -> tuple[str, str, int, str]:
    """(where the client runs, host, port, how the answer must start) of a target. Through a node
    port the server sees the node (SNAT: its endpoint is on another node); direct from outside, the
    client; from a pod, only the server's name is checked."""
    target = {"vip-node1": "vip-small", "vip-node3": "vip-large",
              "nodeport-node1": "nodeport-small", "nodeport-node3": "nodeport-large"}.get(target, target)
    if target in ("vip-small", "vip-large"):
        return CLIENT[SMALL_NODE if target == "vip-small" else LARGE_NODE], TARGET_IP, TARGET_PORT, SERVER
    if target in ("nodeport-small", "nodeport-large"):
        ip = node_ip(SMALL_NODE if target == "nodeport-small" else LARGE_NODE)
        return EXTERNAL, ip, NODE_PORT, f"{SERVER} {ip}\n"
    if target == "direct-client":
        return EXTERNAL, server_ip, POD_PORT, f"{SERVER} {EXTERNAL_IP}\n"
    return CLIENT[target.removeprefix("direct-")], server_ip, POD_PORT, SERVER


def client_route(lab, node: str) -> None:
    """In the client namespace only: a route to the node's IPv4 pod CIDR via its underlay address."""
    cidr = next(c for c in lab.record.nodes[node].pod_cidrs if ":" not in c)
    lab.run(EXTERNAL, ["ip", "route", "replace", cidr, "via", node_ip(node)], check=True)


def interleaved(workers: dict, targets: tuple[str, ...], server_ip: str, rounds: int, connections: int,
                say=print) -> dict:
    """R rounds of one block per target, the order rotating by one each round."""
    out = {t: [] for t in targets}
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for t in order:
            where, host, port, expect = address(t, server_ip)
            stats = block_stats(workers[where].block(host, port, connections, expect=expect))
            out[t].append({"round": r + 1, "position": order.index(t) + 1, **stats})
        say("    round %d: %s" % (r + 1, ", ".join(f"{t} {out[t][-1]['median_us']:.0f}" for t in targets)))
    return {t: summarise(v) for t, v in out.items()}


def failed_syncs(log_path: str) -> list[str]:
    """The daemon's failed syncs in its log (logfmt), each as its error text, tracebacks unescaped."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        if "level=error" in line and "sync failed" in line:
            error = line.split(' error="', 1)[-1].rstrip('"')
            out.append(error.replace("\\n", "\n").replace('\\"', '"'))
    return out


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


def start_proxies(lab, mode: str | dict[str, str], dirs: dict[str, Path], say=print) -> dict:
    """Start a proxy on each node on its own manifests, in `mode` (or mode[node]: a mode per node);
    wait for each one's first sync."""
    from netplane import sandbox

    node_modes = mode if isinstance(mode, dict) else dict.fromkeys(dirs, mode)
    since = time.time()
    for node, directory in dirs.items():
        lab.start_proxy(node, source=("--manifests", str(directory)), mode=node_modes[node])
    took = {}
    for node in dirs:
        mode = node_modes[node]
        pid = lab.record.processes[f"proxy/{node}"]
        home = lab.node_dir(node)
        sandbox.wait_for(lambda node=node, pid=pid, home=home: lab.proxy_synced_since(node, since) or not _pid_alive(pid)
                         or len(failed_syncs(home + "/proxy.log")) >= SYNC_FAILURES,
                         timeout=SYNC_TIMEOUT, interval=0.1, what=f"the proxy on {node} to sync")
        if not _pid_alive(pid):
            raise RuntimeError(f"the {mode} proxy on {node} exited:\n{_tail(home + '/proxy.out')}\n"
                               f"{_tail(home + '/proxy.log')}")
        failed = failed_syncs(home + "/proxy.log")
        if len(failed) >= SYNC_FAILURES and not lab.proxy_synced_since(node, since):
            raise RuntimeError(f"the {mode} proxy on {node} failed {len(failed)} syncs before a first one went through; the last:\n"
                               f"{failed[-1][-3000:]}")
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


def warm_up(workers: dict, targets: tuple[str, ...], server_ip: str, what: str) -> None:
    """WARMUP connections per target, discarded; each must answer as it should (or the error says why)."""
    for t in targets:
        where, host, port, expect = address(t, server_ip)
        warm = workers[where].block(host, port, WARMUP, wait=10, expect=expect)
        if len(warm["us"]) < WARMUP:
            raise RuntimeError(f"{what}: warm-up to {t} ({host}:{port} from {where}) failed: {warm['errors']}")


def measure_mode(mode: str | dict[str, str], sizes: tuple[int, int], fillers: dict[int, list[dict]], rounds: int,
                 connections: int, say=print, targets: tuple[str, ...] = TARGETS, lab_name: str | None = None) -> dict:
    """One lab: node1's proxy on sizes[0] Services, node3's on sizes[1], both in `mode` (or, a dict,
    each node in its own: the A/B variant)."""
    from netplane.lab import Lab

    outside = any(t in CLIENT_TARGETS for t in targets)
    node_modes = mode if isinstance(mode, dict) else dict.fromkeys((SMALL_NODE, LARGE_NODE), mode)
    load = [loadavg()]
    lab = Lab(lab_name or f"{'np' if outside else 'fp'}{mode}"[:20]).up(3, "routed", pods_per_node=2)   # a failed up cleans
    workers: dict = {}
    try:
        server_ip = next(ip for ip in lab.record.pods[SERVER].ips if ":" not in ip)
        lab.serve(SERVER)
        if outside:
            lab.add_client()
            client_route(lab, SERVER_NODE)
        for where in dict.fromkeys(address(t, server_ip)[0] for t in targets):
            workers[where] = Worker(lab, where)
        floor_targets = tuple(t for t in targets if t.startswith("direct-"))
        warm_up(workers, floor_targets, server_ip, "before any proxy")
        say(f"  before any proxy: {rounds} rounds x {connections} connections, direct")
        floor = interleaved(workers, floor_targets, server_ip, rounds, connections, say)

        dirs = {SMALL_NODE: Path(lab.dir, "manifests-small"), LARGE_NODE: Path(lab.dir, "manifests-large")}
        target = target_objects(server_ip, NODE_PORT if outside else None)
        for directory, n in zip(dirs.values(), sizes):
            write_cluster(directory, fillers[n], target)
        first_sync = start_proxies(lab, mode, dirs, say)
        time.sleep(1.0)                                   # let the syncs' aftermath settle
        warm_up(workers, targets, server_ip, str(mode))   # the Service answers (or the error says why not)
        say(f"  {rounds} rounds x {connections} connections x {len(targets)} targets")
        measured = interleaved(workers, targets, server_ip, rounds, connections, say)
        return {"mode": mode, "sizes": {SMALL_NODE: sizes[0], LARGE_NODE: sizes[1]}, "server_ip": server_ip,
                "first_sync_s": first_sync, "targets": measured, "before_proxy": floor,
                "ratios": ratios(measured), "loadavg": load + [loadavg()],
                "kernel": {node: kernel_objects(lab, node, node_modes[node]) for node in dirs},
                "log_errors": {node: _log_errors(lab, node) for node in dirs}}
    finally:
        for w in workers.values():
            w.stop()
        lab.down()


# -- the whole run -------------------------------------------------------------------------

def machine() -> dict:
    return describe(Path(__file__).resolve().parent.parent.parent, ("iptables", "nft"))


def run(modes: list[str], sizes: tuple[int, int], rounds: int, connections: int, say=print,
        targets: tuple[str, ...] = TARGETS) -> dict:
    from netplane.bench.programming import filler_objects

    outside = any(t in CLIENT_TARGETS for t in targets)
    fillers = {n: filler_objects(n) for n in sorted(set(sizes))}
    if outside:
        fillers = {n: with_node_ports(f) for n, f in fillers.items()}
    params = {"modes": modes, "sizes": {SMALL_NODE: sizes[0], LARGE_NODE: sizes[1]}, "rounds": rounds,
              "connections": connections, "warmup": WARMUP, "endpoints_per_service": 10,
              "lab": "3 nodes, routed, 2 pods per node", "target": f"{TARGET_IP}:{TARGET_PORT}",
              "targets": list(targets), "limits": LIMITS}
    if outside:
        params.update(node_port=NODE_PORT, client=EXTERNAL_IP, nodeport_fillers={
            n: sum(1 for o in f if o["kind"] == "Service" and "nodePort" in o["spec"]["ports"][0])
            for n, f in fillers.items()})
    report = {"benchmark": NODEPORT_NAME if outside else NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "params": params, "results": []}
    for mode in modes:
        say(f"{mode}: lab up; {sizes[0]:,} Services on {SMALL_NODE}, {sizes[1]:,} on {LARGE_NODE}")
        report["results"].append(measure_mode(mode, sizes, fillers, rounds, connections, say, targets))
    report["across_modes"] = across_modes(report["results"])
    return report


# -- report ---------------------------------------------------------------------------------

LABEL = {"vip-small": "cluster IP from node1-pod1", "vip-large": "cluster IP from node3-pod1",
         "direct-node1": "pod IP from node1-pod1", "direct-node3": "pod IP from node3-pod1",
         "nodeport-small": "node1's IP : nodePort, from outside", "nodeport-large": "node3's IP : nodePort, from outside",
         "direct-client": "pod IP from outside (via node2)"}
SMALL_SIDE = ("vip-small", "direct-node1", "nodeport-small")     # the targets whose path crosses node1


def cluster_size(r: dict, target: str) -> int | None:
    """The Services the proxy on the target's path holds (None: direct-client crosses none)."""
    if target == "direct-client":
        return None
    return r["sizes"][SMALL_NODE if target in SMALL_SIDE else LARGE_NODE]


def _targets(report: dict) -> tuple[str, ...]:
    return tuple(report["params"].get("targets", TARGETS))


def _range(lo: float, hi: float, fmt: str = ".0f") -> str:
    return f"{lo:{fmt}}..{hi:{fmt}}"


def _verdict(x: dict) -> str:
    return "" if x.get("ok") is None else (" ok" if x["ok"] else " OVER")


def table(report: dict) -> list[str]:
    lines = ["| mode | target | node's Services | median µs | spread µs (per-round medians) | p90 µs | "
             "before any proxy µs | errors |", "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        for t in _targets(report):
            s, size = r["targets"][t], cluster_size(r, t)
            before = r["before_proxy"].get(t)
            lines.append(f"| {r['mode']} | {t}: {LABEL[t]} | {f'{size:,}' if size else 'none'} | "
                         f"{s['median_us']:.0f} | {_range(*s['spread_us'])} | {s['p90_us']:.0f} | "
                         + (f"{before['median_us']:.0f} ({_range(*before['spread_us'])})" if before else "-")
                         + f" | {s['errors']} |")
    return lines


def ratio_table(report: dict) -> list[str]:
    small, large = (f"{report['params']['sizes'][n]:,}" for n in (SMALL_NODE, LARGE_NODE))
    keys = [row for row in RATIOS if all(row[0] in r["ratios"] for r in report["results"])]
    heads = [heading.format(small=small, large=large) + (f" (limit {LIMITS[limit]})" if limit else "")
             for _, _, _, limit, heading in keys]
    lines = ["| mode | " + " | ".join(heads) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in report["results"]:
        cells = [f"**{x['value']:.3f}** ({_range(*x['spread'], '.3f')}){_verdict(x)}"
                 for x in (r["ratios"][key] for key, *_ in keys)]
        lines.append(f"| {r['mode']} | " + " | ".join(cells) + " |")
    return lines


def modes_table(report: dict) -> list[str]:
    """The eBPF mode against nftables, per target (empty unless both ran)."""
    rows = report.get("across_modes") or []
    if not rows:
        return []
    a, b = rows[0]["of"]
    lines = [f"| target | node's Services | {a} median µs | {b} median µs | {a} / {b} | range from the spreads | "
             "limit | each over its lab's direct-client |", "|---|---|---|---|---|---|---|---|"]
    by = {r["mode"]: r for r in report["results"]}
    for x in rows:
        t, size = x["target"], x["services"]
        lines.append(f"| {t} | {f'{size:,}' if size else 'none'} | "
                     f"{by[a]['targets'][t]['median_us']:.0f} | {by[b]['targets'][t]['median_us']:.0f} | "
                     f"**{x['value']:.3f}**{_verdict(x)} | {_range(*x['spread'], '.3f')} | "
                     f"{x['limit'] or '-'} | " + (f"{x['over_floor']:.3f}" if x.get("over_floor") else "-") + " |")
    return lines


def _method_pods(p: dict, small: int, large: int) -> str:
    return (f"One lab per mode ({p['lab']}); the modes run one after the other in this one run, while the "
            f"targets within a mode are interleaved. node2-pod1 runs the lab's echo server. node1's proxy reads a "
            f"cluster of {small:,} Services, node3's (same mode) one of {large:,}; both counts include the measured "
            f"Service zz-target ({p['target']} -> node2-pod1:{POD_PORT}, sorting last); the others have "
            f"{p['endpoints_per_service']} endpoints each (fake pod IPs). node2 runs no proxy. A connection is "
            "timed from connect() to the first byte back (connect, one byte sent, the server's line received; "
            "socket made beforehand, closed with SO_LINGER 0), from a worker process started once in each "
            "client pod; every answer must come from node2-pod1. "
            f"{p['rounds']} rounds; in each, one block of {p['connections']} connections per target, "
            "the order rotating by one target per round (after a discarded warm-up of "
            f"{p['warmup']} per target). Per target: the median over rounds of the per-round median, its spread "
            "(min..max of the per-round medians) and the median over rounds of the per-round p90. The two "
            "clients are symmetric (each one hop from node2), so VIP from node3 / VIP from node1 is the cost "
            "of the cluster's size; VIP / direct on a node is the cost of the Service on top of the "
            "route. A direct connection is a new connection too and crosses the same node's service rules "
            "(it just matches none of them); 'before any proxy' is the direct median measured the same way "
            "before the proxies started (no rules at all). Per-round numbers, the kernel objects each proxy "
            "installed and its first-sync time are in the JSON.")


def _method_outside(p: dict) -> str:
    fillers = ", ".join(f"{n:,} at {int(k):,}" for k, n in sorted(p["nodeport_fillers"].items(), key=lambda kv: int(kv[0])))
    return (f"From outside: the lab's client namespace ({p['client']}, on the underlay segment with the "
            f"nodes) runs a third worker. zz-target is type NodePort (nodePort {p['node_port']}, "
            "externalTrafficPolicy Cluster), its only endpoint node2-pod1, so node1 and node3 each DNAT the "
            "client's connection to the pod and SNAT it to their own address: every answer through a node port "
            "must name node2-pod1 and the node's address as the client it saw; a direct one (direct-client, "
            "through a route to node2's pod CIDR via node2, added in the client namespace only) the client's "
            f"own. Every {NODEPORT_EVERY}th filler Service is a NodePort too (ports {NODEPORT_FIRST} up; "
            f"{fillers} Services), so the node port is looked up among many. NodePort {p['sizes'][LARGE_NODE]:,} "
            f"/ NodePort {p['sizes'][SMALL_NODE]:,} is the cost of the cluster's size on that path (the "
            "eBPF issue's limit 1.05). The modes' ratio (eBPF against nftables) is of the per-mode medians, "
            "which come from different labs built one after the other: its range is the widest the two "
            "spreads allow, and direct-client, which crosses no proxy, shows how far two labs differ with no "
            "mode in the path; the last column divides each mode's median by its own lab's direct-client "
            "first, which takes that difference out.")


def markdown(report: dict) -> str:
    m, p = report["machine"], report["params"]
    small, large = p["sizes"][SMALL_NODE], p["sizes"][LARGE_NODE]
    outside = any(t in CLIENT_TARGETS for t in _targets(report))
    title = ("# A new connection through a node port from outside, and from pods, by proxy mode" if outside
             else "# First packet through the node, by proxy mode")
    lines = [title, "",
             f"{report['when']}, {m['cpus']} CPUs, kernel {m['kernel']}, {m.get('iptables', '')}, "
             f"{m.get('nft', '')}; {m.get('tree', '')}.", "",
             *table(report), "", "Ratios (of the medians over rounds; in brackets the spread of the same-round "
             "ratios):", "", *ratio_table(report), ""]
    across = modes_table(report)
    if across:
        lines += ["The modes against each other (of the per-mode medians over rounds):", "", *across, ""]
    lines += ["## Method", "", _method_pods(p, small, large), ""]
    if outside:
        lines += [_method_outside(p), ""]
    for r in report["results"]:
        lines += _run_notes(r["mode"], r)
    return "\n".join(lines) + "\n"


def _run_notes(label: str, r: dict) -> list[str]:
    """One lab's first syncs, load, installed objects and proxy log errors."""
    lines = [f"- {label}: first sync {', '.join(f'{n} {s:.1f} s' for n, s in r['first_sync_s'].items())}; "
             + (f"1-min load average before and after {r['loadavg'][0]:.2f}, {r['loadavg'][1]:.2f}; "
                if r.get("loadavg") else "") + f"installed {json.dumps(r['kernel'])}"]
    for node, errs in r.get("log_errors", {}).items():
        lines += [f"  - {node} proxy log error: {e}" for e in errs]
    return lines


def plot(report: dict, path: Path) -> None:
    """Per mode, each target's per-round medians over the rounds (dotted: direct, before any proxy)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, targets = report["results"], _targets(report)
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], results):
        for i, t in enumerate(targets):
            rounds, size = r["targets"][t]["rounds"], cluster_size(r, t)
            ax.plot([x["round"] for x in rounds], [x["median_us"] for x in rounds], "o-", color=f"C{i}",
                    label=f"{t} ({f'{size:,}' if size else 'no'} Services)")
        for i, t in enumerate(targets):
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


def ratio_bars(report: dict) -> list[tuple[str, dict]]:
    """The ratios the bar plot shows, labelled: the size ratios per mode, then the modes' ratios."""
    bars = []
    for r in report["results"]:
        for key in ("nodeport_large_over_small", "large_over_small"):
            if key in r["ratios"]:
                bars.append((f"{r['mode']}\n{'NodePort' if key.startswith('nodeport') else 'VIP'} large/small",
                             r["ratios"][key]))
    for x in report.get("across_modes") or []:
        if x["target"].startswith("nodeport-"):
            bars.append((f"{x['of'][0]}/{x['of'][1]}\nNodePort {x['services']:,}", x))
    return bars


def plot_bars(report: dict, path: Path) -> None:
    """Per mode, each target's median over rounds, whiskers its spread; last, the ratios with theirs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, targets = report["results"], _targets(report)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    ax, width = axes[0], 0.8 / len(targets)
    for i, t in enumerate(targets):
        values = [r["targets"][t]["median_us"] for r in results]
        err = [[v - r["targets"][t]["spread_us"][0] for v, r in zip(values, results)],
               [r["targets"][t]["spread_us"][1] - v for v, r in zip(values, results)]]
        ax.bar([k + (i - (len(targets) - 1) / 2) * width for k in range(len(results))], values, width, yerr=err,
               capsize=2, color=f"C{i}", label=f"{t}: {LABEL[t]}")
    ax.set_xticks(range(len(results)), [r["mode"] for r in results])
    ax.set_ylabel("connect + first byte, µs\n(median of rounds; whiskers: spread)")
    small, large = report["params"]["sizes"][SMALL_NODE], report["params"]["sizes"][LARGE_NODE]
    ax.set_title(f"small = {small:,} Services (node1), large = {large:,} (node3)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    ax = axes[1]
    ratio_barh(ax, ratio_bars(report)[::-1], LIMITS["nodeport"], 1.3)      # top to bottom in the order given
    ax.set_xlabel("ratio (whiskers: same-round ratios; across modes: widest)")
    ax.set_title("ratios (green: within its limit, red: over, grey: no limit)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: dict, out: Path) -> dict[str, Path]:
    outside = any(t in CLIENT_TARGETS for t in _targets(report))
    return results.write(out, report.get("benchmark", NAME), report, markdown, plot_bars if outside else plot)


# -- the A/B variant: two modes in one lab, the nodes swapped in a second ----------------------

def ab_layouts(a: str, b: str) -> list[dict[str, str]]:
    """The two labs' modes per node: node1 a and node3 b, then swapped."""
    return [{SMALL_NODE: a, LARGE_NODE: b}, {SMALL_NODE: b, LARGE_NODE: a}]


def geomean(values: list[float]) -> float:
    product = 1.0
    for v in values:
        product *= v
    return product ** (1 / len(values))


def ab_summary(labs: list[dict], a: str, b: str) -> dict:
    """Mode a against mode b, per kind of target (nodeport: from outside, the issue's limit; vip: from
    the node's own pod): in each lab the target crossing a's node over the one crossing b's node (of
    the medians over rounds; spread: the same-round ratios, both measured in the same lab, interleaved),
    and over the labs the geometric mean of those ratios, which cancels what node1 and node3 differ by
    with the modes swapped (its spread: the geometric means of the labs' lowest and of their highest)."""
    out = {}
    for kind in ("nodeport", "vip"):
        per_lab = []
        for lab in labs:
            on = {m: n for n, m in lab["node_modes"].items()}
            ta, tb = f"{kind}-{on[a]}", f"{kind}-{on[b]}"
            if ta not in lab["targets"] or tb not in lab["targets"]:
                break
            x = ratio(lab["targets"], ta, tb)
            per_lab.append({**x, "nodes": {a: on[a], b: on[b]}, "median_us": {
                a: lab["targets"][ta]["median_us"], b: lab["targets"][tb]["median_us"]},
                "spread_us": {a: lab["targets"][ta]["spread_us"], b: lab["targets"][tb]["spread_us"]}})
        else:
            limit = LIMITS["modes"] if kind == "nodeport" else None
            value = geomean([x["value"] for x in per_lab])
            out[kind] = {"of": [a, b], "per_lab": per_lab, "value": value,
                         "spread": [geomean([x["spread"][0] for x in per_lab]),
                                    geomean([x["spread"][1] for x in per_lab])],
                         "limit": limit, "ok": None if limit is None else value <= limit}
    return out


def run_ab(a: str, b: str, size: int, rounds: int, connections: int, say=print,
           targets: tuple[str, ...] = AB_TARGETS) -> dict:
    """Two labs, node1 in a and node3 in b, then swapped; both nodes' proxies read the same cluster
    of `size` Services (the large side's manifests)."""
    from netplane.bench.programming import filler_objects

    fillers = {size: with_node_ports(filler_objects(size))}
    params = {"ab": [a, b], "size": size, "sizes": {SMALL_NODE: size, LARGE_NODE: size}, "rounds": rounds,
              "connections": connections, "warmup": WARMUP, "endpoints_per_service": 10,
              "lab": "3 nodes, routed, 2 pods per node", "target": f"{TARGET_IP}:{TARGET_PORT}",
              "targets": list(targets), "limits": LIMITS, "node_port": NODE_PORT, "client": EXTERNAL_IP,
              "nodeport_fillers": sum(1 for o in fillers[size] if o["kind"] == "Service"
                                          and "nodePort" in o["spec"]["ports"][0])}
    report = {"benchmark": AB_NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
              "params": params, "labs": []}
    for i, layout in enumerate(ab_layouts(a, b), 1):
        say(f"lab {i}: {', '.join(f'{n} {m}' for n, m in layout.items())}; {size:,} Services on both")
        r = measure_mode(layout, (size, size), fillers, rounds, connections, say, targets, lab_name=f"npab{i}")
        report["labs"].append({**r, "lab": i, "node_modes": layout})
    report["ab"] = ab_summary(report["labs"], a, b)
    return report


def ab_target_label(lab: dict, t: str) -> str:
    node = t.rsplit("-", 1)[-1]
    if t.startswith("nodeport-"):
        return f"{node}'s IP : nodePort, from outside ({lab['node_modes'][node]})"
    if t.startswith("vip-"):
        return f"cluster IP from {CLIENT[node]} ({lab['node_modes'][node]})"
    return LABEL.get(t, t)


def ab_tables(report: dict) -> list[str]:
    lines = ["| lab | target | median µs | spread µs (per-round medians) | p90 µs | before any proxy µs | errors |",
             "|---|---|---|---|---|---|---|"]
    for lab in report["labs"]:
        for t in report["params"]["targets"]:
            s, before = lab["targets"][t], lab["before_proxy"].get(t)
            lines.append(f"| {lab['lab']} | {t}: {ab_target_label(lab, t)} | {s['median_us']:.0f} | "
                         f"{_range(*s['spread_us'])} | {s['p90_us']:.0f} | "
                         + (f"{before['median_us']:.0f} ({_range(*before['spread_us'])})" if before else "-")
                         + f" | {s['errors']} |")
    lines += ["", "| path | lab | " + " | ".join(f"{m} on, median µs" for m in report["params"]["ab"])
              + " | ratio (same-round spread) | limit |", "|---|---|---|---|---|---|"]
    for kind, x in report["ab"].items():
        a, b = x["of"]
        what = "NodePort from outside" if kind == "nodeport" else "cluster IP from the node's pod"
        for p in x["per_lab"]:
            lines.append(f"| {what}, {a} / {b} | {p['nodes'][a]} {a}, {p['nodes'][b]} {b} | "
                         f"{p['nodes'][a]}: {p['median_us'][a]:.0f} | {p['nodes'][b]}: {p['median_us'][b]:.0f} | "
                         f"{p['value']:.3f} ({_range(*p['spread'], '.3f')}) | |")
        lines.append(f"| {what}, {a} / {b} | **geometric mean of the labs** | | | "
                     f"**{x['value']:.3f}**{_verdict(x)} ({_range(*x['spread'], '.3f')}) | {x['limit'] or '-'} |")
    return lines


def ab_markdown(report: dict) -> str:
    m, p = report["machine"], report["params"]
    a, b = p["ab"]
    lines = [f"# {a} against {b} through a node port, in one lab (then the nodes swapped)", "",
             f"{report['when']}, {m['cpus']} CPUs, kernel {m['kernel']}, {m.get('iptables', '')}, "
             f"{m.get('nft', '')}; {m.get('tree', '')}.", "", *ab_tables(report), "", "## Method", "",
             f"Two labs ({p['lab']}), one after the other. In lab 1 node1's proxy runs the {a} mode and "
             f"node3's the {b} mode, in lab 2 the other way round; both nodes' proxies read the same cluster of "
             f"{p['size']:,} Services (the first-packet benchmark's large side: fillers with "
             f"{p['endpoints_per_service']} fake endpoints each, every {NODEPORT_EVERY}th a NodePort, "
             f"{p['nodeport_fillers']:,} of them; the measured Service zz-target, {p['target']}, "
             f"type NodePort {p['node_port']}, externalTrafficPolicy Cluster, its one endpoint node2-pod1). "
             "node2 runs no proxy. The targets, interleaved round by round with the order rotating: node1's "
             "and node3's IP : the nodePort from the client namespace "
             f"({p['client']}, every answer must name node2-pod1 and the node's own address, its SNAT), the pod "
             "IP straight from the client (direct-client, via node2: no proxy, the floor), and the cluster IP "
             "from node1-pod1 and node3-pod1. A connection is connect() to the first byte back, from a worker "
             f"process in each client; {p['rounds']} rounds of {p['connections']} connections per target (after "
             f"{p['warmup']} per target discarded). Per target the median over rounds of the per-round medians, "
             "and their spread. The ratio per lab is the target through the "
             f"{a} node over the same target through the {b} node, both measured in the same lab, interleaved "
             "(spread: the same-round ratios); the result is the geometric mean of the two labs' ratios, in which "
             "whatever node1 and node3 differ by cancels out (its range: the geometric means of the labs' lowest "
             "and of their highest same-round ratios).", ""]
    for lab in report["labs"]:
        lines += _run_notes(f"lab {lab['lab']} ({', '.join(f'{n} {mo}' for n, mo in lab['node_modes'].items())})", lab)
    return "\n".join(lines) + "\n"


def ab_plot(report: dict, path: Path) -> None:
    """Per lab, each target's per-round medians; last, the ratios per lab and their geometric mean."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labs, targets = report["labs"], report["params"]["targets"]
    fig, axes = plt.subplots(1, len(labs) + 1, figsize=(5.2 * (len(labs) + 1), 4.4), squeeze=False)
    for ax, lab in zip(axes[0], labs):
        for i, t in enumerate(targets):
            rounds = lab["targets"][t]["rounds"]
            ax.plot([x["round"] for x in rounds], [x["median_us"] for x in rounds], "o-", color=f"C{i}",
                    label=f"{t} ({lab['node_modes'].get(t.rsplit('-', 1)[-1], 'no proxy')})")
        ax.set_title(f"lab {lab['lab']}: " + ", ".join(f"{n} {m}" for n, m in lab["node_modes"].items()), fontsize=10)
        ax.set_xlabel("round"), ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("connect + first byte, µs (per-round median)")
    ax, bars = axes[0][-1], []
    for kind, x in report["ab"].items():
        a, b = x["of"]
        for p, lab in zip(x["per_lab"], labs):
            bars.append((f"{kind} {a}/{b} lab {lab['lab']}", p))
        bars.append((f"{kind} {a}/{b} geo. mean", x))
    ratio_barh(ax, bars[::-1], LIMITS["modes"], 1.2)
    ax.set_xlabel("ratio (whiskers: same-round ratios)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_ab(report: dict, out: Path) -> dict[str, Path]:
    return results.write(out, AB_NAME, report, ab_markdown, ab_plot)



def ratio_barh(ax, bars: list, limit: float, xmax: float) -> None:
    """Ratios as horizontal bars, bottom to top, each with its spread as
    whiskers and its value beside it; red over the limit, green within,
    grey without one. `bars`: (label, {"value", "spread", "ok"})."""
    values = [x["value"] for _, x in bars]
    err = [[v - x["spread"][0] for v, (_, x) in zip(values, bars)],
           [x["spread"][1] - v for v, (_, x) in zip(values, bars)]]
    ax.barh(range(len(bars)), values, 0.6, xerr=err, capsize=3,
            color=["C3" if x.get("ok") is False else "C2" if x.get("ok") else "C7" for _, x in bars])
    for k, (v, (_, x)) in enumerate(zip(values, bars)):
        ax.text(x["spread"][1] + 0.005, k, f"{v:.3f}", fontsize=7, va="center")
    ax.axvline(limit, color="k", linestyle="--", linewidth=1, label=f"limit {limit}")
    ax.axvline(1.0, color="k", linewidth=0.5)
    ax.set_yticks(range(len(bars)), [label.replace("\n", " ") for label, _ in bars], fontsize=8)
    ax.set_xlim(min(0.8, min(x["spread"][0] for _, x in bars) - 0.05),
                max(xmax, max(x["spread"][1] for _, x in bars) + 0.05))

# -- the command line (benchmarks/proxy_first_packet.py, benchmarks/proxy_nodeport.py) -------------

def modes_and_out(p: argparse.ArgumentParser) -> None:
    """The options every proxy benchmark's command line has: --modes and --out."""
    from netplane.proxy import modes

    p.add_argument("--modes", default=",".join(modes.available()),
                   help="proxy modes, comma-separated (default: every mode this kernel runs: %(default)s)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "benchmarks" / "results")


def parse_modes(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--modes as a list of known modes (or the parser's error)."""
    from netplane.proxy import modes

    args.modes = [m for m in args.modes.split(",") if m]
    for m in args.modes:
        if m not in modes.names():
            p.error(f"--modes: unknown mode {m!r}; known: {', '.join(modes.names())}")


def parse_args(argv=None, doc: str = __doc__):
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes_and_out(p)
    p.add_argument("--sizes", default="100,10000",
                   help="SMALL,LARGE: Services on node1's and node3's proxy, the measured one included")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (at least 5 for the issues' numbers)")
    p.add_argument("--connections", type=int, default=400, help="connections per target per round")
    p.add_argument("--ab", metavar="A,B", help="the A/B variant: one lab, node1 in mode A and node3 in B, both "
                   "reading LARGE Services (of --sizes), then a lab with the nodes swapped; reports A / B")
    args = p.parse_args(argv)
    parse_modes(p, args)
    if args.ab is not None:
        from netplane.proxy import modes

        args.ab = [m for m in args.ab.split(",") if m]
        if len(args.ab) != 2 or args.ab[0] == args.ab[1] or any(m not in modes.names() for m in args.ab):
            p.error(f"--ab: two different known modes, A,B; known: {', '.join(modes.names())}")
    try:
        args.sizes = tuple(int(x) for x in args.sizes.split(","))
    except ValueError:
        p.error("--sizes: two integers, SMALL,LARGE")
    if len(args.sizes) != 2 or min(args.sizes) < 1:
        p.error("--sizes: two positive integers, SMALL,LARGE")
    if args.rounds < 1 or args.connections < 1:
        p.error("--rounds and --connections must be positive")
    return args


def main(argv=None, targets: tuple[str, ...] = TARGETS, doc: str = __doc__) -> int:
    args = parse_args(argv, doc)
    # SIGTERM unwinds like Ctrl-C, so every lab's `finally: lab.down()` runs
    from netplane import sandbox
    signal.signal(signal.SIGTERM, sandbox.raise_exit)
    if args.ab:
        report = run_ab(*args.ab, args.sizes[1], args.rounds, args.connections,
                        say=lambda text: print(text, flush=True))
        paths = write_ab(report, args.out)
        print()
        print("\n".join(ab_tables(report)))
        print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
        return 0
    report = run(args.modes, args.sizes, args.rounds, args.connections, say=lambda text: print(text, flush=True),
                 targets=targets)
    paths = write(report, args.out)
    print()
    print("\n".join(table(report)))
    print()
    print("\n".join(ratio_table(report)))
    across = modes_table(report)
    if across:
        print()
        print("\n".join(across))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    worker()
