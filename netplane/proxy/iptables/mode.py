"""The iptables mode: its options, its context, its applier, and its
registration. Compile is compile.py (pure); this module is what ties it to
the kernel, through restore.py.

What the applier remembers is nothing: the core keeps the last plan, which
is both the input of the next partial compile and its record of the NP-
chains the kernel holds. Drift is read from two sentinel chains that
always hold rules (chains.SENTINELS): gone or empty means our chains were
deleted or flushed behind our back, and the core's next sync is full.
"""
from dataclasses import dataclass

from netplane.proxy import modes
from netplane.proxy.iptables.compile import TABLES, Compiled, compile_family, text
from netplane.proxy.iptables.restore import Iptables
from netplane.proxy.iptables.rules import COMPACT, LAYOUTS, Context
from netplane.proxy.options import option
from netplane.proxy.settings import EVERY_LOCAL_ADDRESS, Settings

LOOPBACK = {4: "127.0.0.0/8", 6: "::1/128"}
# A transaction writing this many ports' chains (two or so each) is loaded in
# bulk (restore.py): below it, the listing bulk adds costs more than it saves.
BULK_PORTS = 1000


@dataclass(frozen=True)
class IptablesOptions:
    layout: str = option(COMPACT, key="layout", flag="--iptables-layout", choices=LAYOUTS,
                         help="the rule layout: compact (a per-endpoint chain only where hairpin traffic is "
                              "possible) or kube-proxy (a chain per endpoint)")


def context(settings: Settings, options: IptablesOptions, family: int, nodeports) -> Context:
    cidr = settings.cluster_cidr(family)
    return Context(family=family, cluster_cidr=str(cidr) if cidr else "", masquerade_all=settings.masquerade_all,
                   masquerade_bit=settings.masquerade_bit, layout=options.layout,
                   nodeport_destinations=nodeport_matches(family, nodeports))


def nodeport_matches(family: int, nodeports) -> tuple[str, ...]:
    """The neutral node-port addresses as iptables matches for "addressed to this node"."""
    if nodeports is EVERY_LOCAL_ADDRESS:
        return (f"-m addrtype --dst-type LOCAL ! -d {LOOPBACK[family]}",)
    suffix = "/32" if family == 4 else "/128"
    return tuple(f"-d {ip}{suffix}" for ip in nodeports)


def compile_plan(policies, ctx: Context, previous: Compiled | None, changed, installed) -> Compiled:
    return compile_family(policies, ctx, previous=previous, changed=changed, installed=installed)


def render(plan: Compiled) -> str:
    family = plan.context.family
    return f"# {'iptables' if family == 4 else 'ip6tables'}-restore --noflush\n{plan.text}"


class IptablesApplier:
    def __init__(self, family: int, options: IptablesOptions | None = None, runner=Iptables) -> None:
        self.family, self.runner = family, runner(family)

    def read_back(self) -> dict[str, set[str]]:
        """table -> the NP- chains the kernel holds (full syncs only: at scale the dump is large)."""
        return {t: self.runner.chains(t) for t in TABLES}

    def apply(self, plan: Compiled, previous: Compiled | None) -> None:
        self.runner.restore(plan.parts, bulk=len(plan.ports_written) >= BULK_PORTS)
        if previous is None:
            self.runner.ensure_jumps()

    def drift(self) -> str | None:
        return None if self.runner.intact() else "netplane's chains were flushed or deleted behind its back"

    def present(self) -> bool:
        return any(self.read_back().values())

    def cleanup(self) -> list[str]:
        jumps = self.runner.remove_jumps()
        doomed = {t: sorted(n) for t, n in self.read_back().items()}
        self.runner.restore(text.transaction({}, [], doomed))
        removed = [f"IPv{self.family} {t} {n}" for t in TABLES for n in doomed[t]]
        return removed + ([f"IPv{self.family} {jumps} jump(s) from built-in chains"] if jumps else [])


MODE = modes.register(modes.Mode(
    name="iptables", options=IptablesOptions, section="iptables", context=context, compile=compile_plan,
    applier=IptablesApplier, render=render))
