"""The iptables Backend: per family, compile (pure) and apply (one restore).

What it remembers between syncs is the last Compiled per family, which is
both the input of the next partial compile and its record of the NP-
chains the kernel holds. Anything that makes that record doubtful turns the
next sync into a full one that reads the chains back from the kernel: a
failed apply (the kernel may hold part of it), or a sentinel chain found
empty or missing (someone flushed or deleted our chains behind our back).
"""
import logging

import netaddr

from netplane.proxy import conntrack
from netplane.proxy.backend import Backend, Settings, register
from netplane.proxy.iptables.compile import TABLES, Compiled, compile_family, text
from netplane.proxy.iptables.restore import Iptables
from netplane.proxy.iptables.rules import Context
from netplane.proxy.model import PortName
from netplane.proxy.views import PortView

log = logging.getLogger("netplane.proxy")
LOOPBACK = {4: "127.0.0.0/8", 6: "::1/128"}


def context(settings: Settings, family: int, local_addresses: list[netaddr.IPAddress] | None = None) -> Context:
    cidr = settings.cluster_cidr(family)
    return Context(family=family, cluster_cidr=str(cidr) if cidr else "", masquerade_all=settings.masquerade_all,
                   masquerade_bit=settings.masquerade_bit, node=settings.node.name, layout=settings.iptables_layout,
                   nodeport_destinations=nodeport_destinations(settings, family, local_addresses))


def nodeport_destinations(settings: Settings, family: int, local_addresses) -> tuple[str, ...]:
    """Matches for "addressed to this node" in the node-port rules, like
    kube-proxy's --nodeport-addresses: every local address but loopback by
    default (and for a family none of the CIDRs is in), else this node's
    addresses inside the given CIDRs."""
    wanted = [n for n in settings.nodeport_addresses if n.version == family]
    if not wanted:                      # none given for this family: every local address, as kube-proxy
        return (f"-m addrtype --dst-type LOCAL ! -d {LOOPBACK[family]}",)
    suffix = "/32" if family == 4 else "/128"
    found = sorted({ip for ip in (local_addresses or []) if ip.version == family and any(ip in n for n in wanted)})
    return tuple(f"-d {ip}{suffix}" for ip in found)


@register("iptables")
class IptablesBackend(Backend):
    def __init__(self, settings: Settings, runner=Iptables, local_addresses=None, clean_conntrack=True) -> None:
        super().__init__(settings)
        self.runners = {f: runner(f) for f in settings.families}
        self.local_addresses = local_addresses or _local_addresses
        self.clean_conntrack = clean_conntrack
        self.compiled: dict[int, Compiled | None] = {f: None for f in settings.families}
        self.last_full = False     # whether the last sync was full (for logs and tests)

    def sync(self, views: dict[int, dict[PortName, PortView]], changed: set[PortName] | None) -> None:
        self.last_full = False
        for family, runner in self.runners.items():
            self.last_full |= self._sync_family(family, runner, views.get(family, {}), changed)

    def _sync_family(self, family: int, runner: Iptables, views, changed) -> bool:
        previous = self.compiled[family]
        if previous is not None and changed is not None and not runner.intact():
            log.warning("IPv%d: netplane's chains were flushed or deleted behind its back; doing a full sync", family)
            previous = None
        full = previous is None or changed is None
        ctx = self._context(family)
        if not full and ctx != previous.context:
            previous, full = None, True          # node addresses moved: every node-port rule changes
        self.compiled[family] = None             # unknown until the apply succeeds
        installed = {t: runner.chains(t) for t in TABLES} if full else None
        plan = compile_family(views, ctx,
                              previous=previous, changed=changed, installed=installed)
        runner.restore(plan.parts)
        if full:
            runner.ensure_jumps()
        self.compiled[family] = plan
        if self.clean_conntrack and (full or _udp_changed(views, changed)):
            try:
                conntrack.clean(family, views)
            except Exception as err:      # the rules are in: a failed cleanup must not undo the sync
                log.error("IPv%d: deleting stale UDP conntrack entries failed: %s", family, err)
        return full

    def _context(self, family: int) -> Context:
        """The node's addresses are read only when --nodeport-addresses needs them."""
        return context(self.settings, family, self.local_addresses() if self.settings.nodeport_addresses else None)

    def dry_run(self, views: dict[int, dict[PortName, PortView]]) -> str:
        out = []
        for family in self.settings.families:
            plan = compile_family(views.get(family, {}), self._context(family))
            out.append(f"# {'iptables' if family == 4 else 'ip6tables'}-restore --noflush\n{plan.text}")
        return "".join(out)

    def cleanup(self) -> list[str]:
        removed = []
        for family, runner in self.runners.items():
            jumps = runner.remove_jumps()
            doomed = {t: sorted(runner.chains(t)) for t in TABLES}
            runner.restore(text.transaction({}, [], doomed))
            removed += [f"IPv{family} {t} {n}" for t in TABLES for n in doomed[t]]
            removed += [f"IPv{family} {jumps} jump(s) from built-in chains"] if jumps else []
            self.compiled[family] = None
        return removed


def _udp_changed(views, changed) -> bool:
    """Stale UDP flows can only appear when a UDP port's endpoints changed."""
    return any(views[n].port.protocol == "UDP" for n in changed if n in views)


def _local_addresses() -> list[netaddr.IPAddress]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [netaddr.IPAddress(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()]
