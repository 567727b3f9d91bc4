"""All service ports of one family -> one iptables-restore transaction.

A full compile writes every netplane chain (declaring a chain with
`:NAME - [0:0]` under --noflush flushes and refills it) and deletes the
NP- chains the kernel holds that are no longer wanted. A partial compile
reuses the previous result: it rebuilds only the changed ports, writes the
top-level chains only if their content changed, writes the changed ports'
own chains and deletes the ones they no longer need. Unchanged services are
not in the transaction at all, which is what keeps a sync at 10k services
cheap for the kernel.

The function is pure: the previous Compiled and the chains the kernel holds
are inputs, and the result is data plus text.
"""
from dataclasses import dataclass, field

from netplane.proxy.iptables import chains as c
from netplane.proxy.iptables.rules import Context, PortRules, port_rules
from netplane.proxy.model import PortName
from netplane.proxy.views import PortView

TABLES = ("filter", "nat")


@dataclass(frozen=True)
class Compiled:
    fragments: dict[PortName, PortRules]
    chains: dict[str, dict[str, tuple[str, ...]]]    # table -> chain -> rules: every NP- chain after the apply
    text: str                                        # the iptables-restore input ("" = nothing to do)
    full: bool
    written: dict[str, list[str]] = field(default_factory=dict)   # table -> chains in the transaction
    deleted: dict[str, list[str]] = field(default_factory=dict)   # table -> chains it deletes
    context: Context | None = None                   # what it was compiled for


def static_chains(ctx: Context) -> dict[str, dict[str, tuple[str, ...]]]:
    mark = f"{1 << ctx.masquerade_bit:#x}"
    return {
        "filter": {
            c.FORWARD: (f"-A {c.FORWARD} -m conntrack --ctstate INVALID -j DROP",
                        f'-A {c.FORWARD} -m mark --mark {mark}/{mark} -m comment --comment "netplane forwarding rules" -j ACCEPT',
                        f'-A {c.FORWARD} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "netplane forwarding conntrack rule" -j ACCEPT'),
            c.CANARY: (),
        },
        "nat": {
            c.MARK_MASQ: (f"-A {c.MARK_MASQ} -j MARK --or-mark {mark}",),
            c.POSTROUTING: (f"-A {c.POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
                            f"-A {c.POSTROUTING} -j MARK --xor-mark {mark}",
                            f'-A {c.POSTROUTING} -m comment --comment "netplane service traffic requiring SNAT" -j MASQUERADE --random-fully'),
            c.CANARY: (),
        },
    }


def compile_family(views: dict[PortName, PortView], ctx: Context, *,
                   previous: Compiled | None = None, changed: set[PortName] | None = None,
                   installed: dict[str, set[str]] | None = None) -> Compiled:
    """Full when `previous` or `changed` is None; `installed` (table -> NP-
    chains in the kernel) lets a full compile delete what is left over."""
    full = previous is None or changed is None
    fragments = _fragments(views, ctx, None if full else previous, changed)
    tables = static_chains(ctx)
    _add_top_level(tables, views, fragments, ctx)
    for name in sorted(views):
        tables["nat"].update(fragments[name].chains)
    if full:
        written = {t: list(tables[t]) for t in TABLES}
        old = {t: set(installed.get(t, ())) if installed else set() for t in TABLES}
    else:
        written = _partial_writes(tables, previous, fragments, changed)
        old = {t: set(previous.chains[t]) for t in TABLES}
    deleted = {t: sorted(n for n in old[t] - set(tables[t]) if n.startswith(c.PREFIX)) for t in TABLES}
    return Compiled(fragments, tables, render(tables, written, deleted), full, written, deleted, ctx)


def _fragments(views, ctx, previous: Compiled | None, changed) -> dict[PortName, PortRules]:
    if previous is None:
        return {name: port_rules(views[name], ctx) for name in views}
    fragments = {n: f for n, f in previous.fragments.items() if n not in changed and n in views}
    for name in changed:
        if name in views:
            fragments[name] = port_rules(views[name], ctx)
    return fragments


def _add_top_level(tables, views, fragments, ctx: Context) -> None:
    order = sorted(views)
    nat_services = [line for n in order for line in fragments[n].nat_services]
    nat_services += [f'-A {c.NAT_SERVICES} {dest} -m comment --comment "netplane service nodeports; '
                     f'NOTE: this must be the last rule in this chain" -j {c.NAT_NODEPORTS}'
                     for dest in ctx.nodeport_destinations]
    tables["nat"][c.NAT_SERVICES] = tuple(nat_services)
    tables["nat"][c.NAT_NODEPORTS] = tuple(line for n in order for line in fragments[n].nat_nodeports)
    tables["filter"][c.FILTER_SERVICES] = tuple(line for n in order for line in fragments[n].filter_services)
    tables["filter"][c.FILTER_EXTERNAL] = tuple(line for n in order for line in fragments[n].filter_external)
    tables["filter"][c.FILTER_FIREWALL] = tuple(line for n in order for line in fragments[n].filter_firewall)


def _partial_writes(tables, previous: Compiled, fragments, changed) -> dict[str, list[str]]:
    """Top-level chains whose rules differ, plus every chain of a changed
    port whose rules differ (new chains included)."""
    written = {t: [name for name in (c.FILTER_TOP if t == "filter" else c.NAT_TOP)
                   if tables[t][name] != previous.chains[t].get(name)] for t in TABLES}
    own = sorted({chain for name in changed if name in fragments for chain, _ in fragments[name].chains})
    written["nat"] += [chain for chain in own if tables["nat"][chain] != previous.chains["nat"].get(chain)]
    return written


def render(tables, written: dict[str, list[str]], deleted: dict[str, list[str]]) -> str:
    out = []
    for table in TABLES:
        if not written[table] and not deleted[table]:
            continue
        out.append(f"*{table}")
        out += [f":{name} - [0:0]" for name in written[table] + deleted[table]]
        out += [line for name in written[table] for line in tables[table][name]]
        out += [f"-X {name}" for name in deleted[table]]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
