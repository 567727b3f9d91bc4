"""All service ports of one family -> one nftables transaction.

A full compile writes everything: the static maps and sets are flushed and
refilled, every chain is flushed and refilled, in one transaction (the
affinity sets are kept: they hold the clients' memory). Chains and sets the
kernel holds but the plan no longer wants are flushed, and deleted later.

A partial compile consumes the previous plan: it rebuilds the changed
ports' fragments, and the transaction holds only the element differences,
the shared path chains that came into or out of use, and the changed
affinity ports' own chains (flush + refill). The previous plan's mirror is
the truth; the table is never listed.

Stale objects. A chain is unreferenced once the map element that jumped to
it is deleted, but kernels before 6.2 still see it referenced within that
transaction, and refuse to delete it. So it is flushed at once (it can no
longer be reached anyway) and deleted by the first sync at least
STALE_DELAY seconds later, as kube-proxy does. Its sets go with it.
"""
import time

from netplane.gcpause import cyclic_gc_paused
from netplane.proxy.model import PortName
from netplane.proxy.nftables import static
from netplane.proxy.nftables.names import ADDR_TYPE
from netplane.proxy.nftables.context import Context
from netplane.proxy.nftables.fragment import Fragment, port_fragment, shape_name, shape_rules
from netplane.proxy.nftables.plan import Plan, Transaction
from netplane.proxy.policy import PortPolicy

STALE_DELAY = 1.0
clock = time.monotonic          # the tests move it
MISSING = object()


def compile_family(policies: dict[PortName, PortPolicy], ctx: Context, previous: Plan | None = None,
                   changed: set[PortName] | None = None, installed: dict[str, set[str]] | None = None) -> Plan:
    """Full when `previous` or `changed` is None; `installed` ({"chains":
    names, "sets": names} in the table) lets a full compile remove what is
    left over. A partial compile consumes `previous`."""
    with cyclic_gc_paused():
        if previous is None or changed is None:
            return _full(policies, ctx, installed or {})
        return _partial(policies, ctx, previous, changed)


def _full(policies, ctx: Context, installed: dict[str, set[str]]) -> Plan:
    plan = Plan(ctx, {}, {}, {}, {}, {}, {}, {}, Transaction(ctx.family, full=True))
    declared = static.sets(ctx)
    for name in sorted(policies):
        fragment = port_fragment(policies[name], ctx)
        plan.fragments[name] = fragment
        _take(plan, name, fragment, None)
    tx = plan.transaction
    tx.base_chains = dict(static.BASE_CHAINS)
    tx.sets = {**declared, **{s: _dynamic_set(ctx, t) for s, t in plan.own_sets.items()}}
    tx.flush_sets = list(declared)
    fixed = static.chains(ctx)
    tx.rules = {**fixed, **{shape_name(s): shape_rules(s, ctx) for s in plan.shapes}, **plan.own_chains}
    tx.chains = list(tx.rules)
    tx.add_elements = {m: list(_items(table)) for m, table in plan.elements.items()}
    for m, keys in static.static_elements(ctx).items():
        tx.add_elements.setdefault(m, []).extend((k, None) for k in keys)
    now = clock()
    for chain in sorted(set(installed.get("chains", ())) - set(tx.rules)):
        tx.flush_chains.append(chain)
        plan.stale[chain] = ("chain", now)
    for s in sorted(set(installed.get("sets", ())) - set(tx.sets)):
        plan.stale[s] = ("set", now)
    return plan


def _partial(policies, ctx: Context, plan: Plan, changed: set[PortName]) -> Plan:
    plan.transaction = Transaction(ctx.family)
    touched: dict[tuple, object] = {}
    shapes_before = {}
    for name in sorted(changed):
        old = plan.fragments.pop(name, None)
        new = port_fragment(policies[name], ctx) if name in policies else None
        if new is not None:
            plan.fragments[name] = new
        if new == old:
            continue
        for shape in (old.shapes if old else ()) + (new.shapes if new else ()):
            shapes_before.setdefault(shape, plan.shapes.get(shape, 0))
        _drop(plan, name, old, new, touched)
        _take(plan, name, new, touched, old)
        _own_objects(plan, old, new)
    _shape_changes(plan, shapes_before)
    _element_changes(plan, touched)
    _delete_stale(plan)
    return plan


def _take(plan: Plan, port: PortName, new: Fragment | None, touched, old: Fragment | None = None) -> None:
    """Claim the new fragment's elements and shapes (those not already held as they are)."""
    if new is None:
        return
    before = {(m, k): v for m, k, v in old.elements} if old else {}
    elements = plan.elements
    for m, k, v in new.elements:
        table = elements.get(m)
        if table is not None and touched is None and k not in table:
            table[k] = (v, port)             # a full compile's common case, inlined: 130k times at 10k
        elif before.get((m, k), MISSING) != v:
            _claim(plan, port, m, k, v, touched)
    for shape in new.shapes:
        plan.shapes[shape] = plan.shapes.get(shape, 0) + 1
    for name, rules in new.chains:
        plan.own_chains[name] = rules
    for name, timeout in new.sets:
        plan.own_sets[name] = timeout


def _drop(plan: Plan, port: PortName, old: Fragment | None, new: Fragment | None, touched) -> None:
    """Release what the old fragment held and the new one does not."""
    if old is None:
        return
    keep = {(m, k) for m, k, _ in new.elements} if new else set()
    for m, k, _ in old.elements:
        if (m, k) not in keep:
            _release(plan, port, m, k, touched)
    for shape in old.shapes:
        left = plan.shapes[shape] - 1
        if left:
            plan.shapes[shape] = left
        else:
            del plan.shapes[shape]
    kept_chains = {name for name, _ in new.chains} if new else set()
    kept_sets = {name for name, _ in new.sets} if new else set()
    for name, _ in old.chains:
        if name not in kept_chains:
            plan.own_chains.pop(name, None)
    for name, _ in old.sets:
        if name not in kept_sets:
            plan.own_sets.pop(name, None)


def _claim(plan: Plan, port, m: str, key: tuple, value, touched) -> None:
    table = plan.elements.setdefault(m, {})
    held = table.get(key)
    if held is None or held[1] == port:
        if touched is not None and (m, key) not in touched:
            touched[(m, key)] = held[0] if held else MISSING
        table[key] = (value, port)
        return
    # Two ports claim one key (two Services on one external IP and port): the
    # first in port order holds it, as a full compile would give it.
    others = plan.contested.setdefault((m, key), [])
    if port < held[1]:
        if touched is not None and (m, key) not in touched:
            touched[(m, key)] = held[0]
        others.append(held[1])
        table[key] = (value, port)
    elif port not in others:
        others.append(port)


def _release(plan: Plan, port, m: str, key: tuple, touched) -> None:
    table = plan.elements[m]
    held = table.get(key)
    others = plan.contested.get((m, key))
    if held is not None and held[1] == port:
        if touched is not None and (m, key) not in touched:
            touched[(m, key)] = held[0]
        if others:
            heir = min(others)
            others.remove(heir)
            table[key] = (_value_in(plan.fragments[heir], m, key), heir)
        else:
            del table[key]
    elif others and port in others:
        others.remove(port)
    if others == []:
        del plan.contested[(m, key)]


def _value_in(fragment: Fragment, m: str, key: tuple):
    return next(v for fm, fk, v in fragment.elements if fm == m and fk == key)


def _own_objects(plan: Plan, old: Fragment | None, new: Fragment | None) -> None:
    """An affinity port's own chains and sets: new and changed chains are
    (re)filled, dropped ones flushed now and deleted later; new sets declared."""
    tx = plan.transaction
    old_chains = dict(old.chains) if old else {}
    new_chains = dict(new.chains) if new else {}
    for name, rules in new_chains.items():
        if old_chains.get(name) != rules:
            _fill(plan, name, rules)
    for name in old_chains.keys() - new_chains.keys():
        _retire(plan, name, "chain")
    old_sets = {name for name, _ in old.sets} if old else set()
    for name, timeout in new.sets if new else ():
        plan.stale.pop(name, None)
        if name not in old_sets:
            tx.sets[name] = _dynamic_set(plan.context, timeout)
    for name in old_sets - {name for name, _ in (new.sets if new else ())}:
        if name not in plan.own_sets:
            plan.stale[name] = ("set", clock())


def _shape_changes(plan: Plan, before: dict[tuple, int]) -> None:
    for shape, count in before.items():
        now = plan.shapes.get(shape, 0)
        if now and not count:
            _fill(plan, shape_name(shape), shape_rules(shape, plan.context))
        elif count and not now:
            _retire(plan, shape_name(shape), "chain")


def _fill(plan: Plan, chain: str, rules: tuple[str, ...]) -> None:
    plan.stale.pop(chain, None)
    tx = plan.transaction
    if chain in tx.flush_chains:
        tx.flush_chains.remove(chain)
    tx.chains.append(chain)
    tx.rules[chain] = rules


def _retire(plan: Plan, chain: str, kind: str) -> None:
    tx = plan.transaction
    if chain in tx.rules:
        return                     # re-filled by another port in this sync
    tx.flush_chains.append(chain)
    plan.stale[chain] = (kind, clock())


def _element_changes(plan: Plan, touched: dict[tuple, object]) -> None:
    tx = plan.transaction
    for (m, key), before in touched.items():
        held = plan.elements.get(m, {}).get(key)
        if before is not MISSING and (held is None or held[0] != before):
            tx.delete_elements.setdefault(m, []).append(key)
        if held is not None and held[0] != before:
            tx.add_elements.setdefault(m, []).append((key, held[0]))


def _delete_stale(plan: Plan) -> None:
    """Delete what was flushed at least STALE_DELAY ago (chains before sets:
    a chain's rules may name a set)."""
    now, tx = clock(), plan.transaction
    for name, (kind, when) in list(plan.stale.items()):
        if now - when >= STALE_DELAY and name not in tx.rules and name not in tx.sets:
            (tx.delete_chains if kind == "chain" else tx.delete_sets).append(name)
            del plan.stale[name]


def _items(table: dict[tuple, tuple]):
    for key, (value, _) in table.items():
        yield key, value


def _dynamic_set(ctx: Context, timeout: int) -> str:
    return f"type {ADDR_TYPE[ctx.family]}; flags dynamic,timeout; timeout {timeout}s;"
