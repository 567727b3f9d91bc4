"""The nftables mode: its options, context, applier and registration.
Compile is compile.py (pure); the applier hands its transaction to nft.

The applier keeps nothing: the core keeps the last plan, which holds the
mirror of the table; so the counts for the metrics are read off the
mirror's sizes (O(1) per map, on partial syncs too). Drift is read from the base chains: the table or one
of them gone, or emptied (`nft flush table`), means someone changed it
behind our back, and the core's next sync is full.
"""
from dataclasses import dataclass

from netplane.proxy import modes
from netplane.proxy.nftables import names, render, static
from netplane.proxy.nftables.compile import compile_family
from netplane.proxy.nftables.context import Context
from netplane.proxy.nftables.plan import Plan, Transaction
from netplane.proxy.nftables.reader import NetlinkReader
from netplane.proxy.nftables.runner import LIBNFTABLES, VIAS, Nft
from netplane.proxy.options import option
from netplane.proxy.settings import EVERY_LOCAL_ADDRESS, Settings


@dataclass(frozen=True)
class NftablesOptions:
    via: str = option(LIBNFTABLES, key="via", flag="--nftables-via", choices=VIAS,
                      help="how transactions reach the kernel: libnftables in process, or the nft binary")


def context(settings: Settings, options: NftablesOptions, family: int, nodeports) -> Context:
    cidr = settings.cluster_cidr(family)
    return Context(family=family, cluster_cidr=str(cidr) if cidr else "", masquerade_all=settings.masquerade_all,
                   masquerade_bit=settings.masquerade_bit, nodeports=nodeport_ips(settings, family, nodeports),
                   service_cidrs=tuple(str(c) for c in settings.service_cidrs if c.version == family))


def nodeport_ips(settings: Settings, family: int, nodeports) -> tuple[str, ...] | None:
    """As kube-proxy's nftables mode: node ports answer on the node's primary
    IP unless --nodeport-addresses says otherwise (then on the node's
    addresses inside those CIDRs); every local address only without a node IP."""
    if nodeports is not EVERY_LOCAL_ADDRESS:
        return tuple(str(ip) for ip in nodeports)
    primary = tuple(str(ip) for ip in settings.node_ips if ip.version == family)
    return primary or None


def compile_plan(policies, ctx: Context, previous: Plan | None, changed, installed) -> Plan:
    return compile_family(policies, ctx, previous, changed, installed)


def render_plan(plan: Plan) -> str:
    return f"# nft -f -\n{render.script(plan.transaction)}"


def counts(plan: Plan, full: bool) -> modes.Counts:
    """Chains, maps and sets, and their elements, that the table holds; and
    what this sync's transaction wrote (kube-proxy's nftables mode has no
    count of its own: these are netplane_proxy_objects{kind})."""
    ctx = plan.context
    # flushed chains and sets stay in the table until their delayed deletion (compile.py, "stale")
    stale_chains = sum(1 for kind, _ in plan.stale.values() if kind == "chain")
    held = {"chains": len(static.chains(ctx)) + len(plan.shapes) + len(plan.own_chains) + stale_chains,
            "sets": len(static.sets(ctx)) + len(plan.own_sets) + len(plan.stale) - stale_chains,
            "elements": sum(len(table) for table in plan.elements.values()) + len(ctx.nodeports or ())}
    return modes.Counts(held, transaction_counts(plan.transaction))


def transaction_counts(tx: Transaction) -> dict[str, int]:
    """What a transaction writes: chains filled, their rules, elements added."""
    return {"chains": len(tx.rules), "rules": sum(len(rules) for rules in tx.rules.values()),
            "elements": sum(len(added) for added in tx.add_elements.values())}


class NftablesApplier:
    """Runs the plan's transaction through nft; reads our table back over
    netlink (reader.py says why not through nft)."""

    def __init__(self, family: int, options: NftablesOptions | None = None, runner=None, reader=None) -> None:
        self.family = family
        self.at = f"{names.FAMILY[family]} {names.TABLE}"
        self.nft = runner or Nft((options or NftablesOptions()).via)
        self.reader = reader or NetlinkReader(family)

    def read_back(self) -> dict[str, set[str]]:
        """The chains and sets the table holds (full syncs only)."""
        return self.reader.names() or {}

    def apply(self, plan: Plan, previous: Plan | None) -> None:
        if not plan.transaction.empty():
            self.nft.run(render.script(plan.transaction))

    def drift(self) -> str | None:
        """Every base chain holds rules once a sync is in: none at all means the
        table was deleted or flushed (`nft flush table`), none in some, that
        those were deleted or flushed."""
        empty = sorted(c for c in static.BASE_CHAINS if not self.reader.rule_count(c))
        if len(empty) == len(static.BASE_CHAINS):
            return f"table {self.at} is gone or flushed"
        return f"base chain(s) {', '.join(empty)} of table {self.at} are gone or flushed" if empty else None

    def present(self) -> bool:
        return self.reader.names() is not None

    def cleanup(self) -> list[str]:
        if not self.present():
            return []
        self.nft.run(f"delete table {self.at}\n")
        return [f"IPv{self.family} table {self.at}"]


MODE = modes.register(modes.Mode(
    name="nftables", options=NftablesOptions, section="nftables", context=context, compile=compile_plan,
    applier=NftablesApplier, render=render_plan, counts=counts))
