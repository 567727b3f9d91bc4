"""Where the proxy learns Services and EndpointSlices.

Both sources offer the same small interface:
- `on_events(changes)` is called, from the source's thread, with the
  per-object Changes it saw (an empty list means "read, nothing changed");
- `ready` says whether the first complete read was delivered, so a fresh
  proxy never mistakes "not loaded yet" for "no services" and wipes the
  rules a previous run left;
- `objects()` -> (services, slices): the current objects, for one-shot
  reads such as `netplane compile`;
- `errors` -> what is wrong with the input, for health and logs;
- start() / stop().
Both keep the last good objects when their input goes bad or away.
"""
import threading

from netplane.dirwatch import DirWatcher
from netplane.proxy.manifest_source import ManifestDir

KINDS = ("Service", "EndpointSlice")


class ManifestSource:
    """`--manifests DIR`, watched with inotify (polled only as a fallback)."""

    def __init__(self, path: str, poll: float = 1.0) -> None:
        self.dir = ManifestDir(path)
        self.on_events = lambda changes: None
        self.ready = False
        self._watcher = DirWatcher(path, self.scan, name="manifests", poll=poll)

    def scan(self) -> None:
        changes = self.dir.scan()
        if changes or not self.ready:
            self.ready = True
            self.on_events(changes)

    def start(self) -> "ManifestSource":
        self._watcher.start()
        return self

    def stop(self) -> None:
        self._watcher.stop()

    def objects(self):
        return (self.dir.objects("Service"), self.dir.objects("EndpointSlice")) if self.ready else None

    @property
    def errors(self) -> dict[str, str]:
        return self.dir.errors


class KubeSource:
    """Services and EndpointSlices from the API server, through the shared
    reflector (list + watch, relist on 410, backoff, last good cache), which
    hands over per-object changes."""

    def __init__(self, api, reflector_options: dict | None = None) -> None:
        from netplane.kube.client import ENDPOINTSLICES, SERVICES
        from netplane.kube.reflector import Reflector

        self.on_events = lambda changes: None
        options = reflector_options or {}
        self._delivered: set[str] = set()
        self._held: list = []             # changes of the kind listed first, until the other is listed
        self._lock = threading.Lock()
        self.reflectors = {
            "Service": Reflector(api, SERVICES, name="services", **options,
                                 on_events=lambda changes: self._changed("Service", changes)),
            "EndpointSlice": Reflector(api, ENDPOINTSLICES, name="endpointslices", **options,
                                       on_events=lambda changes: self._changed("EndpointSlice", changes)),
        }

    @property
    def ready(self) -> bool:
        return self._delivered == set(KINDS)

    def start(self) -> "KubeSource":
        for r in self.reflectors.values():
            r.start()
        return self

    def stop(self) -> None:
        for r in self.reflectors.values():
            r.stop()

    def _changed(self, kind: str, changes: list) -> None:
        # Services without their slices would be compiled as "no endpoints":
        # until both kinds are listed, what arrives is held, then handed over at once.
        with self._lock:
            self._delivered.add(kind)
            if not self.ready:
                self._held += changes
                return
            changes, self._held = self._held + changes, []
        self.on_events(changes)

    def objects(self):
        if not self.ready:
            return None
        return tuple(list(self.reflectors[kind].snapshot().values()) for kind in KINDS)

    @property
    def errors(self) -> dict[str, str]:
        return {f"API {kind}": r.last_error for kind, r in self.reflectors.items() if r.last_error}
