"""The desired proxy state: every service port with its endpoints, and what changed.

`snapshot()` turns the raw Services and EndpointSlices (from manifests or
the API) into {PortName: PortState}; an invalid object is skipped with its
reason and never hides the others. The daemon keeps the same map current
one change at a time (tracker.py); snapshot() is for one-shot reads
(`netplane compile`) and is the tracker's test oracle. `changed()`
compares two snapshots.
"""
from dataclasses import dataclass

from netplane.proxy.model import Endpoint, PortName, ServicePort
from netplane.proxy.objects import InvalidObject, Slice, endpoint_slice, service_ports


@dataclass(frozen=True)
class PortState:
    port: ServicePort
    endpoints: tuple[Endpoint, ...]     # every endpoint the slices list, sorted; categorize() chooses


@dataclass(frozen=True)
class Snapshot:
    ports: dict[PortName, PortState]
    skipped: dict[str, str]             # "Service ns/name" -> why it was skipped


def snapshot(services: list[dict], slices: list[dict]) -> Snapshot:
    skipped: dict[str, str] = {}
    parsed_slices = [s for s in (_parse(endpoint_slice, o, "EndpointSlice", skipped) for o in slices) if s]
    parsed_slices.sort(key=lambda s: (s.namespace, s.service, s.name))
    by_service = _endpoints_by_service(parsed_slices)
    ports = {}
    for obj in services:
        for port in _parse(service_ports, obj, "Service", skipped) or ():
            name = port.name
            found = by_service.get((name.namespace, name.name))
            ports[name] = PortState(port, found.get((name.port, port.protocol), ()) if found else ())
    return Snapshot(ports, skipped)


def changed(old: dict[PortName, PortState], new: dict[PortName, PortState]) -> set[PortName]:
    """Service ports added, removed or different in any way."""
    return {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}


def _parse(parse, obj, kind: str, skipped: dict):
    parsed, why = parse_or_skip(parse, obj, kind)
    if why is not None:
        skipped[why[0]] = why[1]
    return parsed


def parse_or_skip(parse, obj, kind: str):
    """(parsed, None), or (None, (label, why)) for an invalid object."""
    try:
        return parse(obj), None
    except InvalidObject as err:
        return None, (_label(obj, kind), str(err))


def _label(obj, kind: str) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if isinstance(meta, dict):
        return f"{kind} {meta.get('namespace') or 'default'}/{meta.get('name')}"
    return f"{kind} (unnamed)"


def _endpoints_by_service(slices: list[Slice]) -> dict:
    """(namespace, service) -> (port name, protocol) -> endpoints, sorted;
    `slices` in (namespace, service, name) order."""
    by_service: dict = {}
    for s in slices:
        by_service.setdefault((s.namespace, s.service), []).append(s)
    return {service: merge_slices(mine) for service, mine in by_service.items()}


def merge_slices(slices: list[Slice]) -> dict:
    """One Service's slices, in name order -> (port name, protocol) ->
    endpoints, sorted. An endpoint listed by two slices (mid-update) counts
    once; slices are visited in name order, so which copy wins does not
    depend on arrival. A slice's own endpoints come sorted and unique: most
    services have one slice per port and family, and only the others need
    merging."""
    merged = dict(slices[0].ports)
    for s in slices[1:]:
        for key, endpoints in s.ports.items():
            merged[key] = _merge(merged[key], endpoints) if key in merged else endpoints
    return merged


def _merge(first: tuple[Endpoint, ...], then: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
    unique: dict = {}
    for e in first + then:
        unique.setdefault((e.ip.version, int(e.ip), e.port), e)
    return tuple(unique[k] for k in sorted(unique))
