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

Traffic from other machines (tc_lb.c) has keys of its own (SCOPE_EXTERNAL):
under a Local policy it may use only this node's endpoints, where sockets
on the node use every one. Its backend comes from the port's Maglev table:
the plan holds each table's inputs (size, endpoints, ids), and the applier
renders the table itself (maglev.table, in Cython) as it writes it, so a
plan never holds 64 KB per Service. A digest per table, kept in the kernel,
lets a full sync skip every table that is already right.
"""
import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

from netplane import fastpath
from netplane.gcpause import cyclic_gc_paused
from netplane.proxy.ebpf import entries as e
from netplane.proxy.ebpf import maglev
from netplane.proxy.ebpf.context import Context
from netplane.proxy.model import PortName
from netplane.proxy.policy import DROP, PortPolicy

PROTO = {"TCP": 6, "UDP": 17}          # SCTP is not served: its checksum cannot be patched in flight
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
    endpoints: tuple             # ((address bytes, port, local), ...): slot 1, 2, ...

    @property
    def where(self) -> tuple:
        return self.addr, self.port, self.proto, self.scope


class Table(NamedTuple):
    """A port's Maglev table, as its inputs: the applier renders it."""
    size: int
    endpoints: tuple             # as in Group, in the external group's order
    ids: tuple = ()              # their backend ids, once taken


class Share(NamedTuple):
    groups: tuple[Group, ...]
    table: Table | None          # for traffic from other machines (None: no endpoint, or not exposed)
    ranges: tuple                # loadBalancerSourceRanges (netaddr networks) for its LB IPs


def port_share(policy: PortPolicy, ctx: Context) -> Share:
    """What this port gets: sockets on this node (a pod, or the node
    itself), and traffic from other machines (SCOPE_EXTERNAL)."""
    p = policy.port
    proto = PROTO.get(p.protocol)
    if proto is None:
        return Share((), None, ())
    groups = []

    def serve(addr: bytes, port: int, scope: int, eps: tuple, flags: int = 0) -> None:
        flags |= e.FLAG_DROP if not eps and policy.refusal == DROP else 0
        groups.append(Group(addr, port, proto, scope, flags, p.affinity_timeout, eps))

    def endpoints(chosen) -> tuple:
        return tuple((e.address(ep.address), ep.port, ep.node == ctx.node) for ep in chosen)

    for ip in p.cluster_ips:
        serve(e.address(ip), p.port, 0, endpoints(policy.internal))
    # dialled from inside the node, external addresses reach what pods and the node reach
    # through them: every endpoint under a Local policy (the short-circuit), else the external ones
    external = endpoints(policy.external)      # converted once: the socket keys, the external keys, the table
    outside = endpoints(policy.cluster or policy.local) if p.external_local else external
    if not policy.has_any:
        outside = ()
    for ip in p.external_ips + p.load_balancer_ips:
        serve(e.address(ip), p.port, 0, outside)
    if p.node_port:
        serve(e.ANY[ctx.family], p.node_port, e.SCOPE_NODEPORT, outside)
    table = None
    if p.external_ips or p.load_balancer_ips or p.node_port:
        table = _external(policy, ctx, serve, external)
    return Share(tuple(groups), table, policy.firewall if p.load_balancer_ips else ())


def _external(policy: PortPolicy, ctx: Context, serve, external: tuple) -> Table | None:
    """The keys traffic from other machines looks up, and their table."""
    p = policy.port
    size = maglev.table_size(len(external), ctx.maglev_size, ctx.maglev_compact)
    flags = (e.FLAG_LOCAL if p.external_local else 0) | maglev.size_class(size) << e.LUT_SHIFT
    firewall = e.FLAG_FIREWALL if policy.firewall else 0
    for ip in p.external_ips:
        serve(e.address(ip), p.port, e.SCOPE_EXTERNAL, external, flags)
    for ip in p.load_balancer_ips:
        serve(e.address(ip), p.port, e.SCOPE_EXTERNAL, external, flags | firewall)
    if p.node_port:
        serve(e.ANY[ctx.family], p.node_port, e.SCOPE_EXTERNAL | e.SCOPE_NODEPORT, external, flags)
    return Table(size, external) if external else None


@dataclass
class Updates:
    """One sync's writes, in the order they are applied:
    1. new backends, 2. slots, Maglev tables and source ranges written,
    3. masters written, 4. masters deleted, 5. slots, source ranges and
    tables deleted, 6. backends deleted; and the node-port addresses (a
    full sync's)."""
    backends: dict[bytes, bytes] = field(default_factory=dict)
    slots: dict[bytes, bytes] = field(default_factory=dict)
    tables: dict[int, Table] = field(default_factory=dict)          # port id -> its table
    ranges: dict[bytes, bytes] = field(default_factory=dict)
    masters: dict[bytes, bytes] = field(default_factory=dict)
    masters_deleted: list[bytes] = field(default_factory=list)
    slots_deleted: list[bytes] = field(default_factory=list)
    ranges_deleted: list[bytes] = field(default_factory=list)
    tables_deleted: dict[int, int] = field(default_factory=dict)    # port id -> the size it had
    backends_deleted: list[bytes] = field(default_factory=list)
    nodeports: dict[bytes, bytes] = field(default_factory=dict)
    nodeports_deleted: list[bytes] = field(default_factory=list)
    # sockets to destroy: UDP ones whose backend left their Service (where, endpoint), and
    # TCP ones whose backend no Service uses any more (endpoint); see sockets.py
    left: list[tuple] = field(default_factory=list)
    gone: list[tuple] = field(default_factory=list)

    def empty(self) -> bool:
        return not any((self.backends, self.slots, self.tables, self.ranges, self.masters, self.masters_deleted,
                        self.slots_deleted, self.ranges_deleted, self.tables_deleted, self.backends_deleted,
                        self.nodeports, self.nodeports_deleted))

    def steps(self) -> list[tuple[str, str, object]]:
        """The writes in their order, as (map, "update" or "delete", entries):
        what every applier runs, the kernel's and the fakes' alike."""
        return [("backends", "update", self.backends), ("services", "update", self.slots),
                ("tables", "update", self.tables), ("source_ranges", "update", self.ranges),
                ("services", "update", self.masters), ("services", "delete", self.masters_deleted),
                ("services", "delete", self.slots_deleted), ("source_ranges", "delete", self.ranges_deleted),
                ("tables", "delete", self.tables_deleted), ("backends", "delete", self.backends_deleted),
                ("nodeports", "update", self.nodeports), ("nodeports", "delete", self.nodeports_deleted)]


@dataclass
class Plan:
    context: Context
    shares: dict[PortName, tuple]           # port -> its groups
    tables: dict[PortName, Table]           # port -> the Maglev table the kernel holds for it
    digests: dict[int, bytes]               # port id -> digest value, as maglev_digests holds
    ranges: dict[PortName, frozenset]       # port -> its source_ranges keys
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
    if any(installed.get(name) for name in ("services", "backends", "digests", "source_ranges")):
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

    def my_id(key: bytes) -> bool:
        return (int.from_bytes(key, "little") >= ID_BASE[6]) == (family == 6)
    return {"services": {k: v for k, v in installed.get("services", {}).items() if mine(k)},
            "backends": {k: v for k, v in installed.get("backends", {}).items() if mine(v)},
            "nodeports": {k: v for k, v in installed.get("nodeports", {}).items() if mine(k)},
            "digests": {k: v for k, v in installed.get("digests", {}).items() if my_id(k)},
            "source_ranges": {k: v for k, v in installed.get("source_ranges", {}).items()
                              if e.family(e.parse_range_key(k)[1]) == family}}


def _adopt(ctx: Context, installed: dict) -> Plan:
    """A full compile starts from what the kernel holds (read back from the
    pinned maps), keeping its backend ids, so a restart rewrites only what
    changed and a live slot never names a reused id."""
    backends = dict(installed.get("backends", {}))
    ids = {e.parse_backend(value): int.from_bytes(key, "little") for key, value in backends.items()}
    services = dict(installed.get("services", {}))
    base = ID_BASE[ctx.family]
    plan = Plan(ctx, {}, {}, dict(installed.get("digests", {})), {}, {}, {}, services, backends, {}, set(), ids,
                {i: 0 for i in ids.values()}, [], [], base,
                max(ids.values(), default=base - 1) + 1, Updates())
    # the port ids the kernel's masters hold (the affinity map is keyed by them)
    plan.next_port_id = max((e.parse_value(v)[3] for k, v in services.items() if e.parse_key(k)[4] == 0),
                            default=base - 1) + 1
    return plan


def _port(plan: Plan, name: PortName, share: Share | None) -> None:
    """Move one port from its old groups to `share` (None: the port is gone),
    and rewrite every group whose owner or content that changes; then its
    table and source ranges."""
    groups = share.groups if share is not None else None
    old = plan.shares.pop(name, None) or ()
    if groups is not None:
        plan.shares[name] = groups
        if name not in plan.port_ids:
            plan.port_ids[name] = _port_id(plan, groups)
            plan.taken.add(plan.port_ids[name])
    new = {g.where: g for g in groups or ()}
    for g in old:
        if g.where not in new:
            plan.claims[g.where].discard(name)
    for where in new:
        plan.claims.setdefault(where, set()).add(name)
    for where in {g.where for g in old} | set(new):
        _rewrite(plan, where)
    _table(plan, name, share.table if share is not None else None)
    _ranges(plan, name, share.ranges if share is not None else ())
    if share is None:
        plan.taken.discard(plan.port_ids.pop(name, None))


def _table(plan: Plan, name: PortName, wanted: Table | None) -> None:
    """Write the port's Maglev table where its inputs changed (or the kernel's
    digest differs): only this port's table is recomputed. The table holds
    its backend ids (taken before the old ones are released)."""
    held = plan.tables.pop(name, None)
    port_id = plan.port_ids.get(name)
    if wanted is not None:
        wanted = wanted._replace(ids=tuple(_take(plan, wanted.endpoints)))
        plan.tables[name] = wanted
        value = e.digest_value(digest(wanted, plan.context.maglev_seed), maglev.size_class(wanted.size))
        key = port_id.to_bytes(4, "little")
        old = plan.digests.get(key)
        if old != value:
            if old is not None and e.parse_digest(old)[1] != maglev.size_class(wanted.size):
                plan.updates.tables_deleted[port_id] = maglev.SIZES[e.parse_digest(old)[1]]   # another class's map
            plan.updates.tables[port_id] = wanted
            plan.digests[key] = value
    if held is not None:
        _release_endpoints(plan, held.endpoints)
    if wanted is None and port_id is not None:
        _drop_table(plan, port_id.to_bytes(4, "little"))


def _drop_table(plan: Plan, key: bytes) -> None:
    old = plan.digests.pop(key, None)
    if old is not None:
        port_id = int.from_bytes(key, "little")
        plan.updates.tables.pop(port_id, None)
        plan.updates.tables_deleted[port_id] = maglev.SIZES[e.parse_digest(old)[1]]


def digest(table: Table, seed: int) -> int:
    """What a table is made of, in 8 bytes: a table whose digest the kernel
    holds is not written again (a restart, a periodic full sync)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{table.size} {seed} ".encode())
    for (addr, port, _), backend_id in sorted(zip(table.endpoints, table.ids)):
        h.update(maglev.name(addr, port) + backend_id.to_bytes(4, "little"))
    return int.from_bytes(h.digest(), "little")


def _ranges(plan: Plan, name: PortName, networks: tuple) -> None:
    port_id = plan.port_ids.get(name)
    keys = frozenset(e.range_key(port_id, n) for n in networks) if networks else frozenset()
    held = plan.ranges.pop(name, frozenset())
    if keys:
        plan.ranges[name] = keys
    for key in sorted(keys - held):
        plan.updates.ranges[key] = b"\x01"
    for key in sorted(held - keys):
        plan.updates.ranges.pop(key, None)
        plan.updates.ranges_deleted.append(key)


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
    tables = {plan.port_ids[name].to_bytes(4, "little") for name in plan.tables}
    for key in sorted(set(installed.get("digests", {})) - tables):
        _drop_table(plan, key)
    held_ranges = set().union(*plan.ranges.values()) if plan.ranges else set()
    plan.updates.ranges_deleted += sorted(set(installed.get("source_ranges", {})) - held_ranges)
    plan.updates.ranges = {k: v for k, v in plan.updates.ranges.items() if k not in installed.get("source_ranges", {})}
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
    _release_endpoints(plan, group.endpoints if group else ())


def _release_endpoints(plan: Plan, endpoints: tuple) -> None:
    for endpoint in endpoints:
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
