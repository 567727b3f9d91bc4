"""Reflector: mirror one API collection into memory and keep it current.

Theory of operation (the list-then-watch protocol of client-go's reflector):

    LIST   -> every object, and the collection's resourceVersion (rv) at that moment
    WATCH  -> from that rv: ADDED / MODIFIED / DELETED events, and BOOKMARKs
              that only advance the rv; each event's rv is remembered
    end    -> the server ends every watch after timeoutSeconds: watch again from
              the last rv, which misses nothing and costs no relist
    410    -> the rv fell out of the server's history (etcd compaction), as an
              HTTP 410 or an ERROR event: only a fresh LIST can catch up; it
              replaces the cache as a whole, so objects deleted meanwhile vanish
    error  -> connection refused or dropped, 5xx, ...: log one line, back off
              (exponential, jittered), then watch again (or list if never listed)

Errors never touch the cache: while the API is unreachable, consumers keep
programming the data plane from the last good state, as kube-proxy does.
Consumers hear of changes in one of two ways, on the reflector's thread (so
they must be quick and must not modify the objects):
- `on_events` gets the list of per-object Changes: one per watch event, and
  for a (re)list the difference between the old cache and the new one. Its
  cost follows the change, not the collection (the proxy's trackers).
- `on_change` gets a copy of the whole cache after every change (the agent's
  node source, where the collection is small).
A `field_selector` (e.g. "metadata.name=node-1": kube-proxy watches its own
Node so) narrows both the list and the watch to the objects it matches.
"""
import json
import logging
import random
import threading
import time
from collections.abc import Callable

from netplane.kube import client
from netplane.kube.changes import Change, diff
from netplane.kube.client import ApiError, Resource

log = logging.getLogger("netplane.kube")


class Gone(Exception):
    """The rv we watch from is older than the server's history: relist."""


class Reflector:
    def __init__(self, api, resource: Resource, on_change: Callable[[dict[str, dict]], None] | None = None, *,
                 watch_timeout: int = 300, backoff_initial: float = 0.2, backoff_max: float = 30.0,
                 name: str | None = None, on_events: Callable[[list[Change]], None] | None = None,
                 field_selector: str | None = None):
        self.api, self.resource, self.on_change, self.on_events = api, resource, on_change, on_events
        self._selector = [("fieldSelector", field_selector)] if field_selector else []
        self.watch_timeout = watch_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.name = name or resource.plural
        self.synced = threading.Event()
        self.lists = self.watches = self.relists_after_gone = 0     # successful lists, opened watches
        self._cache: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._rv: str | None = None
        self._delay = backoff_initial
        self._last_gone = 0.0
        self.last_error: str | None = None     # why the API is not answering, until it does again
        self._stopping = threading.Event()
        self._response = None      # the request in flight, for stop() to cut
        self._thread: threading.Thread | None = None

    def start(self) -> "Reflector":
        self._thread = threading.Thread(target=self._run, name=f"reflector-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        _abort(self._response)
        if self._thread:
            self._thread.join(timeout)

    def snapshot(self) -> dict[str, dict]:
        """A copy of the cache; the objects in it are shared, so read them only."""
        with self._lock:
            return dict(self._cache)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._watch() if self._rv else self._list()
            except Gone as e:
                log.info("%s: watch expired (%s), relisting", self.name, e)
                self.relists_after_gone += 1
                self._rv = None
                if time.monotonic() - self._last_gone < 1.0:   # 410 after 410: do not hammer the API
                    self._back_off("repeated 410")
                self._last_gone = time.monotonic()
            except Exception as e:     # the API or the network failed: keep the cache, retry later
                if self._stopping.is_set():
                    break
                self._back_off(client.one_line(e))

    def _back_off(self, reason: str) -> None:
        self.last_error = reason
        pause = random.uniform(self._delay / 2, self._delay)
        log.warning("%s: %s, retrying in %.2fs", self.name, reason, pause)
        self._stopping.wait(pause)
        self._delay = min(self._delay * 2, self.backoff_max)

    def _list(self) -> None:
        self._response = client.request(self.api, "GET", self.resource.path(), self._selector)
        try:
            body = client.read_json(self._response)
        finally:
            self._response = None
        cache = {self.resource.key(obj): self._typed(obj) for obj in body.get("items") or []}
        with self._lock:
            old, self._cache = self._cache, cache
        self._rv = body["metadata"]["resourceVersion"]
        self.lists += 1
        self._delay, self.last_error = self.backoff_initial, None
        self.synced.set()
        self._changed(diff(self.resource.kind, old, cache))

    def _typed(self, obj: dict) -> dict:
        # list items come without kind/apiVersion, watched objects with them: make them alike
        if self.resource.kind:
            obj.setdefault("kind", self.resource.kind)
            obj.setdefault("apiVersion", self.resource.api_version)
        return obj

    def _watch(self) -> None:
        query = [("watch", "true"), ("resourceVersion", self._rv), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", self.watch_timeout), *self._selector]
        # the server ends the watch at timeoutSeconds; the read timeout only catches a dead peer
        response = client.request(self.api, "GET", self.resource.path(), query,
                                  timeout=(client.REQUEST_TIMEOUT[0], self.watch_timeout + 30))
        self._response, finished = response, False
        try:
            if self._stopping.is_set():    # stop() came before _response was set: it cut nothing
                return
            if response.status != 200:
                error = client.error_from(response.status, response.data)
                raise Gone(str(error)) if response.status == 410 else error
            self.watches += 1
            started, events = time.monotonic(), 0
            for line in _lines(response):
                self._apply(json.loads(line))
                events += 1
                self._delay = self.backoff_initial   # healthy only once events flow
            finished = True
        finally:
            self._response = None
            if not finished:    # a half-read stream cannot carry another request
                response.close()
            response.release_conn()
        log.debug("%s: watch ended at rv %s", self.name, self._rv)
        if not events and time.monotonic() - started < 1.0:   # an API that closes watches at once
            self._back_off("the watch closed at once")

    def _apply(self, event: dict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", "410 Gone"))
            raise ApiError(obj.get("code") or 500, obj.get("message", "error event"))
        change = None
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            key = self.resource.key(self._typed(obj))
            with self._lock:
                old = self._cache.get(key)
                if kind == "DELETED":
                    self._cache.pop(key, None)
                    change = Change(self.resource.kind, key, old, None) if old is not None else None
                else:
                    self._cache[key] = obj
                    change = Change(self.resource.kind, key, old, obj) if old != obj else None
        elif kind != "BOOKMARK":
            log.warning("%s: ignoring a watch event of type %r", self.name, kind)
        self._rv = obj.get("metadata", {}).get("resourceVersion") or self._rv
        if change is not None:
            self._changed([change])

    def _changed(self, changes: list[Change]) -> None:
        try:
            if self.on_events is not None:
                self.on_events(changes)
            if self.on_change is not None:
                self.on_change(self.snapshot())
        except Exception:   # a consumer's bug must not stall the mirror or pass for an API error
            log.exception("%s: a consumer of its changes failed", self.name)


def _lines(response):
    """The newline-delimited JSON of a watch, one line at a time, as each chunk arrives."""
    buffer = b""
    for chunk in response.stream(amt=None):
        *lines, buffer = (buffer + chunk).split(b"\n")
        yield from (line for line in lines if line.strip())


def _abort(response) -> None:
    """Unblock a read of `response` in another thread (urllib3 >= 2.3 shuts the socket down)."""
    try:
        response.shutdown()
    except (AttributeError, ValueError, RuntimeError, OSError):
        pass    # no response, or already finished and released
