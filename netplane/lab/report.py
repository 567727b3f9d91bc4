"""`netplane lab status` and `netplane lab check`: what the lab has, and
whether every pod reaches every other pod."""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from netplane.lab.lab import Lab, _ours


def status_lines(lab: Lab) -> list[str]:
    rec = lab.record
    lines = [f"lab {rec.name}: {len(rec.nodes)} node(s), {rec.mode} mode, IPv{rec.underlay_family} underlay, "
             f"{len(rec.pods)} pod(s); {lab.dir}", "",
             f"{'node':8} {'agent':>8} {'node IPs':34} {'pod CIDRs':36} pod network"]
    for name, node in rec.nodes.items():
        agent = str(node.agent_pid) if _ours(node.agent_pid, lab.dir) else "DOWN"
        lines.append(f"{name:8} {agent:>8} {', '.join(node.internal_ips):34} {', '.join(node.pod_cidrs):36} "
                     f"{_network_summary(lab.network_status(name))}")
        lines += [f"{'':10}! {p}" for p in lab.network_status(name).get("problems", [])]
    lines += ["", f"{'pod':14} {'node':8} addresses"]
    lines += [f"{pod:14} {p.node:8} {', '.join(p.ips)}" for pod, p in rec.pods.items()]
    if rec.processes:
        lines += ["", "lab processes: " + ", ".join(
            f"{key} {pid if _ours(pid, lab.dir) else 'DOWN'}" for key, pid in sorted(rec.processes.items()))]
    return lines


def _network_summary(status: dict) -> str:
    if not status:
        return "no status yet"
    if not status.get("ready"):
        return "NOT READY"
    failed = f", {len(status['failures'])} failed edit(s)" if status.get("failures") else ""
    return f"ready, {len(status.get('peers', []))} peer(s) connected{failed}"


@dataclass(frozen=True)
class Probe:
    src: str
    dst: str
    ip: str
    ok: bool


def check(lab: Lab, workers: int = 16) -> list[Probe]:
    """Ping every pod address from every other pod, in parallel."""
    pairs = [(src, dst, ip) for src in lab.record.pods for dst, p in lab.record.pods.items() if dst != src
             for ip in p.ips]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda pair: _probe(lab, *pair), pairs))


def _probe(lab: Lab, src: str, dst: str, ip: str) -> Probe:
    ok = any(lab.run(src, ["ping", "-c1", "-W1", "-q", ip]).returncode == 0 for _ in range(2))
    return Probe(src, dst, ip, ok)


def matrix_lines(lab: Lab, probes: list[Probe]) -> list[str]:
    pods = list(lab.record.pods)
    result = {(p.src, p.dst, ":" in p.ip): p.ok for p in probes}
    width = max([len(p) for p in pods] + [9]) + 2
    lines = ["pod-to-pod reachability (ping; IPv4/IPv6, '--' is a gap)", " " * width + "".join(f"{p:>{width}}" for p in pods)]
    for src in pods:
        cells = ["·" if src == dst else "/".join(_mark(result.get((src, dst, v6))) for v6 in (False, True))
                 for dst in pods]
        lines.append(f"{src:{width}}" + "".join(f"{c:>{width}}" for c in cells))
    gaps = sum(not p.ok for p in probes)
    if not probes:
        lines.append("no pod pairs to probe: the lab needs at least two pods")
        return lines
    lines.append(f"{len(probes)} probes, all answered" if not gaps else f"{gaps} of {len(probes)} probes got no answer")
    return lines


def _mark(ok: bool | None) -> str:
    return {True: "ok", False: "--", None: "  "}[ok]
