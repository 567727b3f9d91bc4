"""The iptables mode's counts for the metrics, per table, with kube-proxy's
meaning: `held` is kubeproxy_sync_proxy_rules_iptables_total (the rules
netplane owns), `written` is ..._iptables_last (the rules the last sync
wrote).

A full sync writes every chain, so both are the same count, taken from
the plan's chains. A partial sync counts only what its transaction writes
(O(change)); it leaves `held` out, and the gauge keeps the last full
sync's value: the chains a partial sync replaces were dropped from the
plan without their rule counts, and counting every port's chains again
would walk the whole cluster on each partial sync (kube-proxy gets its
total for free only because it regenerates every rule on every sync).
"""
from netplane.proxy.iptables.compile import TABLES, Compiled
from netplane.proxy.modes import Counts


def counts(plan: Compiled, full: bool) -> Counts:
    if full:
        held = _held(plan)
        return Counts(held, held)
    return Counts({}, _written(plan.parts))


def _held(plan: Compiled) -> dict[str, int]:
    """Every chain's rules: one line each (the chains' text is rule lines only)."""
    held = {t: sum(rules.count("\n") for rules in plan.tables.get(t, {}).values()) for t in TABLES}
    held["nat"] += sum(f.rules.count("\n") for f in plan.fragments.values())
    return held


def _written(parts: list[str]) -> dict[str, int]:
    """The rules an iptables-restore input appends or inserts, per table."""
    written, table = dict.fromkeys(TABLES, 0), None
    for part in parts:
        if part.startswith("*"):
            table = part[1:].strip()
        elif table is not None:
            written[table] += part.count("\n-A ") + part.startswith(("-A ", "-I "))
    return written
