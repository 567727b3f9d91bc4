"""Where the proxy learns Services and EndpointSlices.

Both sources offer the same small interface:
- `objects()` -> (services, slices), or None until the first complete read
  (so a fresh proxy never mistakes "not loaded yet" for "no services" and
  wipes the rules a previous run left);
- `on_change(kind)` is called (from the source's thread) whenever objects of
  that kind ("Service" or "EndpointSlice") may have changed;
- start() / stop().
Both keep the last good objects when their input goes bad or away.
"""

from netplane.polling import Poller
from netplane.proxy.manifest_source import ManifestDir

KINDS = ("Service", "EndpointSlice")


class ManifestSource(Poller):
    """`--manifests DIR`, polled every `interval` seconds."""

    def __init__(self, path: str, interval: float = 1.0) -> None:
        super().__init__(interval, "manifests")
        self.dir = ManifestDir(path)
        self.on_change = lambda kind: None
        self._loaded = False

    def poll(self) -> None:
        if self.dir.poll() or not self._loaded:
            self._loaded = True
            for kind in KINDS:
                self.on_change(kind)

    def objects(self):
        return (self.dir.objects("Service"), self.dir.objects("EndpointSlice")) if self._loaded else None

    @property
    def errors(self) -> dict[str, str]:
        return self.dir.errors


class KubeSource:
    """Services and EndpointSlices from the API server, through the shared
    reflector (list + watch, relist on 410, backoff, last good cache)."""

    def __init__(self, api, reflector_options: dict | None = None) -> None:
        from netplane.kube.client import ENDPOINTSLICES, SERVICES
        from netplane.kube.reflector import Reflector

        self.on_change = lambda kind: None
        options = reflector_options or {}
        self._caches: dict[str, dict] = {}
        self.reflectors = {
            "Service": Reflector(api, SERVICES, on_change=lambda snap: self._changed("Service", snap),
                                 name="services", **options),
            "EndpointSlice": Reflector(api, ENDPOINTSLICES, name="endpointslices",
                                       on_change=lambda snap: self._changed("EndpointSlice", snap), **options),
        }

    def start(self) -> "KubeSource":
        for r in self.reflectors.values():
            r.start()
        return self

    def stop(self) -> None:
        for r in self.reflectors.values():
            r.stop()

    def _changed(self, kind: str, snapshot: dict) -> None:
        self._caches[kind] = snapshot
        self.on_change(kind)

    def objects(self):
        # both listed *and* delivered: a reflector marks itself synced just
        # before it hands over its cache, and services without their slices
        # would be compiled as "no endpoints"
        if not all(r.synced.is_set() for r in self.reflectors.values()) or set(self._caches) != set(KINDS):
            return None
        return list(self._caches.get("Service", {}).values()), list(self._caches.get("EndpointSlice", {}).values())

    @property
    def errors(self) -> dict[str, str]:
        return {f"API {kind}": r.last_error for kind, r in self.reflectors.items() if r.last_error}
