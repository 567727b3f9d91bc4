"""The IPVS mode: its options, context, applier and registration.

Compile is compile.py (pure); the applier sends the plan's changes in one
pass: np-ipvs0's new addresses, then the virtual and real servers (IPVS
over generic netlink, kernel.py), then the nftables transaction around
them, then what goes away. After it, real servers that drained are
deleted (compile.py says how they drain).

Ownership. IPVS is shared with whatever else runs on the node (an admin's
keepalived, LVS): a full sync removes only virtual servers that are ours,
those on np-ipvs0's addresses, the node-port ones recorded in the
`nodeport-servers` set, and the firewall-mark ones with our tag.
"""
import logging
import re
from dataclasses import dataclass

from netplane.proxy import modes
from netplane.proxy.ipvs import compile as ipvs_compile
from netplane.proxy.ipvs import device as dev
from netplane.proxy.ipvs import names as n
from netplane.proxy.ipvs import render as ipvs_render
from netplane.proxy.ipvs import static
from netplane.proxy.ipvs.context import Context
from netplane.proxy.ipvs.plan import Key, Plan
from netplane.proxy.nftables import render as nft_render
from netplane.proxy.nftables.mode import nodeport_ips
from netplane.proxy.nftables.names import FAMILY
from netplane.proxy.nftables.reader import NetlinkReader
from netplane.proxy.nftables.runner import LIBNFTABLES, Nft, NftError
from netplane.proxy.objects import IPVS_SCHEDULERS
from netplane.proxy.options import option
from netplane.proxy.settings import Settings

log = logging.getLogger("netplane.proxy")


@dataclass(frozen=True)
class IpvsOptions:
    scheduler: str = option("rr", key="scheduler", flag="--ipvs-scheduler", choices=IPVS_SCHEDULERS,
                            help="the IPVS scheduler (a Service may choose its own with the annotation "
                                 "netplane.io/ipvs-scheduler); mh is Maglev hashing")
    strict_arp: bool = option(False, key="strictARP", flag="--ipvs-strict-arp",
                              help="arp_ignore=1 and arp_announce=2, so the node does not answer ARP for "
                                   "np-ipvs0's addresses (MetalLB's L2 mode needs it)")
    drain_timeout: int = option(900, key="drainTimeout",
                                help="seconds a leaving TCP or SCTP endpoint keeps its open connections "
                                     "(at weight 0) before it is deleted anyway")


def context(settings: Settings, options: IpvsOptions, family: int, nodeports) -> Context:
    cidr = settings.cluster_cidr(family)
    return Context(family=family, cluster_cidr=str(cidr) if cidr else "", masquerade_all=settings.masquerade_all,
                   masquerade_bit=settings.masquerade_bit, nodeports=nodeport_ips(settings, family, nodeports) or (),
                   scheduler=options.scheduler)


def render_plan(plan: Plan) -> str:
    return ipvs_render.text(plan.changes)


def counts(plan: Plan, full: bool) -> modes.Counts:
    """Virtual servers, real servers and np-ipvs0's addresses the kernel
    holds, and what this sync sent (netplane_proxy_objects{kind}: kube-proxy's
    IPVS mode counts nothing). The real servers are summed over every
    virtual server, so only on full syncs; a partial one keeps that value."""
    held = {"virtual_servers": len(plan.held), "addresses": len(plan.addresses)}
    if full:
        held["real_servers"] = sum(len(dests) for dests in plan.held.values())
    c = plan.changes
    written = {"virtual_servers": len(c.add_servers) + len(c.edit_servers) + len(c.delete_servers),
               "real_servers": len(c.dests), "addresses": len(c.add_addresses) + len(c.delete_addresses)}
    return modes.Counts(held, written)


class IpvsApplier:
    def __init__(self, family: int, options: IpvsOptions | None = None, *, kernel=None, device=None,
                 runner=None, reader=None, write_sysctls=dev.write_sysctls) -> None:
        self.family, self.options = family, options or IpvsOptions()
        self.at = f"{FAMILY[family]} {n.TABLE}"
        self._kernel, self.device = kernel, device or dev.Device()
        self.nft = runner or Nft(LIBNFTABLES)
        self.reader = reader or NetlinkReader(family, n.TABLE)
        self.write_sysctls = write_sysctls
        self.last: Plan | None = None
        self.prepared = False

    @property
    def kernel(self):
        if self._kernel is None:
            from netplane.proxy.ipvs.kernel import IpvsKernel
            self._kernel = IpvsKernel(self.family)
        return self._kernel

    def _prepare(self) -> None:
        """At the first apply (not when the mode is made: `netplane compile`
        makes it too, and must change nothing)."""
        self.write_sysctls(dev.sysctls(self.options.strict_arp))
        self.device.ensure()
        self.prepared = True

    def read_back(self) -> dict:
        return {"servers": self.kernel.servers(), "addresses": self.device.addresses(self.family),
                "recorded": self._recorded()}

    def apply(self, plan: Plan, previous: Plan | None) -> None:
        if not self.prepared:
            self._prepare()
        c = plan.changes
        self.device.change(self.family, c.add_addresses, [])
        self.kernel.apply(c.add_servers, c.edit_servers, c.dests, [])
        if not c.nft.empty():
            self.nft.run(nft_render.script(c.nft))
        self.kernel.apply([], [], [], c.delete_servers)
        self.device.change(self.family, [], c.delete_addresses)
        self.last = plan
        self.drain(plan)

    def drain(self, plan: Plan, now: float | None = None) -> list:
        """Delete the draining real servers whose connections are gone (or
        whose time is up). Closed connections that IPVS still counts as
        inactive (FIN_WAIT, TIME_WAIT) do not hold one back: a late packet
        of theirs is dropped (expire_nodest_conn), which costs nothing."""
        now = ipvs_compile.clock() if now is None else now
        counts, done = {}, []
        for (key, dest), since in list(plan.draining.items()):
            if now - since < self.options.drain_timeout:
                if key not in counts:
                    counts[key] = self._connections(key)
                if counts[key] is None:                   # gone behind our back: the mirror forgets it
                    ipvs_compile.drained(plan, key, dest)
                    continue
                _, active, _ = counts[key].get(dest, (0, 0, 0))
                if active:
                    continue
            done.append(("delete", key, dest, 0))
        if done:
            self.kernel.apply([], [], done, [])
            for _, key, dest, _ in done:
                ipvs_compile.drained(plan, key, dest)
        return done

    def _connections(self, key: Key) -> dict | None:
        from netplane.proxy.ipvs.kernel import IpvsError
        try:
            return self.kernel.dests(key)
        except IpvsError:
            return None

    def drift(self) -> str | None:
        empty = sorted(c for c in static.BASE_CHAINS if not self.reader.rule_count(c))
        if empty:
            return f"base chain(s) {', '.join(empty)} of table {self.at} are gone or flushed"
        if self.device.index() is None:
            return f"device {n.DEVICE} is gone"
        canary = next(iter(self.last.held), None) if self.last else None
        if canary is not None and self._connections(canary) is None:
            return f"virtual server {ipvs_render.service(canary)} is gone"
        return None

    def present(self) -> bool:
        return self.reader.names() is not None or self.device.index() is not None

    def cleanup(self) -> list[str]:
        removed = []
        if dev.ipvs_present():
            installed = self.read_back()
            ours = [k for k in installed["servers"] if ipvs_compile.ours(k, installed)]
            self.kernel.apply([], [], [], ours)
            removed += [f"IPVS virtual server {ipvs_render.service(k)}" for k in ours]
        if self.reader.names() is not None:
            self.nft.run(f"delete table {self.at}\n")
            removed.append(f"IPv{self.family} table {self.at}")
        if self.device.remove():
            removed.append(f"device {n.DEVICE}")
        self.last = None
        return removed

    def _recorded(self) -> set[Key]:
        """The node-port virtual servers the last syncs recorded as ours."""
        try:
            listing = self.nft.run(f"list set {self.at} {n.NODEPORT_SERVERS}\n")
        except NftError:
            return set()
        found = re.search(r"elements = \{(.*?)\}", listing, re.S)
        keys = set()
        for element in (found.group(1).split(",") if found else ()):
            parts = [p.strip() for p in element.split(" . ")]
            if len(parts) == 3 and parts[2].isdigit():
                keys.add(Key(parts[1].upper(), parts[0], int(parts[2])))
        return keys


def _unavailable() -> str | None:
    if dev.ipvs_present():
        return None
    return "this kernel has no IPVS loaded (/proc/net/ip_vs is missing)"


MODE = modes.register(modes.Mode(
    name="ipvs", options=IpvsOptions, section="ipvs", context=context, compile=ipvs_compile.compile_family,
    applier=IpvsApplier, render=render_plan, unavailable=_unavailable, counts=counts))

