"""The agent's pod-network loop: converge the kernel on the desired state.

Level-triggered, like a Kubernetes controller: each pass reads the whole
desired state (the source's node view) and the whole observed state (the
kernel), and applies the difference. So the same pass repairs every kind
of drift: a crash half-way, a changed or removed peer, a route someone
deleted. A pass runs when the node view changes, every resync interval,
and soon after a pass that failed. A pass that finds nothing to do changes
nothing, which is why restarting the agent leaves established connections
alone. Until the source has loaded once, no pass runs at all.
"""
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from netplane import nodestate
from netplane.forwarding import ensure_forwarding
from netplane.podnet import kernel
from netplane.podnet.diff import changes
from netplane.podnet.modes import MODES
from netplane.podnet.peers import sane_peers
from netplane.podnet.plan import Settings

log = logging.getLogger("netplane.podnet")
RETRY_AFTER_FAILURE = 1.0


@dataclass
class Report:
    """The outcome of one pass, also written to the status file."""
    node: str
    mode: str
    ready: bool = False
    peers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    changes: int = 0
    at: float = 0.0              # when the pass started (epoch seconds)
    duration: float = 0.0        # how long it took (seconds)

    @property
    def succeeded(self) -> bool:
        """The pod network is set up as the source describes it (problems
        such as a skipped peer may remain; failures and not-ready may not)."""
        return self.ready and not self.failures


class Controller:
    def __init__(self, source, node_name: str, settings: Settings, state_file: str, status_file: str | None,
                 resync_interval: float = 30.0) -> None:
        self.source, self.node_name, self.settings = source, node_name, settings
        self.state_file, self.status_file = state_file, status_file
        self.resync_interval = resync_interval
        # What the agent's /healthz and /metrics read (from their own threads:
        # plain counters and one reference, replaced whole after each pass).
        self.passes = 0
        self.failed_passes = 0           # passes that hit an error (not those waiting for the source)
        self.total_changes = 0           # edits applied since the agent started
        self.last_report: Report | None = None
        self.peers: list[str] = []       # the peers the kernel is set up for (a pass that stopped early keeps them)
        self._published_state = None
        self._stop = threading.Event()
        self._last_said: dict[str, list[str]] = {}

    def run(self) -> None:
        """Loop until stop(); call from the agent's pod-network thread."""
        with IPRoute() as ipr:
            while not self._stop.is_set():
                self.source.changed.clear()
                report = self.reconcile(ipr)
                self.source.changed.wait(self.resync_interval if report.succeeded else RETRY_AFTER_FAILURE)

    def stop(self) -> None:
        self._stop.set()
        self.source.changed.set()        # wake the loop

    def reconcile(self, ipr: IPRoute) -> Report:
        report = Report(self.node_name, self.settings.mode, at=time.time())
        started = time.monotonic()
        try:
            self._reconcile(ipr, report)
        except kernel.UnderlayNotFound as err:
            report.problems.append(str(err))
        except Exception as err:       # keep the loop alive; the next pass retries
            report.failures.append(f"{type(err).__name__}: {err}")
            if report.failures != self._last_said.get("failures"):
                log.exception("pod network pass failed")
        report.duration = time.monotonic() - started
        self.passes += 1
        self.failed_passes += bool(report.failures)
        self.total_changes += report.changes
        self.last_report = report
        if report.ready:
            self.peers = report.peers
        self._say_once("problems", report.problems)
        self._say_once("failures", report.failures)
        self._write_status(report)
        return report

    def _say_once(self, what: str, messages: list[str]) -> None:
        """Log problems and failures when they change, not on every pass."""
        if messages != self._last_said.get(what):
            for message in messages:
                log.warning("pod network: %s", message)
            self._last_said[what] = messages

    def _reconcile(self, ipr: IPRoute, report: Report) -> None:
        nodes = self.source.nodes()
        if nodes is None:
            report.problems.append(f"the node source has not loaded yet{_because(self.source.error)}")
            return
        me = nodes.get(self.node_name)
        if me is None:
            report.problems.append(f"this node ({self.node_name}) is not in the node source"
                                   f"{_because(self.source.skipped.get('node ' + self.node_name))}; "
                                   "leaving the pod network as it is")
            return
        underlay = kernel.underlay_for(ipr, me.internal_ips[0])
        peers, conflicts = sane_peers(me, [n for name, n in nodes.items() if name != self.node_name], underlay)
        plan = MODES[self.settings.mode](me, peers, underlay, self.settings)
        ops = changes(plan, kernel.observe(ipr, self.settings.device))
        report.failures += kernel.apply(ipr, ops, self.settings.device)
        ensure_forwarding({c.version for c in me.pod_cidrs})
        self._publish_node_state(me, plan.pod_mtu)
        report.ready, report.peers, report.changes = True, list(plan.peers), len(ops)
        report.problems = conflicts + list(plan.problems) + self._announce(me, plan)
        report.problems += [f"{what}: {why}" for what, why in sorted(self.source.skipped.items())]
        if ops:
            log.info("pod network: %d change(s): %s", len(ops), "; ".join(_describe(op) for op in ops[:20]))

    def _publish_node_state(self, me, mtu: int) -> None:
        state = nodestate.NodeState(me.name, me.pod_cidrs, mtu)
        if state != self._published_state:
            nodestate.write(self.state_file, state)
            self._published_state = state
            log.info("node state: %s, mtu %d -> %s", ", ".join(map(str, me.pod_cidrs)), mtu, self.state_file)

    def _announce(self, me, plan) -> list[str]:
        """Publish the VTEP MAC wherever the node object lacks it (level-triggered,
        so an overwritten annotation is corrected too); a lost API only delays it."""
        if not plan.device or me.vtep_mac == plan.device.mac:
            return []
        try:
            self.source.announce(self.node_name, plan.device.mac)
        except Exception as err:
            return [f"cannot announce the VTEP MAC yet: {type(err).__name__}: {err}"]
        return []

    def _write_status(self, report: Report) -> None:
        if not self.status_file:
            return
        tmp = f"{self.status_file}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.status_file) or ".", exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(report.__dict__ | {"passes": self.passes, "failedPasses": self.failed_passes,
                                           "totalChanges": self.total_changes}, f)
            os.replace(tmp, self.status_file)
        except OSError as err:        # a status file is a report, never a reason to stop
            self._say_once("status", [f"cannot write the status file: {err}"])


def _because(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def _describe(op) -> str:
    return f"{op.action} {op.kind} {op.key}" + (f" -> {op.value}" if op.kind in ("neighbours", "fdb") else "")
