"""The proxy's core loop: source -> snapshot -> views -> backend.

Theory of operation. The source calls `changed(kind)` from its own thread;
that only counts the change (metrics, health) and asks the SyncLoop for a
sync. The SyncLoop calls `sync(full)` on its thread, never more often than
its minimum interval, so a burst of changes costs one sync. A sync:
1. takes the source's current objects (nothing happens before the first
   complete read);
2. parses them into a Snapshot, compares it with the last synced one to
   learn which service ports changed (all of them, for a full sync);
3. recomputes the per-family views of the changed ports only;
4. hands views and changed names to the backend, which compiles and applies.
The last synced snapshot and views are replaced only after the backend
succeeds, so a failed sync is retried from the same baseline (as a full
sync, by the SyncLoop's rules).
"""
import logging
import threading
import time

from netplane.proxy.backend import Backend
from netplane.proxy.health import HealthState
from netplane.proxy.metrics import ProxyMetrics
from netplane.proxy.state import Snapshot, changed, snapshot
from netplane.proxy.syncloop import Schedule, SyncLoop
from netplane.proxy.views import family_views

log = logging.getLogger("netplane.proxy")


class Proxier:
    def __init__(self, source, backend: Backend, metrics: ProxyMetrics | None = None,
                 health: HealthState | None = None, schedule: Schedule | None = None) -> None:
        self.source, self.backend = source, backend
        self.metrics = metrics or ProxyMetrics()
        self.health = health or HealthState(timeout=2 * (schedule or Schedule()).full_interval)
        self.loop = SyncLoop(self.sync, schedule)
        self.synced: Snapshot | None = None
        self.views: dict[int, dict] = {}
        self._pending = {"Service": 0, "EndpointSlice": 0}   # changes not yet in the kernel
        self._pending_lock = threading.Lock()                # the source's thread and the sync's
        self._skipped: dict[str, str] = {}
        source.on_change = self.changed

    def changed(self, kind: str) -> None:
        with self._pending_lock:
            self._pending[kind] = self._pending.get(kind, 0) + 1
            self._publish_pending()
        self.health.queued()
        self.loop.request()

    def sync(self, full: bool) -> None:
        with self._pending_lock:       # before reading: a change after this stays pending
            pending = dict(self._pending)
        objects = self.source.objects()
        if objects is None:
            log.info("waiting for the source's first complete read")
            return
        started = time.monotonic()
        new = snapshot(*objects)
        self._report_skipped(new.skipped)
        names = None if full or self.synced is None else changed(self.synced.ports, new.ports)
        views = {f: family_views(new.ports, f, self.backend.settings.node, self.views.get(f), names)
                 for f in self.backend.settings.families}
        try:
            self.backend.sync(views, names)
        except Exception:
            self.metrics.sync_failures.inc()
            raise
        self.synced, self.views = new, views
        self._after_sync(pending, started, names)

    def _after_sync(self, pending: dict, started: float, names) -> None:
        elapsed = time.monotonic() - started
        with self._pending_lock:
            for kind, count in pending.items():     # changes that arrived during the sync stay pending
                self._pending[kind] -= count
            self._publish_pending()
            caught_up = not any(self._pending.values())
        self.metrics.sync_duration.observe(elapsed)
        self.metrics.last_sync.set_to_current_time()
        if caught_up:
            self.health.updated()
        what = "full sync" if names is None else f"partial sync of {len(names)} service port(s)"
        log.info("%s done in %.1f ms: %d service port(s)", what, elapsed * 1000, len(self.synced.ports))

    def _publish_pending(self) -> None:
        self.metrics.pending_services.set(self._pending.get("Service", 0))
        self.metrics.pending_endpoints.set(self._pending.get("EndpointSlice", 0))

    def _report_skipped(self, skipped: dict[str, str]) -> None:
        for what, why in skipped.items():
            if self._skipped.get(what) != why:
                log.warning("skipping %s: %s", what, why)
        self._skipped = dict(skipped)

    def run(self) -> None:
        """Sync until stop(); runs on the caller's thread."""
        self.loop.run()

    def stop(self) -> None:
        self.loop.stop()
