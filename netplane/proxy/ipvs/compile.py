"""All service ports of one family -> the IPVS plan (plan.py).

A full compile computes every port's entries and compares them with what
the kernel holds (`installed`: our virtual servers with their real
servers, and np-ipvs0's addresses, as the applier read them back); the
nftables transaction rewrites every set around IPVS.

A partial compile consumes the previous plan: it recomputes the changed
ports' entries, and only the keys they claim (or claimed) are compared,
against the plan's mirror. IPVS is never dumped then.

Two ports may claim one key (two Services on one external IP and port):
the least port holds it, as on a full compile, and when it lets go the
next one takes over.

Real servers that leave a TCP or SCTP virtual server drain: their weight
goes to 0 (no new connections), and the applier deletes them once their
connections are gone (or after ipvs.drainTimeout). UDP has no connection
to wait for: they go at once, and IPVS expires their flows
(expire_nodest_conn), so clients move.
"""
import bisect
import time
from collections import Counter

from netplane.gcpause import cyclic_gc_paused
from netplane.proxy.ipvs import names as n
from netplane.proxy.ipvs import static
from netplane.proxy.ipvs.context import Context
from netplane.proxy.ipvs.entries import Fragment, needs_mark, port_fragment
from netplane.proxy.ipvs.plan import FWMARK, Changes, Dest, Entry, Key, Plan
from netplane.proxy.model import PortName
from netplane.proxy.policy import PortPolicy

clock = time.monotonic          # the tests move it


def compile_family(policies: dict[PortName, PortPolicy], ctx: Context, previous: Plan | None = None,
                   changed: set[PortName] | None = None, installed: dict | None = None) -> Plan:
    """Full when `previous` or `changed` is None; `installed` is what the
    applier read back ({"servers": {key: (server, {dest: (weight, active,
    inactive)})}, "addresses": set}). A partial compile consumes `previous`."""
    with cyclic_gc_paused():
        if previous is None or changed is None:
            return _full(policies, ctx, installed or {})
        return _partial(policies, ctx, previous, changed)


def _empty(ctx: Context, full: bool) -> Plan:
    return Plan(ctx, {}, {}, {}, {}, {}, Counter(), Counter(), {}, Changes(ctx.family, full=full))


def _full(policies, ctx: Context, installed: dict) -> Plan:
    plan = _empty(ctx, True)
    for name in sorted(policies):
        policy = policies[name]
        mark = _allocate(plan, name) if needs_mark(policy) else 0
        fragment = port_fragment(policy, ctx, mark)
        plan.fragments[name] = fragment
        for key, entry in fragment.entries.items():
            if key in plan.claims:
                plan.claims[key].append(name)
            else:
                plan.claims[key] = [name]
                plan.entries[key] = entry
        plan.addresses.update(fragment.addresses)
        plan.hairpin.update(fragment.hairpin)
    _servers_against(plan, installed)
    _addresses_against(plan, set(installed.get("addresses", ())))
    _full_transaction(plan)
    return plan


def _servers_against(plan: Plan, everything: dict) -> None:
    """Virtual and real servers: what the entries want against what IPVS
    holds (a server of someone else's on a key we want is taken over)."""
    changes, installed = plan.changes, everything.get("servers", {})
    for key, entry in plan.entries.items():
        if entry.server is None:
            continue
        held = installed.get(key)
        if held is None:
            changes.add_servers.append((key, entry.server))
            plan.held[key] = {}
        else:
            if held[0] != entry.server:
                changes.edit_servers.append((key, entry.server))
            plan.held[key] = {dest: weight for dest, (weight, *_) in held[1].items()}
        _dests(plan, key, entry)
    for key in installed:
        if key not in plan.held and ours(key, everything):
            changes.delete_servers.append(key)


def ours(key: Key, installed: dict) -> bool:
    """Whether a virtual server the kernel holds is this mode's: on an
    np-ipvs0 address, a node-port one it recorded, or a firewall mark with
    its tag. Any other (an admin's keepalived or LVS) is never touched."""
    if key.protocol == FWMARK:
        return key.port & n.MARK_MASK == n.MARK_TAG
    return key.address in installed.get("addresses", ()) or key in installed.get("recorded", ())


def _addresses_against(plan: Plan, installed: set[str]) -> None:
    wanted = set(plan.addresses)
    plan.changes.add_addresses = sorted(wanted - installed)
    plan.changes.delete_addresses = sorted(installed - wanted)


def _full_transaction(plan: Plan) -> None:
    tx, ctx = plan.changes.nft, plan.context
    tx.base_chains = dict(static.BASE_CHAINS)
    tx.sets = static.sets(ctx)
    tx.flush_sets = list(tx.sets)
    tx.rules = static.chains(ctx)
    tx.chains = list(tx.rules)
    for key, entry in plan.entries.items():
        for name, element_key, value in _elements(key, entry):
            tx.add_elements.setdefault(name, []).append((element_key, value))
    tx.add_elements.setdefault(n.ADDRESSES, []).extend(((a,), None) for a in plan.addresses)
    tx.add_elements.setdefault(n.HAIRPIN, []).extend((pair, None) for pair in plan.hairpin)


def _partial(policies, ctx: Context, plan: Plan, changed: set[PortName]) -> Plan:
    plan.changes = Changes(ctx.family)
    touched: dict[Key, Entry | None] = {}
    addresses, hairpin = Counter(), Counter()
    for name in sorted(changed):
        old = plan.fragments.pop(name, None)
        new = _fragment(plan, name, policies.get(name), ctx)
        if new is not None:
            plan.fragments[name] = new
        if new == old:
            continue
        _reclaim(plan, name, old, new, touched)
        for fragment, sign in ((old, -1), (new, 1)):
            for a in fragment.addresses if fragment else ():
                addresses[a] += sign
            for pair in fragment.hairpin if fragment else ():
                hairpin[pair] += sign
    for key, before in touched.items():
        claimants = plan.claims.get(key)
        after = plan.fragments[claimants[0]].entries[key] if claimants else None
        if after is None:
            plan.entries.pop(key, None)
        else:
            plan.entries[key] = after
        if after != before:
            _key_changes(plan, key, before, after)
    _count_changes(plan, addresses, plan.addresses, n.ADDRESSES, lambda a: (a,), address=True)
    _count_changes(plan, hairpin, plan.hairpin, n.HAIRPIN, lambda pair: pair)
    return plan


def _fragment(plan: Plan, name: PortName, policy: PortPolicy | None, ctx: Context) -> Fragment | None:
    """The port's new fragment, with its firewall mark kept, taken or given back."""
    if policy is None or not needs_mark(policy):
        plan.marks.pop(name, None)
        return port_fragment(policy, ctx) if policy is not None else None
    return port_fragment(policy, ctx, plan.marks.get(name) or _allocate(plan, name))


def _allocate(plan: Plan, name: PortName) -> int:
    used = set(plan.marks.values())
    mark = next(n.MARK_TAG | i for i in range(1, n.MARK_IDS + 1) if n.MARK_TAG | i not in used)
    plan.marks[name] = mark
    return mark


def _reclaim(plan: Plan, name: PortName, old: Fragment | None, new: Fragment | None, touched: dict) -> None:
    for key in old.entries if old else ():
        touched.setdefault(key, plan.entries.get(key))
        claimants = plan.claims[key]
        claimants.remove(name)
        if not claimants:
            del plan.claims[key]
    for key in new.entries if new else ():
        touched.setdefault(key, plan.entries.get(key))
        bisect.insort(plan.claims.setdefault(key, []), name)


def _key_changes(plan: Plan, key: Key, before: Entry | None, after: Entry | None) -> None:
    tx, changes = plan.changes.nft, plan.changes
    old = {(s, k): v for s, k, v in _elements(key, before)} if before else {}
    new = {(s, k): v for s, k, v in _elements(key, after)} if after else {}
    for (s, k), v in old.items():
        if new.get((s, k), _GONE) != v:
            tx.delete_elements.setdefault(s, []).append(k)
    for (s, k), v in new.items():
        if old.get((s, k), _GONE) != v:
            tx.add_elements.setdefault(s, []).append((k, v))
    was = before.server if before else None
    now = after.server if after else None
    if now is None:
        if was is not None:
            changes.delete_servers.append(key)
            plan.held.pop(key, None)
            for dest in [d for k, d in plan.draining if k == key]:
                del plan.draining[(key, dest)]
        return
    if was is None:
        changes.add_servers.append((key, now))
        plan.held[key] = {}
    elif was != now:
        changes.edit_servers.append((key, now))
    _dests(plan, key, after)


_GONE = object()


def _dests(plan: Plan, key: Key, entry: Entry) -> None:
    """Real servers: new ones in at weight 1, returning ones back to 1,
    leaving ones drained (weight 0) or, for UDP, deleted."""
    held, dests = plan.held[key], plan.changes.dests
    for dest in entry.dests:
        weight = held.get(dest)
        if weight is None:
            dests.append(("add", key, dest, 1))
        elif weight != 1:
            dests.append(("set", key, dest, 1))
            plan.draining.pop((key, dest), None)
        held[dest] = 1
    wanted = set(entry.dests)
    for dest in [d for d in held if d not in wanted]:
        if not entry.drain:
            dests.append(("delete", key, dest, 0))
            del held[dest]
            plan.draining.pop((key, dest), None)
        elif held[dest] != 0 or (key, dest) not in plan.draining:
            if held[dest] != 0:
                dests.append(("set", key, dest, 0))
            held[dest] = 0
            plan.draining[(key, dest)] = clock()


def _count_changes(plan: Plan, delta: Counter, counts: Counter, set_name: str, element, address=False) -> None:
    tx = plan.changes.nft
    for item, change in delta.items():
        if not change:
            continue
        before = counts[item]
        counts[item] = before + change
        if counts[item] <= 0:
            del counts[item]
            tx.delete_elements.setdefault(set_name, []).append(element(item))
            if address:
                plan.changes.delete_addresses.append(item)
        elif before <= 0:
            tx.add_elements.setdefault(set_name, []).append((element(item), None))
            if address:
                plan.changes.add_addresses.append(item)


def _elements(key: Key, entry: Entry):
    """An entry's set elements: (set, element key, value)."""
    if key.protocol == FWMARK:
        return
    vip = (key.address, key.protocol.lower(), key.port)
    for name, suffix, value in entry.elements:
        yield name, vip + suffix if suffix else vip, value


def drained(plan: Plan, key: Key, dest: Dest) -> None:
    """The applier deleted a drained real server: the mirror forgets it."""
    plan.draining.pop((key, dest), None)
    held = plan.held.get(key)
    if held is not None:
        held.pop(dest, None)
