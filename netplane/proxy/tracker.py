"""The desired proxy state, kept current one object at a time.

Theory of operation (kube-proxy's service and endpoints change trackers,
in one piece):
1. A source delivers Changes (kind, key, old, new). Only the object that
   changed is parsed: a Service into its ServicePorts, an EndpointSlice
   into a Slice. An invalid object counts as absent, and its reason is
   kept in `skipped` until it is fixed or deleted.
2. The tracker keeps what every object contributed (a Service's ports, a
   slice's endpoints) and an index of slices per Service, so a change
   re-merges the endpoints of the one or two Services it touches.
3. The persistent map `ports` (PortName -> PortState) is updated for the
   ports of those Services only. A port whose state came out different
   joins `changed`, which accumulates until the next sync takes it.
So the work per change follows the size of the change, not of the cluster.
`state.snapshot()` computes the same map from scratch: it serves full
reads (`netplane compile`) and is the tracker's test oracle.

Not thread-safe by itself: the Proxier serializes `update` (the source's
thread) and `take` (the sync's thread) with its lock.
"""
import time
from dataclasses import dataclass, field

from netplane.kube.changes import Change
from netplane.kube.fields import rfc3339_seconds
from netplane.proxy.model import PortName, ServicePort
from netplane.proxy.objects import Slice, endpoint_slice, service_ports
from netplane.proxy.state import PortState, merge_slices, parse_or_skip

TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
ServiceKey = tuple[str, str]          # (namespace, service name)


@dataclass
class Taken:
    """What a sync takes from the tracker: the ports that changed since the
    last take, and when each pending change was triggered."""
    changed: set[PortName]
    triggered: list[float]          # wall-clock times, for the network-programming latency


@dataclass
class Tracker:
    ports: dict[PortName, PortState] = field(default_factory=dict)
    skipped: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)   # (kind, key) -> (label, why)
    clock: object = time.time
    _services: dict[str, tuple[ServicePort, ...]] = field(default_factory=dict)    # object key -> its ports
    _ports_of: dict[ServiceKey, tuple[ServicePort, ...]] = field(default_factory=dict)
    _slices: dict[str, Slice] = field(default_factory=dict)                         # object key -> parsed
    _slices_of: dict[ServiceKey, dict[str, Slice]] = field(default_factory=dict)
    _changed: set[PortName] = field(default_factory=set)
    _triggered: list[float] = field(default_factory=list)

    def update(self, changes: list[Change]) -> None:
        for change in changes:
            if change.kind == "Service":
                self._service(change)
            elif change.kind == "EndpointSlice":
                self._slice(change)

    def take(self) -> Taken:
        taken = Taken(self._changed, self._triggered)
        self._changed, self._triggered = set(), []
        return taken

    def give_back(self, taken: Taken) -> None:
        """A sync that failed: its changes are pending again."""
        self._changed |= taken.changed
        self._triggered = taken.triggered + self._triggered

    def skipped_reasons(self) -> dict[str, str]:
        """label -> why, as snapshot() reports them."""
        return dict(self.skipped.values())

    # -- Services ---------------------------------------------------------------

    def _service(self, change: Change) -> None:
        ports = self._parse(service_ports, change) or ()
        old = self._services.pop(change.key, ())
        if ports:
            self._services[change.key] = ports
        for service in {_service_of(p) for p in old + ports}:
            self._set_ports_of(service, tuple(p for p in ports if _service_of(p) == service))
        self._triggered.append(self.clock())

    def _set_ports_of(self, service: ServiceKey, ports: tuple[ServicePort, ...]) -> None:
        before = self._ports_of.pop(service, ())
        if ports:
            self._ports_of[service] = ports
        kept = {p.name for p in ports}
        for gone in {p.name for p in before} - kept:
            self._drop(gone)
        self._refresh(service)

    # -- EndpointSlices -----------------------------------------------------------

    def _slice(self, change: Change) -> None:
        parsed = self._parse(endpoint_slice, change)
        old = self._slices.pop(change.key, None)
        if parsed is not None:
            self._slices[change.key] = parsed
        touched = set()
        if old is not None:
            touched.add(self._unindex(change.key, old))
        if parsed is not None:
            touched.add(self._index(change.key, parsed))
        for service in touched:
            self._refresh(service)
        self._triggered.append(_trigger_time(change.new) or self.clock())

    def _index(self, key: str, s: Slice) -> ServiceKey:
        service = (s.namespace, s.service)
        self._slices_of.setdefault(service, {})[key] = s
        return service

    def _unindex(self, key: str, s: Slice) -> ServiceKey:
        service = (s.namespace, s.service)
        mine = self._slices_of[service]
        del mine[key]
        if not mine:
            del self._slices_of[service]
        return service

    # -- the port map ---------------------------------------------------------------

    def _refresh(self, service: ServiceKey) -> None:
        """Recompute the states of one Service's ports from its slices."""
        ports = self._ports_of.get(service, ())
        if not ports:
            return
        slices = self._slices_of.get(service)
        endpoints = merge_slices(sorted(slices.values(), key=_slice_order)) if slices else {}
        for port in ports:
            state = PortState(port, endpoints.get((port.name.port, port.protocol), ()))
            if self.ports.get(port.name) != state:
                self.ports[port.name] = state
                self._changed.add(port.name)

    def _drop(self, name: PortName) -> None:
        if self.ports.pop(name, None) is not None:
            self._changed.add(name)

    def _parse(self, parse, change: Change):
        slot = (change.kind, change.key)
        self.skipped.pop(slot, None)
        if change.new is None:
            return None
        parsed, why = parse_or_skip(parse, change.new, change.kind)
        if why is not None:
            self.skipped[slot] = why
        return parsed


def _service_of(port: ServicePort) -> ServiceKey:
    return port.name.namespace, port.name.name


def _slice_order(s: Slice) -> str:
    return s.name


def _trigger_time(obj: dict | None) -> float | None:
    """The EndpointSlice controller's stamp of when the change began (kube-proxy
    measures network programming from it), or None."""
    try:
        return rfc3339_seconds(obj["metadata"]["annotations"][TRIGGER_TIME])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
