"""All service ports of one family -> one iptables-restore transaction.

A full compile writes every netplane chain (declaring a chain with
`:NAME - [0:0]` under --noflush flushes and refills it) and deletes the
NP- chains the kernel holds that are no longer wanted. A partial compile
reuses the previous result: it rebuilds only the changed ports, writes the
top-level chains only if their content changed, writes the changed ports'
own chains and deletes the ones they no longer need. Unchanged services are
not in the transaction at all, which is what keeps a sync at 10k services
cheap for the kernel.

No kernel is touched: the previous Compiled and the chains the kernel holds
are inputs, and the result is data plus text. A partial compile consumes
the previous Compiled (it updates its tables in place rather than copying
every chain), so it costs in proportion to the change.
"""
from dataclasses import dataclass, field
from operator import attrgetter

from netplane import fastpath
from netplane.gcpause import cyclic_gc_paused
from netplane.proxy.iptables import chains as c
from netplane.proxy.iptables.rules import Context, PortRules, rules_text
from netplane.proxy.model import PortName
from netplane.proxy.views import PortView

# the compiled twins (ext/) when built, else the pure ones (rules.py, text.py)
port_rules = fastpath.load("iptables_rules").port_rules
text = fastpath.load("iptables_text")

TABLES = ("filter", "nat")
# the top-level chains: every port adds its share (a PortRules field) to them
TOP_LEVEL = (("nat", c.NAT_SERVICES, "nat_services"), ("nat", c.NAT_NODEPORTS, "nat_nodeports"),
             ("filter", c.FILTER_SERVICES, "filter_services"), ("filter", c.FILTER_EXTERNAL, "filter_external"),
             ("filter", c.FILTER_FIREWALL, "filter_firewall"))
# text.top_level() joins the shares by position: PortRules' first fields, in this order
assert tuple(share for *_, share in TOP_LEVEL) == PortRules._fields[:len(TOP_LEVEL)]


@dataclass(frozen=True)
class Compiled:
    fragments: dict[PortName, PortRules]
    chains: dict[str, dict[str, str]]                # table -> chain -> rules text: every NP- chain after the apply
    text: str                                        # the iptables-restore input ("" = nothing to do)
    written: dict[str, list[str]] = field(default_factory=dict)   # table -> chains in the transaction
    deleted: dict[str, list[str]] = field(default_factory=dict)   # table -> chains it deletes
    context: Context | None = None                   # what it was compiled for


def static_chains(ctx: Context) -> dict[str, dict[str, str]]:
    mark = f"{1 << ctx.masquerade_bit:#x}"
    return {
        "filter": {
            c.FORWARD: rules_text([
                f"-A {c.FORWARD} -m conntrack --ctstate INVALID -j DROP",
                f'-A {c.FORWARD} -m mark --mark {mark}/{mark} -m comment --comment "netplane forwarding rules" -j ACCEPT',
                f'-A {c.FORWARD} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "netplane forwarding conntrack rule" -j ACCEPT']),
            c.CANARY: "",
        },
        "nat": {
            c.MARK_MASQ: rules_text([f"-A {c.MARK_MASQ} -j MARK --or-mark {mark}"]),
            c.POSTROUTING: rules_text([
                f"-A {c.POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
                f"-A {c.POSTROUTING} -j MARK --xor-mark {mark}",
                f'-A {c.POSTROUTING} -m comment --comment "netplane service traffic requiring SNAT" -j MASQUERADE --random-fully']),
            c.CANARY: "",
        },
    }



def compile_family(views: dict[PortName, PortView], ctx: Context, *,
                   previous: Compiled | None = None, changed: set[PortName] | None = None,
                   installed: dict[str, set[str]] | None = None) -> Compiled:
    """Full when `previous` or `changed` is None; `installed` (table -> NP-
    chains in the kernel) lets a full compile delete what is left over.

    A partial compile costs in proportion to the change, not to the cluster:
    it consumes `previous` (its fragments and chain tables are updated in
    place and handed on), and rebuilds the top-level chains only when a
    changed port's share of them changed. `previous` must not be used again."""
    with cyclic_gc_paused():      # a compile makes no cycles; a collection would only rescan
        if previous is None or changed is None:
            return _full(views, ctx, installed)
        return _partial(views, ctx, previous, changed)


def _full(views, ctx: Context, installed) -> Compiled:
    fragments = {name: port_rules(views[name], ctx) for name in _ordered(views)}
    ordered = list(fragments.values())
    tables = static_chains(ctx)
    _set_top_level(tables, ordered, ctx)
    text.add_chains(tables["nat"], ordered)
    written = {t: list(tables[t]) for t in TABLES}
    old = {t: set(installed.get(t, ())) if installed else set() for t in TABLES}
    deleted = {t: sorted(n for n in old[t] - set(tables[t]) if n.startswith(c.PREFIX)) for t in TABLES}
    return Compiled(fragments, tables, text.render(tables, written, deleted), written, deleted, ctx)


def _partial(views, ctx: Context, previous: Compiled, changed) -> Compiled:
    fragments, tables = previous.fragments, previous.chains       # consumed: updated in place
    own_written, own_deleted, top_level_moved = [], [], False
    for name in changed:
        old = fragments.pop(name, None)
        new = port_rules(views[name], ctx) if name in views else None
        if new is not None:
            fragments[name] = new
        top_level_moved |= _top_share(old) != _top_share(new)
        written, gone = _replace_chains(tables["nat"], old, new)
        own_written += written
        own_deleted += gone
    top_written = _rebuild_top_level(tables, views, fragments, ctx) if top_level_moved else {t: [] for t in TABLES}
    written = {"filter": top_written["filter"], "nat": top_written["nat"] + sorted(own_written)}
    deleted = {"filter": [], "nat": sorted(own_deleted)}
    return Compiled(fragments, tables, text.render(tables, written, deleted), written, deleted, ctx)


def _replace_chains(nat: dict, old: PortRules | None, new: PortRules | None) -> tuple[list[str], list[str]]:
    """Swap a port's chains in the nat table; returns (chains whose rules
    changed or are new, chains the port no longer has)."""
    left = dict(old.chains) if old else {}
    written = []
    for chain, rules in (new.chains if new else ()):
        if left.pop(chain, None) != rules:
            written.append(chain)
        nat[chain] = rules
    for chain in left:
        del nat[chain]
    return written, list(left)


def _rebuild_top_level(tables, views, fragments, ctx: Context) -> dict[str, list[str]]:
    """Rebuild the top-level chains (O(services)); returns those that changed."""
    before = {t: {n: tables[t][n] for n in _top(t)} for t in TABLES}
    _set_top_level(tables, [fragments[n] for n in _ordered(views)], ctx)
    return {t: [n for n in _top(t) if tables[t][n] != before[t][n]] for t in TABLES}


def _top(table: str) -> tuple[str, ...]:
    return tuple(chain for t, chain, _ in TOP_LEVEL if t == table)


def _top_share(f: PortRules | None) -> tuple:
    """A port's lines in the top-level chains: if they stay, those chains stay."""
    return tuple(getattr(f, share) for _, _, share in TOP_LEVEL) if f else ()


def _set_top_level(tables, ordered: list[PortRules], ctx: Context) -> None:
    for (table, chain, _), rules in zip(TOP_LEVEL, text.top_level(ordered)):
        tables[table][chain] = rules
    # "addressed to this node" goes last: node ports are whatever no service address took
    tables["nat"][c.NAT_SERVICES] += rules_text((
        f'-A {c.NAT_SERVICES} {dest} -m comment --comment "netplane service nodeports; '
        f'NOTE: this must be the last rule in this chain" -j {c.NAT_NODEPORTS}' for dest in ctx.nodeport_destinations))


def _ordered(views) -> list[PortName]:
    """Port names in order (a key, as comparing the dataclasses costs 10x more)."""
    return sorted(views, key=_order_key)


_order_key = attrgetter("namespace", "name", "port")
