"""The nftables mode: its options, context, applier and registration.
Compile is compile.py (pure); the applier hands its transaction to nft.

The applier keeps nothing: the core keeps the last plan, which holds the
mirror of the table. Drift is read from the base chains: the table or one
of them gone means someone deleted it behind our back, and the core's next
sync is full.
"""
from dataclasses import dataclass

from netplane.proxy import modes
from netplane.proxy.nftables import names, render, static
from netplane.proxy.nftables.compile import compile_family
from netplane.proxy.nftables.context import Context
from netplane.proxy.nftables.plan import Plan
from netplane.proxy.nftables.runner import LIBNFTABLES, VIAS, Nft, NftError
from netplane.proxy.options import option
from netplane.proxy.settings import EVERY_LOCAL_ADDRESS, Settings


@dataclass(frozen=True)
class NftablesOptions:
    via: str = option(LIBNFTABLES, key="via", flag="--nftables-via", choices=VIAS,
                      help="how transactions reach the kernel: libnftables in process, or the nft binary")


def context(settings: Settings, options: NftablesOptions, family: int, nodeports) -> Context:
    cidr = settings.cluster_cidr(family)
    return Context(family=family, cluster_cidr=str(cidr) if cidr else "", masquerade_all=settings.masquerade_all,
                   masquerade_bit=settings.masquerade_bit, nodeports=_nodeports(settings, family, nodeports),
                   service_cidrs=tuple(str(c) for c in settings.service_cidrs if c.version == family))


def _nodeports(settings: Settings, family: int, nodeports) -> tuple[str, ...] | None:
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


class NftablesApplier:
    def __init__(self, family: int, options: NftablesOptions | None = None, runner=None) -> None:
        self.family = family
        self.at = f"{names.FAMILY[family]} {names.TABLE}"
        self.nft = runner or Nft((options or NftablesOptions()).via)

    def read_back(self) -> dict[str, set[str]]:
        """The chains and sets the table holds (full syncs only)."""
        objects = self._table()
        if objects is None:
            return {}
        return {"chains": {o["chain"]["name"] for o in objects if "chain" in o},
                "sets": {o["set"]["name"] for o in objects if "set" in o}}

    def apply(self, plan: Plan, previous: Plan | None) -> None:
        if not plan.transaction.empty():
            self.nft.run(render.script(plan.transaction))

    def drift(self) -> str | None:
        objects = self._table()
        if objects is None:
            return f"table {self.at} is gone"
        missing = sorted(set(static.BASE_CHAINS) - {o["chain"]["name"] for o in objects if "chain" in o})
        if missing:
            return f"base chain(s) {', '.join(missing)} of table {self.at} are gone"
        # every base chain holds rules once a sync is in: `nft flush table` empties them all
        emptied = sorted(set(static.BASE_CHAINS) - {o["rule"]["chain"] for o in objects if "rule" in o})
        return f"base chain(s) {', '.join(emptied)} of table {self.at} were flushed" if emptied else None

    def present(self) -> bool:
        return self._table() is not None

    def _table(self) -> list[dict] | None:
        """Our table's chains, sets and rules, without set elements; None if
        it is not there. Only our
        table is asked for: `list tables` or `list chains` make nft read every
        table of the family, rules and all (3 s beside 80k iptables-nft rules,
        25 s beside an iptables mode's 10k Services)."""
        try:
            return self.nft.listing(f"table {self.at}")
        except NftError as err:
            if "No such file or directory" in str(err):
                return None
            raise

    def cleanup(self) -> list[str]:
        if not self.present():
            return []
        self.nft.run(f"delete table {self.at}\n")
        return [f"IPv{self.family} table {self.at}"]


MODE = modes.register(modes.Mode(
    name="nftables", options=NftablesOptions, section="nftables", context=context, compile=compile_plan,
    applier=NftablesApplier, render=render_plan))
