"""The proxy's core loop: source changes -> tracker -> policies -> dataplane.

Theory of operation. The source calls `changed(changes)` from its own
thread with per-object Changes; the tracker parses just those objects and
updates its map of service ports, noting which ports changed; the SyncLoop
is asked for a sync. The SyncLoop calls `sync(full)` on its thread, never
more often than its minimum interval, so a burst of changes costs one
sync. A sync:
1. does nothing before the source's first complete read;
2. takes the changed ports from the tracker (all ports, for a full sync);
3. decides the per-family policies of those ports only (policy.py);
4. hands policies and changed names to the dataplane, which compiles and applies.
Nothing in a partial sync walks the whole cluster, so its cost follows the
change. If the apply fails, the taken changes go back to the tracker and
the policies are forgotten, so the retry is a full sync that decides every
port anew from the tracker's map.

After a sync the metrics get, per family, its duration (the decision plus
the dataplane's share) under full or partial, and the Services whose Local
policy finds no local endpoint (kept as sets updated from the changed ports
only); the log line "sync done" carries the same as fields.
"""
import gc
import logging
import threading
import time

from netplane.proxy import startup
from netplane.proxy.dataplane import Dataplane
from netplane.proxy.health import HealthState
from netplane.proxy.metrics import NoLocalEndpoints, ProxyMetrics
from netplane.proxy.syncloop import Schedule, SyncLoop
from netplane.proxy.tracker import Tracker
from netplane.proxy.policy import family_policies
from netplane.proxy.service_health import HealthChecks

log = logging.getLogger("netplane.proxy")
NAMED_PORTS = 10          # a partial sync of up to this many ports names them in its log line


class Proxier:
    def __init__(self, source, dataplane: Dataplane, metrics: ProxyMetrics | None = None,
                 health: HealthState | None = None, schedule: Schedule | None = None,
                 health_checks: HealthChecks | None = None) -> None:
        self.source, self.dataplane = source, dataplane
        self.health_checks = health_checks     # healthCheckNodePort servers; None: not served
        self.metrics = metrics or ProxyMetrics()
        self.health = health or HealthState(timeout=2 * (schedule or Schedule()).full_interval)
        self.loop = SyncLoop(self.sync, schedule)
        self.tracker = Tracker()
        self.policies: dict[int, dict] = {}
        self._pending = {"Service": 0, "EndpointSlice": 0}   # changes not yet in the kernel
        self._lock = threading.Lock()                        # the source's thread and the sync's
        self._skipped: dict[str, str] = {}
        self._gc_held = False                                # hold_gc()
        self._rethink = False                                # decide every port anew at the next sync
        self._node_name_checked = False                      # startup.node_name_warning, once
        self.no_local = {f: NoLocalEndpoints() for f in dataplane.settings.families}
        if hasattr(dataplane, "report_to"):                  # the real one (tests may drive a recorder)
            dataplane.report_to(self.metrics)
        source.on_events = self.changed

    def changed(self, changes: list) -> None:
        with self._lock:
            self.tracker.update(changes)
            for change in changes:
                self._pending[change.kind] = self._pending.get(change.kind, 0) + 1
                self.metrics.changed(change.kind)
            self._publish_pending()
        self.metrics.queued(self.dataplane.settings.families)
        self.health.queued()
        self.loop.request()

    def sync(self, full: bool) -> None:
        if not self.source.ready:
            log.info("waiting for the source's first complete read")
            return
        started = time.monotonic()
        with self._lock:     # a change that arrives after this stays pending for the next sync
            full, self._rethink = full or not self.policies or self._rethink, False
            pending, taken = dict(self._pending), self.tracker.take()
            states = dict(self.tracker.ports) if full else {n: self.tracker.ports.get(n) for n in taken.changed}
            skipped = self.tracker.skipped_reasons()
        self._report_skipped(skipped)
        names = None if full else taken.changed
        policies, decided = self._decide(states, names)
        try:
            self.dataplane.sync(policies, names)
        except Exception:
            self.metrics.sync_failures.inc()
            with self._lock:
                self.tracker.give_back(taken)
            self.policies = {}     # updated in place, for a sync that did not happen: the retry decides all anew
            raise
        self.policies = policies
        if self.health_checks:
            self.health_checks.update(states, full=names is None)
        self._count_no_local(policies, names)
        self._after_sync(pending, started, names, taken.triggered, decided)
        if names is None and not self._node_name_checked:
            self._check_node_name(states)

    def set_zone(self, zone: str) -> None:
        """The Node's topology.kubernetes.io/zone changed (nodes.NodeWatch):
        topology hints now select another zone's endpoints, so every port is
        decided anew, in one full sync."""
        if zone == self.dataplane.settings.node.zone:
            return
        log.info("node zone changed; re-deciding every service port", extra={"zone": zone})
        with self._lock:
            self.dataplane.move_to_zone(zone)
            self._rethink = True
        self.loop.request()

    def _check_node_name(self, states) -> None:
        """Once, after the first full sync: endpoints name nodes, never this
        one (a wrong --hostname-override makes Local policies drop all)."""
        self._node_name_checked = True
        notice = startup.node_name_warning(states, self.dataplane.settings.node.name)
        if notice:
            notice.emit(log)

    def _decide(self, states, names) -> tuple[dict[int, dict], dict[int, float]]:
        """The per-family policies of `names` (all ports: None), and the seconds each family took."""
        policies, decided = {}, {}
        for f in self.dataplane.settings.families:
            started = time.monotonic()
            policies[f] = family_policies(states, f, self.dataplane.settings.node, self.policies.get(f), names)
            decided[f] = time.monotonic() - started
        return policies, decided

    def _count_no_local(self, policies: dict[int, dict], names) -> None:
        for family, tally in self.no_local.items():
            internal, external = tally.update(policies.get(family, {}), names)
            self.metrics.no_local_endpoints(family, internal, external)

    def _after_sync(self, pending: dict, started: float, names, triggered: list[float],
                    decided: dict[int, float]) -> None:
        elapsed = time.monotonic() - started
        with self._lock:
            for kind, count in pending.items():     # changes that arrived during the sync stay pending
                self._pending[kind] -= count
            self._publish_pending()
            caught_up = not any(self._pending.values())
        full = self.dataplane.last_full
        spent = getattr(self.dataplane, "spent", None) or {}
        for family, seconds in decided.items():     # a recorder without `spent`: the whole sync, as kube-proxy's
            family_full, applied = spent.get(family, (full, elapsed - seconds))
            self.metrics.synced(family, family_full, seconds + applied)
        self.metrics.syncs.labels("full" if full else "partial").inc()
        self.metrics.observe_programming(triggered)
        if caught_up:
            self.health.updated()
        if full:
            self._freeze()
        log.info("sync done", extra=self._sync_fields(full, elapsed, names))

    def _sync_fields(self, full: bool, elapsed: float, names) -> dict:
        """The "sync done" line's fields; a partial sync of a few ports names them."""
        fields = {"sync": "full" if full else "partial", "duration_ms": round(elapsed * 1000, 1)}
        if not full:
            fields["changed"] = len(names)
        fields["service_ports"] = len(self.tracker.ports)
        if not full and 0 < len(names) <= NAMED_PORTS:
            fields["services"] = sorted(str(n) for n in names)
        return fields

    def hold_gc(self) -> None:
        """Keep the cyclic GC off until the first full sync is in: the first
        read builds every object (at 30k Services a full collection costs
        0.8 s, and the growing heap triggers several: 0.9 s of a 1.7 s scan)."""
        if gc.isenabled():
            gc.disable()
            self._gc_held = True

    def _freeze(self) -> None:
        """What a full sync built (the tracked objects, policies, the plan's
        mirror) lives until the next one: out of the cyclic GC's sight, a full
        collection no longer rescans it (one took 1 s at 30k Services, in the
        middle of a partial sync)."""
        gc.freeze()
        if self._gc_held:
            self._gc_held = False
            gc.enable()

    def _publish_pending(self) -> None:
        self.metrics.pending_services.set(self._pending.get("Service", 0))
        self.metrics.pending_endpoints.set(self._pending.get("EndpointSlice", 0))

    def _report_skipped(self, skipped: dict[str, str]) -> None:
        for what, why in skipped.items():
            if self._skipped.get(what) != why:
                log.warning("skipping %s: %s", what, why)
        self._skipped = skipped

    def run(self) -> None:
        """Sync until stop(); runs on the caller's thread."""
        self.loop.run()

    def stop(self) -> None:
        self.loop.stop()
        if self.health_checks:
            self.health_checks.stop()
