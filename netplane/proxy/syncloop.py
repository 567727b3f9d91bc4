"""When the proxy syncs: a bounded-frequency loop, like kube-proxy's.

- A change asks for a sync; changes that arrive close together share one,
  because syncs start at least `min_interval` apart.
- At least every `sync_interval` a sync runs even without changes (a
  partial one, which checks the canary and so notices flushed tables), and
  every `full_interval` a full sync runs anyway, which repairs anything
  changed behind the proxy's back.
- A failed sync is retried after `retry_interval`, as a full sync, since
  the kernel may hold half of what was sent.
The timing rules live in Schedule, a pure state machine driven by explicit
timestamps, so they are tested without sleeping; SyncLoop runs it on a
thread with real time.
"""
import logging
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("netplane.proxy")


@dataclass
class Schedule:
    min_interval: float = 1.0
    full_interval: float = 30.0
    retry_interval: float = 1.0
    sync_interval: float | None = None  # None: same as full_interval
    last_start: float | None = None     # None: never synced, so the first sync is due at once
    last_full: float | None = None
    pending: bool = False               # a change is waiting
    failed: bool = False                # the last sync failed: the next is a full one

    def request(self) -> None:
        self.pending = True

    def next_due(self) -> float:
        """The time the next sync is due (may be in the past)."""
        if self.last_start is None:
            return float("-inf")
        if self.failed:
            return self.last_start + max(self.retry_interval, self.min_interval)
        periodic = (self.last_full if self.last_full is not None else self.last_start) + self.full_interval
        if self.sync_interval is not None:
            periodic = min(periodic, self.last_start + self.sync_interval)
        wanted = self.last_start + self.min_interval if self.pending else periodic
        return min(wanted, periodic)

    def full_due(self, now: float) -> bool:
        return self.last_full is None or self.failed or now >= self.last_full + self.full_interval

    def started(self, now: float, full: bool) -> None:
        self.last_start, self.pending = now, False
        if full:
            self.last_full = now

    def finished(self, ok: bool) -> None:
        self.failed = not ok


class SyncLoop:
    """Runs `sync(full: bool)` on its own thread when the Schedule says so."""

    def __init__(self, sync, schedule: Schedule | None = None) -> None:
        self.sync, self.schedule = sync, schedule or Schedule()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._lock = threading.Lock()

    def request(self) -> None:
        with self._lock:
            self.schedule.request()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                delay = self.schedule.next_due() - time.monotonic()
            if delay > 0:
                self._wake.wait(delay)
                self._wake.clear()
                continue
            self._sync_once()

    def _sync_once(self) -> None:
        now = time.monotonic()
        with self._lock:
            full = self.schedule.full_due(now)
            self.schedule.started(now, full)
        try:
            self.sync(full)
            ok = True
        except Exception:             # the next sync is a full one; the loop carries on
            log.exception("%s sync failed; retrying as a full sync", "full" if full else "partial")
            ok = False
        with self._lock:
            self.schedule.finished(ok)
