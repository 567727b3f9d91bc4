"""All service ports of one family -> the eBPF maps' entries, and the
ordered updates that get the kernel there.

The compile is pure: the previous plan (the mirror of what the maps hold)
and the changed ports are its inputs; a full compile diffs against what
the applier read back from the pinned maps, so a restart rewrites only
what changed. Each port's share is computed by port_share() from its
policy alone; ids are given here:
- a port id per service port (the affinity map's key), stable while the
  port exists;
- a backend id per endpoint (address, port), shared by every port that
  uses it. An id freed by this sync is not handed out again until the
  next one, so no slot can name an id that meanwhile means another
  endpoint.

Updates are ordered so that a lookup never sees a slot naming a missing
backend, nor a master counting a missing slot (see Updates).
"""
from dataclasses import dataclass, field
from typing import NamedTuple

from netplane import fastpath
from netplane.gcpause import cyclic_gc_paused
from netplane.proxy.ebpf import entries as e
from netplane.proxy.ebpf.context import Context
from netplane.proxy.model import PortName
from netplane.proxy.policy import DROP, PortPolicy

PROTO = {"TCP": 6, "UDP": 17}          # the socket hooks see TCP and UDP; SCTP is left to the rules
# Both families' proxies share the maps: their backend and port ids come from
# apart ranges (bit 31 is the programs' own marker, see sock_lb.c's pick()).
ID_BASE = {4: 1, 6: 1 << 30}
_entries = fastpath.load("ebpf_entries")     # group_entries(): entries.py's, or ext/ebpf_entries.pyx's


class Group(NamedTuple):
    """One lookup key's entries (a master and its slots), before ids."""
    addr: bytes
    port: int
    proto: int
    scope: int
    flags: int
    affinity: int
    endpoints: tuple             # ((address bytes, port), ...): slot 1, 2, ...

    @property
    def where(self) -> tuple:
        return self.addr, self.port, self.proto, self.scope


def port_share(policy: PortPolicy, ctx: Context) -> tuple[Group, ...]:
    """What a socket on this node (a pod, or the node itself) gets for this port."""
    p = policy.port
    proto = PROTO.get(p.protocol)
    if proto is None:
        return ()
    groups = []

    def serve(addr: bytes, port: int, scope: int, endpoints) -> None:
        eps = tuple((e.address(ep.address), ep.port) for ep in endpoints)
        flags = e.FLAG_DROP if not eps and policy.refusal == DROP else 0
        groups.append(Group(addr, port, proto, scope, flags, p.affinity_timeout, eps))

    for ip in p.cluster_ips:
        serve(e.address(ip), p.port, 0, policy.internal)
    # dialled from inside the node, external addresses reach what pods and the node reach
    # through them: every endpoint under a Local policy (the short-circuit), else the external ones
    outside = (policy.cluster or policy.local) if p.external_local else policy.external
    if not policy.has_any:
        outside = ()
    for ip in p.external_ips + p.load_balancer_ips:
        serve(e.address(ip), p.port, 0, outside)
    if p.node_port:
        serve(e.ANY[ctx.family], p.node_port, e.SCOPE_NODEPORT, outside)
    return tuple(groups)


@dataclass
class Updates:
    """One sync's writes, in the order they are applied:
    1. new backends, 2. slots written, 3. masters written, 4. masters
    deleted, 5. slots deleted, 6. backends deleted; and the node-port
    addresses (a full sync's)."""
    backends: dict[bytes, bytes] = field(default_factory=dict)
    slots: dict[bytes, bytes] = field(default_factory=dict)
    masters: dict[bytes, bytes] = field(default_factory=dict)
    masters_deleted: list[bytes] = field(default_factory=list)
    slots_deleted: list[bytes] = field(default_factory=list)
    backends_deleted: list[bytes] = field(default_factory=list)
    nodeports: dict[bytes, bytes] = field(default_factory=dict)
    nodeports_deleted: list[bytes] = field(default_factory=list)
    # sockets to destroy: UDP ones whose backend left their Service (where, endpoint), and
    # TCP ones whose backend no Service uses any more (endpoint); see sockets.py
    left: list[tuple] = field(default_factory=list)
    gone: list[tuple] = field(default_factory=list)

    def empty(self) -> bool:
        return not any((self.backends, self.slots, self.masters, self.masters_deleted, self.slots_deleted,
                        self.backends_deleted, self.nodeports, self.nodeports_deleted))

    def steps(self) -> list[tuple[str, str, object]]:
        """The writes in their order, as (map, "update" or "delete", entries):
        what every applier runs, the kernel's and the fakes' alike."""
        return [("backends", "update", self.backends), ("services", "update", self.slots),
                ("services", "update", self.masters), ("services", "delete", self.masters_deleted),
                ("services", "delete", self.slots_deleted), ("backends", "delete", self.backends_deleted),
                ("nodeports", "update", self.nodeports), ("nodeports", "delete", self.nodeports_deleted)]


@dataclass
class Plan:
    context: Context
    shares: dict[PortName, tuple]           # port -> its groups
    claims: dict[tuple, set]                # group's where -> the ports claiming it
    written: dict[tuple, tuple]             # where -> (the owner port, its Group) the maps hold
    services: dict[bytes, bytes]            # what the services map holds
    backends: dict[bytes, bytes]            # id key -> backend value
    port_ids: dict[PortName, int]
    taken: set[int]                         # port_ids' values
    backend_ids: dict[tuple, int]           # (address, port) -> id
    backend_users: dict[int, int]           # id -> slots naming it
    freed: list[int]                        # ids freed by this sync: free again after it
    free: list[int]                         # ids free to hand out
    next_port_id: int
    next_backend_id: int
    updates: Updates


def compile_family(policies: dict[PortName, PortPolicy], ctx: Context, previous: Plan | None = None,
                   changed: set[PortName] | None = None, installed: dict | None = None) -> Plan:
    """Full when `previous` or `changed` is None: then against what the maps
    hold (`installed`: {"services": {key: value}, "backends": ..., "nodeports":
    ...}, read back from the pinned maps). A partial compile consumes `previous`."""
    with cyclic_gc_paused():         # a compile makes no cycles; a collection would only rescan
        if previous is None or changed is None:
            return _full(policies, ctx, _own_family(installed or {}, ctx.family))
        return _partial(policies, ctx, previous, changed)


def _full(policies, ctx: Context, installed: dict) -> Plan:
    plan = _adopt(ctx, installed)
    for name in sorted(policies):
        _port(plan, name, port_share(policies[name], ctx))
    if installed.get("services") or installed.get("backends"):
        _stale_entries(plan, installed)
    plan.updates.nodeports = {e.nodeport_key(e.address(a)): bytes(4) for a in ctx.nodeports}
    plan.updates.nodeports_deleted = sorted(set(installed.get("nodeports", ())) - set(plan.updates.nodeports))
    return plan


def _partial(policies, ctx: Context, plan: Plan, changed: set[PortName]) -> Plan:
    plan.free += plan.freed
    plan.freed = []
    plan.updates = Updates()
    for name in sorted(changed):
        _port(plan, name, port_share(policies[name], ctx) if name in policies else None)
    return plan


def _own_family(installed: dict, family: int) -> dict:
    """What the maps hold for this family's proxy (both families' share the
    maps): service and node-port keys by their address, backends as well."""
    def mine(key: bytes) -> bool:
        return e.family(key[:16]) == family
    return {"services": {k: v for k, v in installed.get("services", {}).items() if mine(k)},
            "backends": {k: v for k, v in installed.get("backends", {}).items() if mine(v)},
            "nodeports": {k: v for k, v in installed.get("nodeports", {}).items() if mine(k)}}


def _adopt(ctx: Context, installed: dict) -> Plan:
    """A full compile starts from what the kernel holds (read back from the
    pinned maps), keeping its backend ids, so a restart rewrites only what
    changed and a live slot never names a reused id."""
    backends = dict(installed.get("backends", {}))
    ids = {e.parse_backend(value): int.from_bytes(key, "little") for key, value in backends.items()}
    services = dict(installed.get("services", {}))
    base = ID_BASE[ctx.family]
    plan = Plan(ctx, {}, {}, {}, services, backends, {}, set(), ids, {i: 0 for i in ids.values()}, [], [], base,
                max(ids.values(), default=base - 1) + 1, Updates())
    # the port ids the kernel's masters hold (the affinity map is keyed by them)
    plan.next_port_id = max((e.parse_value(v)[3] for k, v in services.items() if e.parse_key(k)[4] == 0),
                            default=base - 1) + 1
    return plan


def _port(plan: Plan, name: PortName, share: tuple | None) -> None:
    """Move one port from its old groups to `share` (None: the port is gone),
    and rewrite every group whose owner or content that changes."""
    old = plan.shares.pop(name, None) or ()
    if share is not None:
        plan.shares[name] = share
        if name not in plan.port_ids:
            plan.port_ids[name] = _port_id(plan, share)
            plan.taken.add(plan.port_ids[name])
    new = {g.where: g for g in share or ()}
    for g in old:
        if g.where not in new:
            plan.claims[g.where].discard(name)
    for where in new:
        plan.claims.setdefault(where, set()).add(name)
    for where in {g.where for g in old} | set(new):
        _rewrite(plan, where)
    if share is None:
        plan.taken.discard(plan.port_ids.pop(name, None))


def _rewrite(plan: Plan, where: tuple) -> None:
    """Make the maps hold, for one key, the group of its owner: the first of
    its claimants in name order (two Services on one external IP and port),
    as a full compile would choose."""
    claimants = plan.claims.get(where)
    owner = min(claimants) if claimants else None
    group = next(g for g in plan.shares[owner] if g.where == where) if owner is not None else None
    held = plan.written.get(where)
    if held == (owner, group):
        return
    if not claimants:
        plan.claims.pop(where, None)
    old_group = held[1] if held else None
    new_keys = _write(plan, where, group, plan.port_ids[owner]) if group else set()
    for key in sorted(_group_keys(where, old_group) - new_keys):
        (plan.updates.masters_deleted if e.parse_key(key)[4] == 0 else plan.updates.slots_deleted).append(key)
        plan.services.pop(key, None)
    if old_group and where[2] == PROTO["UDP"]:
        kept = set(group.endpoints) if group else set()
        plan.updates.left += [(where, ep) for ep in old_group.endpoints if ep not in kept]
    _release(plan, old_group)
    if group is None:
        plan.written.pop(where, None)
    else:
        plan.written[where] = (owner, group)


def _write(plan: Plan, where: tuple, group: Group, port_id: int) -> set[bytes]:
    """The group's entries, written where they differ from what the maps hold."""
    ids = _take(plan, group.endpoints)
    entries = _entries.group_entries(*where, ids, group.flags, group.affinity, port_id)
    items = list(entries.items())                            # the slots, then the master
    held, slots = plan.services.get, plan.updates.slots
    for key, value in items[:-1]:
        if held(key) != value:
            slots[key] = value
    key, value = items[-1]
    if held(key) != value:
        plan.updates.masters[key] = value
    plan.services.update(entries)
    return set(entries)


def _group_keys(where: tuple, group: Group | None) -> set[bytes]:
    if group is None:
        return set()
    addr, port, proto, scope = where
    return {e.service_key(addr, port, proto, scope, i) for i in range(len(group.endpoints) + 1)}


def _stale_entries(plan: Plan, installed: dict) -> None:
    """After a full compile: what the kernel held that no port wants goes,
    and the backends no slot names."""
    wanted = set()
    for where, (_, group) in plan.written.items():
        wanted |= _group_keys(where, group)
    for key in sorted(set(installed.get("services", {})) - wanted):
        (plan.updates.masters_deleted if e.parse_key(key)[4] == 0 else plan.updates.slots_deleted).append(key)
        plan.services.pop(key, None)
    for endpoint, backend_id in list(plan.backend_ids.items()):
        if not plan.backend_users.get(backend_id):
            _free_backend(plan, endpoint, backend_id)


def _port_id(plan: Plan, share: tuple) -> int:
    """The id the kernel's master entry already has (a restart keeps every
    client's affinity), else a new one."""
    for g in share[:1]:
        held = plan.services.get(e.service_key(*g.where))
        if held is not None and e.parse_value(held)[3] not in plan.taken:
            return e.parse_value(held)[3]
    plan.next_port_id += 1
    return plan.next_port_id - 1


def _take(plan: Plan, endpoints: tuple) -> list[int]:
    """The backend ids of `endpoints`, each used once more (new ones made).
    One loop over a group with its lookups bound: 100k times at 10k Services."""
    known, users, out = plan.backend_ids.get, plan.backend_users, []
    for endpoint in endpoints:
        backend_id = known(endpoint)
        if backend_id is None:
            backend_id = _new_backend(plan, endpoint)
        users[backend_id] = users.get(backend_id, 0) + 1
        out.append(backend_id)
    return out


def _new_backend(plan: Plan, endpoint: tuple) -> int:
    if plan.free:
        backend_id = plan.free.pop()
    else:
        backend_id = plan.next_backend_id
        plan.next_backend_id += 1
    plan.backend_ids[endpoint] = backend_id
    key, value = backend_id.to_bytes(4, "little"), e.backend(*endpoint)
    plan.backends[key] = value
    plan.updates.backends[key] = value
    return backend_id


def _release(plan: Plan, group: Group | None) -> None:
    for endpoint in group.endpoints if group else ():
        backend_id = plan.backend_ids[endpoint]
        left = plan.backend_users[backend_id] - 1
        plan.backend_users[backend_id] = left
        if not left:
            _free_backend(plan, endpoint, backend_id)


def _free_backend(plan: Plan, endpoint: tuple, backend_id: int) -> None:
    del plan.backend_ids[endpoint]
    plan.backend_users.pop(backend_id, None)
    key = backend_id.to_bytes(4, "little")
    plan.backends.pop(key, None)
    plan.updates.backends.pop(key, None)
    plan.updates.backends_deleted.append(key)
    plan.updates.gone.append(endpoint)
    plan.freed.append(backend_id)
