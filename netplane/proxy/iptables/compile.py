"""All service ports of one family -> one iptables-restore transaction.

A full compile writes every netplane chain (declaring a chain with
`:NAME - [0:0]` under --noflush flushes and refills it) and deletes the
NP- chains the kernel holds that are no longer wanted. A partial compile
reuses the previous result: it rebuilds only the changed ports, writes the
top-level chains only if their content changed, writes the chains of the
ports whose rules changed (all of a port's chains, as kube-proxy writes all
of a changed service's) and deletes the ones they no longer have. Unchanged
services are not in the transaction at all, which is what keeps a sync at
10k services cheap for the kernel.

No kernel is touched: the previous Compiled and the chains the kernel holds
are inputs, and the result is data plus text. A partial compile consumes
the previous Compiled (it updates its fragments and tables in place rather
than copying them), so it costs in proportion to the change.
"""
from dataclasses import dataclass, field
from functools import cached_property

from netplane import fastpath
from netplane.gcpause import cyclic_gc_paused
from netplane.proxy.iptables import chains as c
from netplane.proxy.iptables.rules import Context, PortRules, chain_names, rules_text
from netplane.proxy.model import PortName
from netplane.proxy.policy import PortPolicy

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
    """The iptables plan for one family: what the kernel will hold, and the
    transaction that gets it there."""
    fragments: dict[PortName, PortRules]             # every port's rules, the nat chains it owns among them
    tables: dict[str, dict[str, str]]                # table -> chain -> rules: the static and top-level chains
    parts: list[str]                                 # the iptables-restore input, in pieces ([] = nothing to do)
    context: Context | None = None                   # what it was compiled for
    rewritten: dict[str, list[str]] = field(default_factory=dict)   # table -> static/top-level chains written
    ports_written: list[PortName] = field(default_factory=list)     # the ports whose own chains are written
    deleted: dict[str, list[str]] = field(default_factory=dict)     # table -> chains the transaction deletes
    edited: dict[str, list[str]] = field(default_factory=dict)      # table -> top-level chains edited rule by rule

    @cached_property
    def text(self) -> str:
        """The restore input as one string (the apply step streams the parts instead)."""
        return "".join(self.parts)

    @cached_property
    def written(self) -> dict[str, list[str]]:
        """table -> every chain the transaction writes."""
        ports = [n for name in self.ports_written for n in chain_names(self.fragments[name].declarations)]
        return {t: self.rewritten.get(t, []) + (ports if t == "nat" else []) for t in TABLES}

    def chains(self) -> dict[str, dict[str, str]]:
        """table -> chain -> rules text: every NP- chain after the apply
        (the ports' chains split out of their blocks: for tests and debugging)."""
        out = {t: dict(chains) for t, chains in self.tables.items()}
        for f in self.fragments.values():
            out["nat"].update(_split(f))
        return out


def _split(f: PortRules) -> dict[str, str]:
    """A port's chains, each with its rules. Every chain has rules, and its
    rules follow the previous chain's (a comment may hold any character,
    so the lines are not parsed)."""
    names = chain_names(f.declarations)
    starts = [0] + [f.rules.index(f"\n-A {name} ") + 1 for name in names[1:]]
    return {name: f.rules[start:end] for name, start, end in zip(names, starts, starts[1:] + [len(f.rules)])}


def static_chains(ctx: Context) -> dict[str, dict[str, str]]:
    mark = f"{1 << ctx.masquerade_bit:#x}"
    return {
        "filter": {
            c.FORWARD: rules_text([
                f"-A {c.FORWARD} -m conntrack --ctstate INVALID -j DROP",
                f'-A {c.FORWARD} -m mark --mark {mark}/{mark} -m comment --comment "netplane forwarding rules" -j ACCEPT',
                f'-A {c.FORWARD} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "netplane forwarding conntrack rule" -j ACCEPT']),
            c.CANARY: "",
            c.LOCALNET_FIREWALL: rules_text(_localnet_firewall(ctx)),
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


def _localnet_firewall(ctx: Context) -> list[str]:
    """kube-proxy's safeguard for route_localnet=1 (kubernetes issue 90259):
    the kernel then routes packets to 127.0.0.0/8 that arrive from outside,
    so any such packet that is not a reply, nor one we DNATed, is dropped."""
    if not ctx.localhost_nodeports:
        return []
    return [f'-A {c.LOCALNET_FIREWALL} ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment '
            f'"netplane block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP']


def compile_family(views: dict[PortName, PortPolicy], ctx: Context, *,
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
    deleted = _leftovers(installed, tables, ordered)
    return Compiled(fragments, tables, text.transaction(tables, ordered, deleted), ctx,
                    {t: list(chains) for t, chains in tables.items()}, list(fragments), deleted)


def _leftovers(installed, tables, ordered: list[PortRules]) -> dict[str, list[str]]:
    """table -> the NP- chains the kernel holds that are no longer wanted."""
    deleted = {t: [] for t in TABLES}
    for t in TABLES:
        old = {n for n in (installed or {}).get(t, ()) if n.startswith(c.PREFIX) and n not in tables[t]}
        if old and t == "nat":     # only then the ports' chain names are worth listing
            old -= {n for f in ordered for n in chain_names(f.declarations)}
        deleted[t] = sorted(old)
    return deleted


def _partial(views, ctx: Context, previous: Compiled, changed) -> Compiled:
    fragments, tables = previous.fragments, previous.tables       # consumed: updated in place
    rewritten, names, gone, moved = [], [], [], {}
    for name in sorted(changed):
        old = fragments.pop(name, None)
        new = port_rules(views[name], ctx) if name in views else None
        if new is not None:
            fragments[name] = new
        if _top_share(old) != _top_share(new):
            moved[name] = old
        if new is not None and new.declarations and (old is None or _own(old) != _own(new)):
            rewritten.append(new)
            names.append(name)
        gone += _dropped_chains(old, new)
    top_changed, edits = {t: [] for t in TABLES}, {}
    if moved:
        order = sorted(fragments.keys() | moved.keys())
        top_changed = _rebuild_top_level(tables, [n for n in order if n in fragments], fragments, ctx)
        if len(moved) <= EDIT_LIMIT:
            edits = _top_level_edits(order, moved, fragments, top_changed)
    top_written = {t: [] for t in TABLES} if edits else top_changed
    write = {t: {n: tables[t][n] for n in top_written[t]} for t in TABLES}
    deleted = {"filter": [], "nat": sorted(gone)}
    return Compiled(fragments, tables, text.transaction(write, rewritten, deleted, edits), ctx, top_written, names,
                    deleted, {t: top_changed[t] for t in edits})


# Up to this many ports whose lines in the top-level chains changed (a new,
# removed or re-addressed Service), those chains are edited rule by rule:
# rewriting NP-SERVICES whole at 10k Services costs iptables-restore about
# 0.7 s, deleting and inserting a few rules by number a few ms. Past it, a
# chain written whole is cheaper than its edits.
EDIT_LIMIT = 64


def _top_level_edits(order: list[PortName], moved: dict, fragments, changed_chains) -> dict[str, list[str]]:
    """table -> the -D/-I lines that turn each changed top-level chain from
    the kernel's (the old shares) into the new one, rule numbers and all.
    The ports are edited from the last to the first, so the rule numbers of
    the ports before the one being edited are still the kernel's."""
    edits: dict[str, list[str]] = {}
    for share, (table, chain, _) in enumerate(TOP_LEVEL):
        if chain not in changed_chains[table]:
            continue
        spots, number = [], 1
        for name in order:
            old = _share(moved[name] if name in moved else fragments[name], share)
            lines = old.count("\n")
            if name in moved and (new := _share(fragments.get(name), share)) != old:
                spots.append((number, lines, new))
            number += lines
        edits.setdefault(table, []).extend(_edit_lines(chain, spots))
    return edits


def _share(f: PortRules | None, share: int) -> str:
    """A port's lines in one top-level chain ("" for a port that is not there)."""
    return f[share] if f is not None else ""


def _edit_lines(chain: str, spots: list[tuple[int, int, str]]) -> list[str]:
    head = f"-A {chain} "
    out = []
    for number, old_count, new in reversed(spots):
        out += [f"-D {chain} {number}\n"] * old_count
        out += [f"-I {chain} {number + k} {line[len(head):]}\n" for k, line in enumerate(new.splitlines())]
    return out


def _own(f: PortRules) -> tuple[str, str]:
    """A port's own chains: if they stay, nothing of them is written."""
    return f.declarations, f.rules


def _dropped_chains(old: PortRules | None, new: PortRules | None) -> list[str]:
    """The chains the port had and no longer has."""
    if old is None or not old.declarations:
        return []
    kept = set(chain_names(new.declarations)) if new is not None else set()
    return [n for n in chain_names(old.declarations) if n not in kept]


def _rebuild_top_level(tables, order: list[PortName], fragments, ctx: Context) -> dict[str, list[str]]:
    """Rebuild the top-level chains' text (O(services), in memory);
    returns those that changed."""
    before = {t: {n: tables[t][n] for n in _top(t)} for t in TABLES}
    _set_top_level(tables, [fragments[n] for n in order], ctx)
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
    """Port names in order: namespace, name, port."""
    return sorted(views)
