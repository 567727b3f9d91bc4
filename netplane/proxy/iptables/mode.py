"""The iptables mode: its options, its context, its applier, and its
registration. Compile is compile.py (pure); this module is what ties it to
the kernel, through restore.py.

What the applier remembers is nothing: the core keeps the last plan, which
is both the input of the next partial compile and its record of the NP-
chains the kernel holds. Drift is read from two sentinel chains that
always hold rules (chains.SENTINELS): gone or empty means our chains were
deleted or flushed behind our back, and the core's next sync is full.
"""
import logging
from dataclasses import dataclass

from netplane.proxy import modes
from netplane.proxy.iptables import backend as backends
from netplane.proxy.iptables import localnet
from netplane.proxy.iptables.compile import TABLES, Compiled, compile_family, text
from netplane.proxy.iptables.counts import counts
from netplane.proxy.iptables.restore import Iptables
from netplane.proxy.iptables.rules import COMPACT, LAYOUTS, Context
from netplane.proxy.options import option
from netplane.proxy.settings import EVERY_LOCAL_ADDRESS, Settings

log = logging.getLogger("netplane.proxy")
LOOPBACK = {4: "127.0.0.0/8", 6: "::1/128"}
# A transaction writing this many ports' chains (two or so each) is loaded in
# bulk (restore.py): below it, the listing bulk adds costs more than it saves.
BULK_PORTS = 1000


@dataclass(frozen=True)
class IptablesOptions:
    layout: str = option(COMPACT, key="layout", flag="--iptables-layout", choices=LAYOUTS,
                         help="the rule layout: compact (a per-endpoint chain only where hairpin traffic is "
                              "possible) or kube-proxy (a chain per endpoint)")
    backend: str = option(backends.AUTO, key="backend", flag="--iptables-backend", choices=backends.BACKENDS,
                          help="the iptables backend: auto (the one the node uses, found as kube-proxy's image "
                               "finds it), nft or legacy")
    localhost_nodeports: bool = option(True, key="localhostNodePorts", flag="--iptables-localhost-nodeports",
                                       help="node ports answer on 127.0.0.1 too (IPv4; sets route_localnet=1 in "
                                            "the node's namespace, as kube-proxy does)")


def context(settings: Settings, options: IptablesOptions, family: int, nodeports) -> Context:
    cidr = settings.cluster_cidr(family)
    localhost = localnet.wanted(options.localhost_nodeports, family, nodeports)
    return Context(family=family, cluster_cidr=str(cidr) if cidr else "", masquerade_all=settings.masquerade_all,
                   masquerade_bit=settings.masquerade_bit, layout=options.layout,
                   nodeport_destinations=nodeport_matches(family, nodeports, localhost),
                   localhost_nodeports=localhost)


def nodeport_matches(family: int, nodeports, localhost: bool = False) -> tuple[str, ...]:
    """The neutral node-port addresses as iptables matches for "addressed to
    this node". Loopback is among them only with localhost node ports (as
    kube-proxy's: without route_localnet a DNATed 127.0.0.1 is dropped)."""
    if nodeports is EVERY_LOCAL_ADDRESS:
        return ("-m addrtype --dst-type LOCAL",) if localhost else \
            (f"-m addrtype --dst-type LOCAL ! -d {LOOPBACK[family]}",)
    suffix = "/32" if family == 4 else "/128"
    return tuple(f"-d {ip}{suffix}" for ip in nodeports if localhost or not ip.is_loopback())


def compile_plan(policies, ctx: Context, previous: Compiled | None, changed, installed) -> Compiled:
    return compile_family(policies, ctx, previous=previous, changed=changed, installed=installed)


def render(plan: Compiled) -> str:
    family = plan.context.family
    return f"# {'iptables' if family == 4 else 'ip6tables'}-restore --noflush\n{plan.text}"


class IptablesApplier:
    def __init__(self, family: int, options: IptablesOptions | None = None, runner=Iptables) -> None:
        options = options or IptablesOptions()
        self.family, self.runner = family, runner(family, backend=options.backend)
        self.localnet_done = False           # route_localnet tried (once: set, or its failure said)

    @property
    def backend(self) -> str | None:
        """The backend its binaries are (nft or legacy; None: the plain ones)."""
        return getattr(self.runner, "backend", None)

    def read_back(self) -> dict[str, set[str]]:
        """table -> the NP- chains the kernel holds (full syncs only: at scale the dump is large)."""
        return {t: self.runner.chains(t) for t in TABLES}

    def apply(self, plan: Compiled, previous: Compiled | None) -> None:
        if plan.context.localhost_nodeports and not self.localnet_done:
            self._enable_localnet()
        self.runner.restore(plan.parts, bulk=len(plan.ports_written) >= BULK_PORTS)
        if previous is None:
            self.runner.ensure_jumps()

    def _enable_localnet(self) -> None:
        """Once: a failure is said in one line and the rest of the rules still
        go in (every other Service works; 127.0.0.1 node ports do not)."""
        self.localnet_done = True
        try:
            if self.runner.enable_route_localnet():
                log.info("set %s=1 so node ports answer on localhost (kube-proxy's localhostNodePorts); "
                         "to avoid it, set %s", localnet.SYSCTL.replace("/", "."), localnet.ALTERNATIVES)
        except localnet.LocalnetError as err:
            log.error("%s", err)

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
    applier=IptablesApplier, render=render, counts=counts))
