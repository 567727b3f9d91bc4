"""The measurements, one function per step, each run against one subject
at one size on the testbed. A step returns {metric: [values]} and says what
it checked; it raises Unfinished when it ran out of its cap (a result: "did
not finish in N s") and anything else when the path is broken (a failure,
reported, never a number).

Every number is made only of traffic that reached the measured Service's
pod: the echo server names itself (and the address it saw) in each answer,
and iperf3's server reports the address it served on.
"""
import contextlib
import json
import os
import random
import time
from dataclasses import dataclass, field

from netplane.bench.proxy import cluster
from netplane.sandbox import TIMEOUT_SCALE
from netplane.bench.proxy.subjects import Subject
from netplane.bench.proxy.testbed import CLIENT_POD, EXTERNAL, PODS, Testbed
from netplane.bench.throughput import parse_sample

WARMUP = 20                          # connections per path before a block, discarded


class Unfinished(Exception):
    """The step ran out of its cap."""


@dataclass(frozen=True)
class Effort:
    """How much each step does per round (--quick makes it small)."""
    connections: int = 300           # per path per block
    blocks: int = 2                  # blocks per path, the paths alternating
    rate_seconds: float = 3.0
    iperf_seconds: int = 3
    changes: int = 10
    burst: int = 20                  # churn-file rewrites in the burst
    burst_gap: float = 0.02


@dataclass
class Run:
    """One subject at one size in one round."""
    bed: Testbed
    subject: Subject
    services: int
    endpoints: int
    effort: Effort
    cap: float
    pod: str = PODS[0]               # the measured Service's endpoint now
    pid: int = 0
    started: float = 0.0
    checked: dict = field(default_factory=dict)

    @property
    def directory(self):
        return self.bed.manifests(self.services)

    def answer(self, where: str, pod: str | None = None) -> str:
        """How the answer from the Service's pod (now, or `pod`) starts, seen from `where`: through
        the node port the pod sees node1 (SNAT: its endpoint is on another node); straight from
        outside, the client."""
        pod = pod or self.pod
        if where == CLIENT_POD:
            return pod
        return f"{pod} {self.bed.client_ip if self.subject.mode is None else self.bed.node_ip}\n"

    def address(self, where: str, port: int = cluster.TARGET_PORT) -> tuple[str, int]:
        if self.subject.mode is None:                              # the floor: straight to the pod
            return self.bed.pod_ip(self.pod), cluster.POD_PORT if port == cluster.TARGET_PORT else port
        if where == EXTERNAL:
            return self.bed.node_ip, cluster.NODE_PORT
        return cluster.TARGET_IP, port


# -- a proxy's own steps -------------------------------------------------------------

def prepare(run: Run) -> None:
    """The measured Service back on pod A and the churn file at revision 0, before the proxy starts."""
    run.pod = PODS[0]
    cluster.atomic_write(run.directory / cluster.FILES[2], cluster.target(run.bed.pod_ip(run.pod)))
    cluster.atomic_write(run.directory / cluster.FILES[1], cluster.churned(run.services, run.endpoints, 0))


def wait_answer(run: Run, expect_pod: str, deadline: float, interval: float) -> float:
    """The monotonic time of the first answer from `expect_pod` through the cluster IP, from the
    client pod (which then is the Service's pod); Unfinished at `deadline` (monotonic),
    RuntimeError as soon as the proxy is known to be broken."""
    host, port = cluster.TARGET_IP, cluster.TARGET_PORT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unfinished(f"no answer from {expect_pod} through {host}:{port}")
        got = run.bed.clients[CLIENT_POD].ask("until", host=host, port=port, expect=run.answer(CLIENT_POD, expect_pod),
                                              timeout=min(left, 2.0), interval=interval)
        if "at" in got:
            run.pod = expect_pod
            return got["at"]
        problem = run.bed.proxy_problem()
        if problem:
            raise RuntimeError(problem)


def full_sync(run: Run) -> dict:
    """Daemon spawned -> programmed: the later of the first answer through the measured Service
    and the end of the sync the daemon reports (/healthz lastUpdated), as a mode need not program
    the Service that sorts last last."""
    prepare(run)
    deadline = time.monotonic() + run.cap
    started_wall, run.started = time.time(), time.monotonic()
    run.pid = run.bed.start_proxy(run.subject, run.services)
    answered = wait_answer(run, PODS[0], deadline, 0.005) - run.started
    while (synced := run.bed.last_sync()) is None or synced <= started_wall:
        if time.monotonic() > deadline:
            raise Unfinished("the proxy answered, but reported no finished sync")
        time.sleep(0.02)
    # The probes sent before the rules were in left un-NATed entries in node1's conntrack table
    # (SYN_SENT, 2 minutes). A later connection from a reused port would match one and go nowhere:
    # that lost 2-5 connections a second in the iptables modes' rate step until this flush.
    run.bed.forget_connections()
    run.checked["full_sync_s"] = (f"first answer from {PODS[0]} through the cluster IP after {answered:.3f} s; "
                                  f"the sync reported done after {synced - started_wall:.3f} s")
    return {"full_sync_s": [max(answered, synced - started_wall)]}


def change_latency(run: Run) -> dict:
    """The Service's only endpoint moves to the other pod by an atomic rewrite of its manifest;
    latency = first answer from the new pod - the moment before the write."""
    out = []
    for _ in range(run.effort.changes):
        time.sleep(random.uniform(0.1, 0.3))                 # writes at any phase of the proxy's loop
        new = other(run.pod)
        t0 = time.monotonic()
        cluster.atomic_write(run.directory / cluster.FILES[2], cluster.target(run.bed.pod_ip(new)))
        out.append((wait_answer(run, new, t0 + run.cap, 0.0005) - t0) * 1000)
    run.checked["change_ms"] = "first answer from the new pod through the cluster IP"
    return {"change_ms": out}


def churn_cpu(run: Run) -> dict:
    """The daemon's CPU time over a burst of rewrites of the churn file (new endpoints for up to 50
    Services each time), until a last change of the measured Service shows through the data path."""
    before = cpu_seconds(run.pid)
    for revision in range(1, run.effort.burst + 1):
        cluster.atomic_write(run.directory / cluster.FILES[1],
                             cluster.churned(run.services, run.endpoints, revision))
        time.sleep(run.effort.burst_gap)
    new = other(run.pod)
    cluster.atomic_write(run.directory / cluster.FILES[2], cluster.target(run.bed.pod_ip(new)))
    wait_answer(run, new, time.monotonic() + run.cap, 0.001)
    run.checked["churn_cpu_s"] = f"{run.effort.burst} rewrites of {cluster.churn_count(run.services)} Services, " \
                                 "then an endpoint change seen through the cluster IP"
    return {"churn_cpu_s": [cpu_seconds(run.pid) - before]}


def memory(run: Run) -> dict:
    run.checked["rss_mb"] = "VmRSS of the proxy process"
    return {"rss_mb": [rss_mb(run.pid)]}


# -- the data path's steps (the floor too) ----------------------------------------------

def first_packet(run: Run) -> dict:
    """Connect to first byte, through the cluster IP from the client pod and through the node
    port from outside (the floor: the pod's IP from both), blocks alternating."""
    paths = {"vip_first_us": CLIENT_POD, "nodeport_first_us": EXTERNAL}
    out = {metric: [] for metric in paths}
    lost = dict.fromkeys(paths, 0)
    for where in paths.values():
        _block(run, where, WARMUP)
    for _ in range(run.effort.blocks):
        for metric, where in paths.items():
            us, failed = _block(run, where, run.effort.connections)
            out[metric] += us
            lost[metric] += failed
    for metric, where in paths.items():
        host, port = run.address(where)
        run.checked[metric] = f"every answer from {run.answer(where).strip()} via {host}:{port}" + \
            (f" ({lost[metric]} lost of {len(out[metric])}, counted as 1 s each)" if lost[metric] else "")
    return out


def _block(run: Run, where: str, n: int) -> tuple[list[float], int]:
    """n connections' times, and how many were lost. A lost one counts as its timeout (1 s), so
    losses show in the tail; more than 1 % lost is a broken path."""
    host, port = run.address(where)
    got = run.bed.clients[where].ask("block", host=host, port=port, n=n, expect=run.answer(where),
                                    timeout=TIMEOUT_SCALE)
    failed = n - len(got["us"])
    if failed > max(1, n // 100) or "wrong answer" in got["errors"]:
        raise RuntimeError(f"{failed} of {n} connections to {host}:{port} from {where} failed: {got['errors']}")
    return got["us"] + [TIMEOUT_SCALE * 1e6] * failed, failed


def connection_rate(run: Run) -> dict:
    host, port = run.address(CLIENT_POD)
    got = run.bed.clients[CLIENT_POD].ask("rate", host=host, port=port, seconds=run.effort.rate_seconds,
                                          expect=run.answer(CLIENT_POD), timeout=0.2 * TIMEOUT_SCALE)
    failed = sum(got["errors"].values())
    if failed > max(1, got["ok"] // 100) or "wrong answer" in got["errors"]:
        raise RuntimeError(f"{failed} of {failed + got['ok']} connections to {host}:{port} failed: {got['errors']}")
    run.checked["conn_rate"] = f"one client, every answer from {run.pod} via {host}:{port}" + \
        (f" ({failed} lost of {failed + got['ok']}, each costing its {0.2 * TIMEOUT_SCALE:g} s timeout)"
         if failed else "")
    return {"conn_rate": [got["ok"] / got["seconds"]]}


def throughput(run: Run) -> dict:
    host, port = run.address(CLIENT_POD, cluster.IPERF_PORT)
    seconds = run.effort.iperf_seconds
    done = run.bed.lab.run(CLIENT_POD, ["iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-J",
                                        "--get-server-output"], timeout=seconds + 30)
    try:
        result = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"iperf3 to {host}:{port}: {(done.stderr or done.stdout).strip()[-300:]}") from None
    pod_ip = run.bed.pod_ip(run.pod)
    sample = parse_sample(result, pod_ip, (run.bed.pod_ip(CLIENT_POD), run.bed.node_ip))
    run.checked["throughput_gbps"] = f"iperf3's server on {run.pod} ({pod_ip}) served it, via {host}:{port}"
    return {"throughput_gbps": [sample["bps"] / 1e9]}


# -- the sequences -------------------------------------------------------------------------

# a step's metrics: what a failed or unfinished step leaves without a number
STEP_METRICS = {"full sync": ("full_sync_s",), "first packet": ("vip_first_us", "nodeport_first_us"),
                "connection rate": ("conn_rate",), "throughput": ("throughput_gbps",),
                "programming latency": ("change_ms",), "churn": ("churn_cpu_s",), "memory": ("rss_mb",)}
# steps after which the rest cannot be trusted when they fail: no path, or the endpoint not known
BLOCKING = ("full sync", "first packet", "programming latency", "churn")

PROXY_STEPS = (("full sync", full_sync), ("first packet", first_packet), ("connection rate", connection_rate),
               ("throughput", throughput), ("programming latency", change_latency), ("churn", churn_cpu),
               ("memory", memory))
FLOOR_STEPS = (("first packet", first_packet), ("connection rate", connection_rate), ("throughput", throughput))


def steps_for(subject: Subject) -> tuple:
    return FLOOR_STEPS if subject.mode is None else PROXY_STEPS


# -- helpers ---------------------------------------------------------------------------------

def other(pod: str) -> str:
    return PODS[1] if pod == PODS[0] else PODS[0]


def cpu_seconds(pid: int) -> float:
    """A process's CPU time, its threads' in nanoseconds (/proc/PID/task/*/schedstat: /proc's
    utime and stime count 10 ms ticks, too coarse for a burst), plus that of the children it waited
    for (iptables-restore, nft: cutime and cstime, fields 16-17 of /proc/PID/stat)."""
    threads = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):          # a thread that just ended
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                threads += int(f.read().split()[0])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()           # comm may hold spaces
    return threads / 1e9 + (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """VmRSS in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
