"""Network programming, end to end: from a manifest written to the data path
answering, through the real `netplane proxy` daemon started as a user would.

A mode is a name plus daemon flags (`Mode`); nothing below depends on what
the mode puts in the kernel. The proof that the kernel holds a change is
the data path itself: a prober inside the node's namespace connects to the
measured Service about once a millisecond and notes when the answering pod
changes. A mode may add a `kernel_check` (what it installed, e.g. a rule
count), called once after the changes, outside every timed window.

For N Services (10 endpoints each), one run of the daemon ("programming"
run, the daemon's default periods plus the mode's flags) measures:
- full sync: daemon spawned -> first answer through the Service IP (so it
  includes interpreter start, reading the manifests and the first apply);
- network-programming latency, `changes` times, `gap` s plus a random
  jitter (0-1 s, so writes fall at any phase of the source's 1 s poll) apart:
  the measured Service's only endpoint moves from pod A to pod B (or back)
  by an atomic rewrite of its own manifest file (temp file + os.replace);
  latency = first answer from the new pod - the moment before the write;
- idle CPU: the daemon's utime+stime over a window with nothing changing
  (the default --sync-period of 30 s, so one periodic sync per 30 s).
A second, fresh daemon ("soak" run, with `soak_flags` added: by default
--sync-period 200ms --min-sync-period 100ms) measures:
- the cost of a sync with nothing to do: the durations the daemon logs for
  "sync=partial ... changed=0" over a window, and its CPU meanwhile;
- memory: VmRSS after the first sync, then every `rss_every` partial syncs
  (counted from its log) while the target flips once a second (the
  manifest source polls every second), until `soak` partial syncs; then
  the data path is checked again.

Each run gets its own namespace, "node" (lo up; a veth pair, both ends inside,
one holding the node IP 192.168.200.11 and the two pods 10.244.1.2 (pod-a)
and 10.244.1.3 (pod-b), each with an echo server on :8080; the default
route points onto it, so a Service IP without rules times out), made through netplane.sandbox and
removed with everything in it, also on failure and SIGTERM. Nothing touches
the host namespace.

Needs root. `benchmarks/proxy_programming.py` is the command line.
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from netplane.bench import results
from netplane.bench.machine import describe
from netplane.bench.proxy.stats import percentile

ENDPOINTS = 10
# The fillers' endpoints spread over 10 nodes, one in ten on this one (node1), as in a
# 10-node cluster: this node's endpoints get their own chains in iptables' compact layout.
FILLER_NODES = 10
NODE_NAME, NODE_IP = "node1", "192.168.200.11"
CLUSTER_CIDR = "10.244.0.0/16"
TARGET = "zz-target"
TARGET_IP, TARGET_PORT, POD_PORT = "10.96.255.254", 80, 8080
PODS = {"pod-a": "10.244.1.2", "pod-b": "10.244.1.3"}
FILLER_FILE, TARGET_FILE = "services.json", f"{TARGET}.json"
PROBE = Path(__file__).with_name("probe.py")

# the daemon's log line after each sync (netplane/proxy/proxier.py, Proxier._after_sync)
SYNC_LINE = re.compile(r'msg="sync done" sync=(full|partial) duration_ms=([\d.]+)(?: changed=(\d+))?')


@dataclass(frozen=True)
class Mode:
    """A proxy mode as the benchmark sees it: `--mode name` plus flags.
    kernel_check(sandbox, netns_path) -> dict describes what the mode
    installed; it is optional and never timed."""
    name: str
    flags: tuple[str, ...] = ()
    kernel_check: Callable | None = None

    def describe(self) -> dict:
        return {"mode": self.name, "flags": list(self.flags)}


@dataclass
class Params:
    netplane: str                            # the `netplane` executable under test
    changes: int = 10
    gap: float = 2.0                         # s between a change's answer and the next write, at least
    jitter: float = 1.0                      # plus uniform [0, jitter) s: the source polls once a second,
                                             # and writes at a fixed distance from it would lock to its phase
    soak: int = 1000                         # partial syncs in the soak run (0: no soak run)
    soak_flags: tuple[str, ...] = ("--sync-period", "200ms", "--min-sync-period", "100ms")
    soak_change_interval: float = 1.0        # the manifest source polls once a second
    rss_every: int = 100
    idle_window: float = 30.0                # s, the programming run's idle-CPU window
    idle_sync_window: float = 10.0           # s, the soak run's window of empty syncs
    probe_interval: float = 0.001
    probe_timeout: float = 0.05
    start_timeout: float = 1200.0            # s for the first answer (a 10k full sync takes minutes)
    change_timeout: float = 120.0
    soak_timeout: float = 3600.0
    cleanup: bool = True                     # `netplane proxy --cleanup` before the namespace goes
    python: str = sys.executable             # runs the prober and the echo servers
    keep_temp: bool = False


# -- pure parts: manifests, statistics, /proc, logs, report ---------------------------

def filler_ip(i: int) -> str:
    """Cluster IP of filler i: 10.96.0.1 ... (never the target's 10.96.255.254)."""
    return f"10.{96 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"


def filler_endpoint(e: int) -> tuple[str, str]:
    """(IP, node) of filler endpoint e: outside the real pods, on node1 (this one) to node10."""
    return f"10.{100 + e // 62500}.{e // 250 % 250}.{e % 250 + 2}", f"node{1 + e % FILLER_NODES}"


def filler_objects(n: int) -> list[dict]:
    """The N-1 filler Services and their EndpointSlices (N counts the target)."""
    from netplane.proxy import build as b

    out = []
    for i in range(n - 1):
        name = f"svc{i:05d}"
        eps = [b.endpoint(*filler_endpoint(i * ENDPOINTS + k)) for k in range(ENDPOINTS)]
        out += [b.service(name, filler_ip(i), [{"name": "http", "port": TARGET_PORT}]),
                b.endpoint_slice(name, eps, [{"name": "http", "port": POD_PORT}])]
    return out


def target_objects(pod: str) -> list[dict]:
    """The measured Service, its one endpoint on pod `pod` of this node."""
    from netplane.proxy import build as b

    return [b.service(TARGET, TARGET_IP, [{"name": "http", "port": TARGET_PORT}]),
            b.endpoint_slice(TARGET, [b.endpoint(PODS[pod], NODE_NAME)], [{"name": "http", "port": POD_PORT}])]


def as_list(objects: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": objects}


def atomic_write_json(path: Path, obj) -> None:
    """Write as kubectl and editors do: a hidden temp file (the manifest
    source skips dotfiles), then rename over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")))
    os.replace(tmp, path)


def write_manifests(directory: Path, n: int, pod: str = "pod-a") -> Path:
    """The fillers in one List file, the target in its own; returns the target's path."""
    atomic_write_json(directory / FILLER_FILE, as_list(filler_objects(n)))
    target = directory / TARGET_FILE
    atomic_write_json(target, as_list(target_objects(pod)))
    return target


def other(pod: str) -> str:
    return next(p for p in PODS if p != pod)


def summary(values: Sequence[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "min": min(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "max": max(values), "mean": sum(values) / len(values)}


def parse_sync_lines(text: str) -> list[dict]:
    """The daemon's sync log lines: {"full": bool, "ports": changed ports
    (None for a full sync), "ms": duration}."""
    out = []
    for m in SYNC_LINE.finditer(text):
        full = m.group(1) == "full"
        out.append({"full": full, "ports": None if full else int(m.group(3)), "ms": float(m.group(2))})
    return out


def cpu_ticks(stat: str) -> int:
    """utime + stime from /proc/PID/stat (fields 14 and 15; comm may hold spaces)."""
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(status: str) -> int:
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    if not m:
        raise ValueError("no VmRSS (the process has exited?)")
    return int(m.group(1))


def cpu_percent(ticks: int, seconds: float, hz: int) -> float:
    """Share of one core."""
    return 100.0 * ticks / hz / seconds if seconds > 0 else 0.0


def growth_percent(samples: Sequence[Sequence[float]]) -> float | None:
    """(last - first) / first of [(syncs, MB), ...]."""
    if len(samples) < 2:
        return None
    return 100.0 * (samples[-1][1] - samples[0][1]) / samples[0][1]


def daemon_argv(netplane: str, mode: Mode, manifests: Path, log_file: Path, extra: Sequence[str] = ()) -> list[str]:
    return [netplane, "proxy", "--mode", mode.name, "--manifests", str(manifests), "--node-name", NODE_NAME,
            "--node-ip", NODE_IP, "--cluster-cidr", CLUSTER_CIDR, "--healthz-bind-address", "127.0.0.1:10256",
            "--metrics-bind-address", "127.0.0.1:10249", "--log-file", str(log_file), *mode.flags, *extra]


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


TABLE = ["| mode | services | full sync s | change p50 ms | p90 ms | max ms | idle sync ms (p50) | idle CPU % "
         "| RSS first MB | RSS soak start MB | RSS after soak MB | soak partial syncs | growth in soak % |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


def table_row(r: dict) -> str:
    lat = r.get("changes", {}).get("summary", {})
    soak = r.get("soak") or {}
    rss = soak.get("rss_mb") or []
    idle = (r.get("idle_syncs") or {}).get("summary", {})
    mode = (f"{r['build']}: " if r.get("build") else "") + r["mode"] + (" " + " ".join(r["flags"]) if r.get("flags") else "")
    return (f"| {mode} | {r['services']:,} | {_fmt(r.get('full_sync_s'), '.1f')} | {_fmt(lat.get('p50'), ',.0f')} "
            f"| {_fmt(lat.get('p90'), ',.0f')} | {_fmt(lat.get('max'), ',.0f')} | {_fmt(idle.get('p50'), ',.1f')} "
            f"| {_fmt(r.get('idle', {}).get('cpu_pct'), '.1f')} | {_fmt(soak.get('rss_first_mb'), '.1f')} "
            f"| {_fmt(rss[0][1] if rss else None, '.1f')} | {_fmt(soak.get('rss_last_mb'), '.1f')} "
            f"| {_fmt(soak.get('partial_syncs'), ',')} "
            f"| {_fmt(soak.get('growth_pct'), '+.1f')} |")


def render_markdown(report: dict, title: str = "Network programming through the running proxy daemon") -> str:
    m, p = report["machine"], report["params"]
    lines = [f"# {title}", "",
             f"{report['when']}, {m['cpus']} CPUs, kernel {m['kernel']}, {m.get('iptables', '')}; "
             f"`{m.get('netplane', '?')}` ({m.get('tree', '?')}).", "",
             *TABLE, *[table_row(r) for r in report["results"]], ""]
    lines += ratio_lines(report["results"])
    lines += [f"N Services of {ENDPOINTS} endpoints each (the fillers' endpoints over {FILLER_NODES} nodes, one in "
              f"{FILLER_NODES} on the measured one), plus the measured "
              f"Service {TARGET} ({TARGET_IP}:{TARGET_PORT} -> :{POD_PORT}) whose one endpoint moves between two "
              "local pods. Full sync: daemon spawned -> first answer through the Service IP. Change: the "
              f"moment before an atomic rewrite of the target's manifest -> first answer from the other pod "
              f"({p['changes']} changes, {p['gap']:g} s + random 0-{p.get('jitter', 0):g} s apart, "
              f"prober every {p['probe_interval'] * 1e3:g} ms); "
              "it includes the manifest source noticing the write (inotify now; a 1 s poll before). "
              "Idle CPU: the daemon's share of one core "
              f"over {p['idle_window']:g} s with nothing changing, default periods. Idle sync: the durations the "
              "daemon logs for 'sync=partial ... changed=0' in a second daemon run with "
              f"`{' '.join(p['soak_flags'])}`, over {p['idle_sync_window']:g} s; the soak then counts that run's "
              "partial syncs (empty or not) while the target flips once a second. RSS first: 1 s after that run's "
              "first sync; soak start: after the empty-sync window; growth in soak: from the soak's first "
              "sample to its last. All samples are in the JSON.", ""]
    for r in report["results"]:
        lines.append(f"- {r.get('build', '') + ' ' if r.get('build') else ''}{r['mode']} {r['services']:,}: "
                     "change latencies (ms) "
                     + ", ".join(f"{x:,.0f}" for x in r.get("changes", {}).get("latency_ms", [])))
        synced = r.get("changes", {}).get("sync_ms", [])
        if synced:
            lines.append("  daemon's logged partial syncs meanwhile (ms): " + ", ".join(f"{x:,.0f}" for x in synced))
        if r.get("kernel"):
            lines.append(f"  kernel: {json.dumps(r['kernel'])}")
        for note in r.get("notes", []):
            lines.append(f"  note: {note}")
    return "\n".join(lines) + "\n"


RATIOS = (("full sync", lambda r: r.get("full_sync_s")),
          ("change p50", lambda r: r.get("changes", {}).get("summary", {}).get("p50")),
          ("idle sync p50", lambda r: (r.get("idle_syncs") or {}).get("summary", {}).get("p50")),
          ("RSS after soak", lambda r: (r.get("soak") or {}).get("rss_last_mb")))


def ratio_lines(results: list[dict]) -> list[str]:
    """With two builds measured side by side: the later one's numbers over the first's."""
    builds = list(dict.fromkeys(r.get("build") for r in results if r.get("build")))
    if len(builds) < 2:
        return []
    first, last = builds[0], builds[-1]
    lines = [f"Ratios, {last} / {first} (below 1: {last} is faster or smaller), measured in this one run:", "",
             "| mode | services | " + " | ".join(name for name, _ in RATIOS) + " |",
             "|---|---|" + "---|" * len(RATIOS)]
    for r in results:
        if r.get("build") != last:
            continue
        base = next((b for b in results if b.get("build") == first and b["mode"] == r["mode"]
                     and b["services"] == r["services"]), None)
        if base is None:
            continue
        cells = [_ratio(get(r), get(base)) for _, get in RATIOS]
        lines.append(f"| {r['mode']} | {r['services']:,} | " + " | ".join(cells) + " |")
    return lines + [""]


def _ratio(value, base) -> str:
    return f"{value / base:.3f}" if value is not None and base else "-"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = []
    for x, r in enumerate(results):
        lat = r.get("changes", {}).get("latency_ms", [])
        labels.append(f"{r.get('build') or r['mode']}\n{r['services']:,}")
        a.plot([x] * len(lat), lat, "o", alpha=0.6, color=f"C{x}")
        if lat:
            a.plot([x - 0.2, x + 0.2], [percentile(lat, 50)] * 2, "-", color="black")
    a.set_xticks(range(len(results)), labels)
    a.set_xlim(-0.6, len(results) - 0.4)
    a.set_ylabel("file write -> new pod answers, ms"), a.set_ylim(bottom=0)
    a.set_title("network-programming latency (bar: p50)", fontsize=10)
    for x, r in enumerate(results):
        rss = (r.get("soak") or {}).get("rss_mb", [])
        if rss:
            b.plot([s for s, _ in rss], [mb for _, mb in rss], "o-", color=f"C{x}",
                   label=f"{r.get('build') or r['mode']} {r['services']:,}")
    peak = max((mb for r in results for _, mb in (r.get("soak") or {}).get("rss_mb", [])), default=1.0)
    b.set_xlabel("partial syncs in the soak"), b.set_ylabel("daemon VmRSS, MB"), b.set_ylim(0, peak * 1.15)
    b.set_title("memory over the soak", fontsize=10)
    if any((r.get("soak") or {}).get("rss_mb") for r in results):
        b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict, out: Path, name: str) -> dict[str, Path]:
    return results.write(out, name, report, render_markdown, plot)


# -- the live parts: node namespace, echo servers, prober, daemon -------------------------

class LogTail:
    """The daemon's log file, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines = path, 0, []

    def read(self) -> list[dict]:
        """Sync lines written since the last read."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        cut = data.rfind(b"\n") + 1                  # whole lines only
        self.offset += cut
        new = parse_sync_lines(data[:cut].decode(errors="replace"))
        self.lines += new
        return new

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


class Prober:
    """`probe.py watch` inside the namespace; collects (monotonic time, state)."""

    def __init__(self, sandbox, netns: str, params: Params, preexec=None) -> None:
        self.events: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self.sandbox = sandbox
        self.proc = sandbox.spawn(netns, [params.python, str(PROBE), "watch", TARGET_IP, str(TARGET_PORT),
                                          "--interval", str(params.probe_interval),
                                          "--timeout", str(params.probe_timeout)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_clean_env(),
                                  preexec_fn=preexec)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            t, _, state = line.strip().partition(" ")
            with self._cond:
                self.events.append((float(t), state))
                self._cond.notify_all()
        with self._cond:
            self.events.append((float("nan"), "!exited"))
            self._cond.notify_all()

    def wait(self, wanted: Callable[[str], bool], after: float, timeout: float,
             alive: Callable[[], bool] = lambda: True) -> tuple[float, str]:
        """The first event at or after `after` whose state is wanted."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, state in self.events:
                    if state == "!exited":
                        raise RuntimeError("the prober exited")
                    if t >= after and wanted(state):
                        return t, state
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no wanted answer within {timeout:.0f} s; last: {self.events[-1:]}")
                if not alive():
                    raise RuntimeError("the daemon exited")
                self._cond.wait(min(left, 0.5))

    def last(self) -> tuple[float, str] | None:
        with self._cond:
            return self.events[-1] if self.events else None

    def stop(self) -> None:
        self.sandbox.stop(self.proc)


class Daemon:
    """The proxy daemon, spawned in the namespace as a user would start it."""

    def __init__(self, sandbox, netns: str, argv: list[str], log_file: Path, stderr_file: Path) -> None:
        self.sandbox, self.log, self.stderr_file = sandbox, LogTail(log_file), stderr_file
        with open(stderr_file, "wb") as err:
            self.spawned = time.monotonic()
            self.proc = sandbox.spawn(netns, argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                      env=_clean_env())
        self.pid = self.proc.pid             # nsenter execs the command: same pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        return rss_kib(Path(f"/proc/{self.pid}/status").read_text()) / 1024

    def cpu_ticks(self) -> int:
        return cpu_ticks(Path(f"/proc/{self.pid}/stat").read_text())

    def why_dead(self) -> str:
        err = self.stderr_file.read_text(errors="replace")[-2000:] if self.stderr_file.exists() else ""
        return f"daemon exited with {self.proc.returncode}: {err.strip()}\nlog:\n{self.log.tail()}"

    def stop(self) -> int:
        return self.sandbox.stop(self.proc, timeout=60)


def _clean_env() -> dict:
    # the daemon under test must import its own tree, not the harness's
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


class Node:
    """One node namespace with two local pods and their echo servers."""

    def __init__(self, sandbox, params: Params, preexec=None) -> None:
        self.sandbox = sandbox
        self.netns = sandbox.netns("node")
        run = lambda *argv: sandbox.run(self.netns, list(argv))   # noqa: E731
        # a veth pair with both ends in the namespace (this kernel has no dummy module)
        run("ip", "link", "add", "pods", "type", "veth", "peer", "name", "pods-peer")
        run("ip", "link", "set", "pods-peer", "up")
        run("ip", "link", "set", "pods", "up")
        run("ip", "addr", "add", f"{NODE_IP}/24", "dev", "pods")
        for ip in PODS.values():
            run("ip", "addr", "add", f"{ip}/32", "dev", "pods")
        # without rules a Service IP leads onto the veth and times out (nobody answers ARP for it)
        run("ip", "route", "add", "default", "dev", "pods", "src", NODE_IP)
        for name, ip in PODS.items():
            proc = sandbox.spawn(self.netns, [params.python, str(PROBE), "echo", "--bind", ip, "--port",
                                              str(POD_PORT), "--name", name],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_clean_env(),
                                 preexec_fn=preexec)
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"echo server {name} did not start")


@contextmanager
def node_environment(mode: Mode, work: Path):
    """What a mode needs of the node beyond its namespace: the eBPF mode
    balances the sockets of one cgroup, so the run's node processes (pods'
    echo servers, the prober) join a cgroup of the run's own, and the
    programs and maps are pinned in a bpffs of its own. Yields the mode with
    its flags, and the processes' preexec_fn; removed afterwards."""
    if mode.name != "ebpf":
        yield mode, None
        return
    from netplane.lab import cgroups

    group = os.path.join(cgroups.ROOT, f"netplane-bench-{os.getpid()}-{work.name}")
    os.makedirs(group)
    pin = cgroups.mount_bpffs(str(work / "bpf"))
    try:
        yield replace(mode, flags=mode.flags + ("--ebpf-cgroup-path", group, "--ebpf-pin-path",
                                                os.path.join(pin, "node"))), cgroups.joiner(group)
    finally:
        cgroups.unmount_bpffs(pin)
        cgroups.remove_cgroup(group, time.monotonic() + 5)


def _settle(seconds: float) -> None:
    time.sleep(seconds)


def _wait_first_answer(prober: Prober, daemon: Daemon, params: Params) -> float:
    t, _ = prober.wait(lambda s: s in PODS, daemon.spawned, params.start_timeout, daemon.alive)
    return t - daemon.spawned


def programming_run(mode: Mode, n: int, params: Params, work: Path, say=print) -> dict:
    """Full sync, `changes` programming latencies and idle CPU, default periods."""
    from netplane.sandbox import Sandbox

    manifests = work / "manifests-a"
    manifests.mkdir()
    target = write_manifests(manifests, n)
    log_file = work / "daemon-a.log"
    hz = os.sysconf("SC_CLK_TCK")
    result: dict = {}
    with node_environment(mode, work) as (mode, preexec), Sandbox() as sb:
        node = Node(sb, params, preexec)
        prober = Prober(sb, node.netns, params, preexec)
        prober.wait(lambda s: True, 0, 10)                      # running before the daemon starts
        daemon = Daemon(sb, node.netns, daemon_argv(params.netplane, mode, manifests, log_file), log_file,
                        work / "daemon-a.stderr")
        try:
            result["full_sync_s"] = _wait_first_answer(prober, daemon, params)
        except Exception as err:
            raise RuntimeError(f"{err}\n{daemon.why_dead()}") from err
        _settle(0.5)                      # the log line follows the kernel's answer
        result["rss_after_first_sync_mb"] = daemon.rss_mb()
        logged = [x for x in daemon.log.read() if x["full"]]
        result["full_sync_logged_ms"] = logged[0]["ms"] if logged else None
        say(f"  full sync {result['full_sync_s']:.1f} s (the daemon logged {result['full_sync_logged_ms']} ms)")

        pod, latencies = "pod-a", []
        last_answer = prober.last()[0]
        rng = random.Random(n)
        for i in range(params.changes):
            _settle(max(0.0, last_answer + params.gap + rng.uniform(0, params.jitter) - time.monotonic()))
            pod = other(pod)
            written = time.monotonic()
            atomic_write_json(target, as_list(target_objects(pod)))
            try:
                last_answer, _ = prober.wait(lambda s, want=pod: s == want, written, params.change_timeout,
                                             daemon.alive)
            except Exception as err:
                raise RuntimeError(f"change {i + 1}: {err}\n{daemon.why_dead()}") from err
            latencies.append((last_answer - written) * 1e3)
            say(f"  change {i + 1}/{params.changes}: {latencies[-1]:,.0f} ms")
        _settle(params.gap)
        synced = [x["ms"] for x in daemon.log.read() if not x["full"] and x["ports"]]
        result["changes"] = {"latency_ms": latencies, "summary": summary(latencies), "sync_ms": synced,
                             "sync_summary": summary(synced)}
        result["rss_after_changes_mb"] = daemon.rss_mb()
        prober.stop()                     # its connections are not the daemon's idle cost
        if mode.kernel_check:
            result["kernel"] = mode.kernel_check(sb, node.netns)
        _settle(2.0)
        daemon.log.read()
        c0, w0 = daemon.cpu_ticks(), time.monotonic()
        _settle(params.idle_window)
        c1, w1 = daemon.cpu_ticks(), time.monotonic()
        idle_syncs = [x["ms"] for x in daemon.log.read() if not x["full"] and x["ports"] == 0]
        result["idle"] = {"window_s": w1 - w0, "cpu_pct": cpu_percent(c1 - c0, w1 - w0, hz),
                          "sync_ms": idle_syncs, "rss_mb": daemon.rss_mb()}
        say(f"  idle: {result['idle']['cpu_pct']:.2f} % CPU over {w1 - w0:.0f} s, syncs {idle_syncs} ms")
        if not daemon.alive():
            raise RuntimeError(daemon.why_dead())
        daemon.stop()
        result["cleanup_s"] = _cleanup(sb, node.netns, mode, params, manifests)
        result["log_errors"] = _errors(log_file)
    return result


def soak_run(mode: Mode, n: int, soak: int, params: Params, work: Path, say=print) -> dict:
    """Idle-sync cost and memory over `soak` partial syncs, a fresh daemon with soak_flags."""
    from netplane.sandbox import Sandbox

    manifests = work / "manifests-b"
    manifests.mkdir()
    target = write_manifests(manifests, n)
    log_file = work / "daemon-b.log"
    hz = os.sysconf("SC_CLK_TCK")
    result: dict = {"flags": list(params.soak_flags), "target": soak}
    with node_environment(mode, work) as (mode, preexec), Sandbox() as sb:
        node = Node(sb, params, preexec)
        prober = Prober(sb, node.netns, params, preexec)
        prober.wait(lambda s: True, 0, 10)
        daemon = Daemon(sb, node.netns, daemon_argv(params.netplane, mode, manifests, log_file, params.soak_flags),
                        log_file, work / "daemon-b.stderr")
        try:
            result["full_sync_s"] = _wait_first_answer(prober, daemon, params)
        except Exception as err:
            raise RuntimeError(f"{err}\n{daemon.why_dead()}") from err
        prober.stop()
        _settle(1.0)
        result["rss_first_mb"] = daemon.rss_mb()
        say(f"  soak run: full sync {result['full_sync_s']:.1f} s, RSS {result['rss_first_mb']:.1f} MB")

        daemon.log.read()
        c0, w0 = daemon.cpu_ticks(), time.monotonic()
        _settle(params.idle_sync_window)
        c1, w1 = daemon.cpu_ticks(), time.monotonic()
        empty = [x["ms"] for x in daemon.log.read() if not x["full"] and x["ports"] == 0]
        idle = {"window_s": w1 - w0, "cpu_pct": cpu_percent(c1 - c0, w1 - w0, hz), "sync_ms": empty,
                "summary": summary(empty)}
        say(f"  empty syncs: {len(empty)} in {w1 - w0:.0f} s, p50 {_fmt(idle['summary'].get('p50'), '.1f')} ms, "
            f"{idle['cpu_pct']:.1f} % CPU")

        if soak:
            pod, pushed, count, samples = "pod-a", 0, 0, [(0, daemon.rss_mb())]
            started = time.monotonic()
            next_push, deadline = started, started + params.soak_timeout
            while count < soak and time.monotonic() < deadline:
                if not daemon.alive():
                    raise RuntimeError(f"soak: {daemon.why_dead()}")
                now = time.monotonic()
                if now >= next_push:
                    pod = other(pod)
                    atomic_write_json(target, as_list(target_objects(pod)))
                    pushed += 1
                    next_push = now + params.soak_change_interval
                for line in daemon.log.read():
                    if not line["full"]:
                        count += 1
                        if count % params.rss_every == 0:
                            samples.append((count, daemon.rss_mb()))
                            say(f"  soak: {count} partial syncs, RSS {samples[-1][1]:.1f} MB")
                time.sleep(0.05)
            if samples[-1][0] != count:
                samples.append((count, daemon.rss_mb()))
            carried = sum(1 for x in daemon.log.lines if not x["full"] and x["ports"])
            result.update(partial_syncs=count, changes_pushed=pushed, syncs_with_changes=carried,
                          seconds=time.monotonic() - started, complete=count >= soak, rss_mb=samples,
                          rss_last_mb=samples[-1][1], growth_pct=growth_percent(samples),
                          growth_from_first_sync_pct=100 * (samples[-1][1] - result["rss_first_mb"])
                          / result["rss_first_mb"])
            # still programming after the soak? The data path answers from the last pod written.
            prober = Prober(sb, node.netns, params, preexec)
            _settle(params.soak_change_interval + 1)
            t, _ = prober.wait(lambda s, want=pod: s == want, 0, params.change_timeout, daemon.alive)
            result["answers_after_soak"] = pod
            prober.stop()
        if not daemon.alive():
            raise RuntimeError(daemon.why_dead())
        daemon.stop()
        result["idle_syncs"] = idle
        result["cleanup_s"] = _cleanup(sb, node.netns, mode, params, manifests)
        result["log_errors"] = _errors(log_file)
    return result


def _cleanup(sb, netns: str, mode: Mode, params: Params, manifests: Path) -> float | None:
    """`netplane proxy --cleanup` (the namespace's deletion would drop the
    rules anyway; a mode may leave things that outlive it)."""
    if not params.cleanup:
        return None
    t = time.monotonic()
    argv = [params.netplane, "proxy", "--mode", mode.name, "--cleanup", "--node-name", NODE_NAME,
            "--node-ip", NODE_IP, "--cluster-cidr", CLUSTER_CIDR, *mode.flags]
    done = sb.run(netns, argv, check=False, timeout=600, env=_clean_env())
    if done.returncode:
        raise RuntimeError(f"cleanup failed: {done.stderr.decode(errors='replace')[-1000:]}")
    return time.monotonic() - t


def _errors(log_file: Path) -> list[str]:
    try:
        return [line for line in log_file.read_text(errors="replace").splitlines() if "level=error" in line][:20]
    except FileNotFoundError:
        return []


def measure(mode: Mode, n: int, params: Params, soak: int | None = None, say=print) -> dict:
    """Both runs for one mode and size; one result row."""
    soak = params.soak if soak is None else soak
    work = Path(tempfile.mkdtemp(prefix=f"np-bench-{mode.name}-{n}-"))
    result = {**mode.describe(), "services": n, "endpoints_per_service": ENDPOINTS, "load_before": _loadavg()}
    try:
        say(f"{mode.name}, {n:,} services: programming run")
        result.update(programming_run(mode, n, params, work, say))
        if soak or params.idle_sync_window:
            say(f"{mode.name}, {n:,} services: soak run ({soak} partial syncs)")
            b = soak_run(mode, n, soak, params, work, say)
            result["idle_syncs"] = b.pop("idle_syncs")
            result["soak"] = b
        result["load_after"] = _loadavg()
    finally:
        if params.keep_temp:
            say(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


# -- kernel checks (optional, per mode) -------------------------------------------------

def iptables_check(sb, netns: str) -> dict:
    """What iptables mode installed: NP- rules and chains in the nat and filter tables."""
    text = sb.run(netns, ["iptables-save"]).stdout.decode()
    return {"rules": sum(1 for line in text.splitlines() if line.startswith("-A NP-")),
            "chains": sum(1 for line in text.splitlines() if line.startswith(":NP-"))}


def nftables_check(sb, netns: str) -> dict:
    """What nftables mode installed: chains, rules and map or set elements in its tables."""
    objects = json.loads(sb.run(netns, ["nft", "-j", "list", "ruleset"]).stdout.decode())["nftables"]
    ours = [o for o in objects if any(v.get("table") == "netplane" for v in o.values() if isinstance(v, dict))]
    count = lambda kind: sum(1 for o in ours if kind in o)
    return {"chains": count("chain"), "rules": count("rule"),
            "elements": sum(len(o.get("set", o.get("map", {})).get("elem", [])) for o in ours)}


def ipvs_check(sb, netns: str) -> dict:
    """What the IPVS mode installed: virtual and real servers (ipvsadm)."""
    text = sb.run(netns, ["ipvsadm", "-Ln"]).stdout.decode()
    lines = [line.split() for line in text.splitlines()]
    return {"virtual_servers": sum(1 for w in lines if w and w[0] in ("TCP", "UDP", "SCTP", "FWM")),
            "real_servers": sum(1 for w in lines if w and w[0] == "->" and w[1] != "RemoteAddress:Port")}


KERNEL_CHECKS = {"iptables": iptables_check, "nftables": nftables_check, "ipvs": ipvs_check}


def mode(name: str, flags: Sequence[str] = ()) -> Mode:
    return Mode(name, tuple(flags), KERNEL_CHECKS.get(name))


# -- the whole report ---------------------------------------------------------------

def _loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def machine(netplane: str) -> dict:
    info = describe(Path(netplane).resolve().parent.parent.parent)          # <tree>/.venv/bin/netplane
    info["netplane"] = netplane
    return info


def run(modes: Sequence[Mode], sizes: Sequence[int], params: Params, soaks: Sequence[int] | None = None,
        say=print, builds: dict[str, str] | None = None) -> dict:
    """Every mode at every size; with `builds` (label -> netplane binary),
    each build in turn at each size, side by side in this one run."""
    soaks = list(soaks) if soaks else [params.soak] * len(sizes)
    report = {"benchmark": "proxy_programming", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(params.netplane),
              "params": {**{k: v for k, v in asdict(params).items() if k not in ("python", "keep_temp")},
                         "soak_flags": list(params.soak_flags), "sizes": list(sizes), "soaks": soaks},
              "results": []}
    if builds:
        report["machine"]["builds"] = {label: machine(path).get("tree", path) for label, path in builds.items()}
    for m in modes:
        for n, soak in zip(sizes, soaks):
            for label, path in (builds or {"": params.netplane}).items():
                if label:
                    say(f"build {label}: {path}")
                row = measure(m, n, replace(params, netplane=path), soak, say)
                report["results"].append({**row, "build": label} if label else row)
    return report
