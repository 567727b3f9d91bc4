"""Order the edits that take the kernel from what it has to what a Plan wants.

Pure: the agent's reconciler and the unit tests use it alike. The order is
what keeps traffic flowing while entries change:
  1. the VXLAN device (create, update in place, or recreate only when an
     immutable attribute such as the VNI or port changed);
  2. deletions: routes first, then FDB and neighbour entries, so no route
     ever points at a gateway the kernel would have to ARP for;
  3. additions and replacements: neighbour, FDB, then route, for the same
     reason. A replace is atomic, so a changed peer never loses its route.
Entries that are already right produce no edit, so a converged node sees
an empty list and a restarted agent disturbs nothing.
"""
from dataclasses import dataclass, replace
from typing import Any

from netplane.podnet.plan import Plan, VxlanDevice

_ENTRIES = ("routes", "fdb", "neighbours")            # deletion order; additions run reversed


@dataclass(frozen=True)
class Op:
    action: str          # create | recreate | update | delete | replace
    kind: str            # device | address | neighbours | fdb | routes
    key: Any
    value: Any = None


def changes(want: Plan, have: Plan) -> list[Op]:
    ops, have = _device_ops(want.device, have)
    for kind in _ENTRIES:
        ops += [Op("delete", kind, key, value) for key, value in _extra(getattr(want, kind), getattr(have, kind))]
    ops += [Op("delete", "address", a) for a in sorted(have.device_addresses - want.device_addresses)]
    ops += [Op("replace", "address", a) for a in sorted(want.device_addresses - have.device_addresses)]
    for kind in reversed(_ENTRIES):
        ops += [Op("replace", kind, key, value) for key, value in _missing(getattr(want, kind), getattr(have, kind))]
    return ops


def _device_ops(want: VxlanDevice | None, have_plan: Plan) -> tuple[list[Op], Plan]:
    have = have_plan.device
    if want is None and have is None:
        return [], have_plan
    if want is None:
        return [Op("delete", "device", have.name)], _without_device_entries(have_plan, have.name)
    if have is None:
        return [Op("create", "device", want.name, want)], _without_device_entries(have_plan, want.name)
    if _immutable(want) != _immutable(have):
        return [Op("recreate", "device", want.name, want)], _without_device_entries(have_plan, want.name)
    if (want.mac, want.mtu, want.up) != (have.mac, have.mtu, have.up):
        return [Op("update", "device", want.name, want)], have_plan
    return [], have_plan


def _immutable(device: VxlanDevice) -> tuple:
    return device.vni, device.port, device.local, device.underlay_index


def _without_device_entries(have: Plan, device: str) -> Plan:
    """Entries on a device that is about to go (or is new) vanish with it."""
    routes = {dst: r for dst, r in have.routes.items() if r.oif != device}
    return replace(have, device=None, device_addresses=frozenset(), neighbours={}, fdb={}, routes=routes)


def _extra(want: dict, have: dict):
    return sorted(((k, v) for k, v in have.items() if k not in want), key=_order)


def _missing(want: dict, have: dict):
    return sorted(((k, v) for k, v in want.items() if have.get(k) != v), key=_order)


def _order(item) -> tuple:
    return (str(type(item[0])), str(item[0]))
