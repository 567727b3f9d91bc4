"""`netplane compile`: what the proxy would install for its source's
objects, with no kernel touched, and what a CI lint needs to know of it.

- The plan, as each mode renders it; then the kernel's side of it, which
  the applier installs outside the plan: the jumps from the kernel's own
  chains (iptables), the hooks (nftables and IPVS: their base chains carry
  them, in the plan), the programs' attachments (eBPF).
- Problems, each logged as one warning: objects skipped (invalid, or in a
  file that does not parse), and a node-port address filter that matches
  none of the node's addresses, which leaves the plan without node ports.
  compile runs on a CI machine, not on the node: the filter is matched
  against the node IPs when they are given (with loopback, which every
  node has), else this machine's addresses.
"""
import logging
import platform
import time
from dataclasses import dataclass, field

import netaddr

from netplane.gcpause import cyclic_gc_paused
from netplane.proxy.config import Checked, ProxyConfig
from netplane.proxy.daemon import make_dataplane, source
from netplane.proxy.policy import family_policies
from netplane.proxy.settings import nodeport_addresses
from netplane.proxy.state import snapshot

log = logging.getLogger("netplane.proxy")
JUMPS_HEADER = "# jumps from the kernel's chains"


@dataclass
class DryRun:
    plan: str                                           # the modes' plans, per family
    kernel_side: list[str]                              # lines: what the applier adds outside the plan
    problems: list[str] = field(default_factory=list)   # one line each, each already logged

    @property
    def text(self) -> str:
        return self.plan + "".join(line + "\n" for line in self.kernel_side)


LOOPBACK = (netaddr.IPAddress("127.0.0.1"), netaddr.IPAddress("::1"))


class NodeAddresses:
    """The addresses node ports are matched against (a Dataplane's
    `local_addresses`): the node IPs when given, with loopback, which every
    node has (so a filter holding 127.0.0.1 is planned as on the node); else
    this machine's. Read once and only if a node-port filter needs them."""

    def __init__(self, node_ips) -> None:
        self.given = list(node_ips)
        self.origin = "from --node-ip, and loopback" if self.given else "this machine's, as no --node-ip was given"
        self._read: list | None = None

    def __call__(self) -> list:
        if self._read is None:
            from netplane.proxy.dataplane import _local_addresses

            self._read = [*self.given, *LOOPBACK] if self.given else _local_addresses()
        return self._read


def compile_plan(cfg: ProxyConfig, checked: Checked, timing: dict | None = None) -> DryRun:
    """The full plan for the source's objects. `timing`, if given, gets seconds per phase."""
    timing = {} if timing is None else timing
    # A one-shot run over large manifests allocates millions of objects and
    # frees none of them: the cyclic GC would only rescan them, again and again.
    with cyclic_gc_paused():
        started = time.perf_counter()
        src = source(cfg)
        src.scan()
        services, slices = src.objects()
        problems = [why if where in why else f"{where}: {why}"            # each logged by the source
                    for where, why in sorted(src.errors.items())]
        timing["read"] = _lap(started)
        snap = snapshot(services, slices)
        timing["parse"] = _lap(started, timing)
        for what, why in sorted(snap.skipped.items()):
            problems.append(_warn(f"skipping {what}: {why}"))
        addresses = NodeAddresses(checked.node_ips)
        plane = make_dataplane(cfg, checked, sweep=False, prepare=False, local_addresses=addresses)
        problems += [_warn(line) for line in unmatched_nodeport_filters(plane, addresses)]
        policies = {f: family_policies(snap.ports, f, plane.settings.node) for f in plane.settings.families}
        timing["categorize"] = _lap(started, timing)
        # per family, as Dataplane.dry_run, but keeping the plans: their contexts say what the applier adds
        plans = {f: s.dry_run(policies.get(f, {})) for f, s in plane.syncers.items()}
        text = "".join(plane.mode.render(plan) for plan in plans.values())
        timing["compile"] = _lap(started, timing)
        return DryRun(text, kernel_side(plane, plans), problems)


def _warn(line: str) -> str:
    log.warning("%s", line)
    return line


def unmatched_nodeport_filters(plane, addresses: NodeAddresses) -> list[str]:
    """Per family whose --nodeport-addresses CIDRs match none of the node's
    addresses node ports answer on, one line naming the filter, the
    addresses and their origin."""
    settings, found = plane.settings, []
    for family in settings.families:
        cidrs = ", ".join(str(n) for n in settings.nodeport_addresses if n.version == family)
        if not cidrs:
            continue
        matched = nodeport_addresses(settings, family, addresses())
        seen = ", ".join(str(ip) for ip in addresses() if ip.version == family) or "none"
        if not matched:
            found.append(f"node-port address filter (--nodeport-addresses) {cidrs} matches none of the node's "
                         f"IPv{family} addresses, {seen} ({addresses.origin}): the IPv{family} plan has no node ports")
        elif not _answering(plane, family, matched):
            found.append(f"node-port address filter (--nodeport-addresses) {cidrs} matches only loopback among the "
                         f"node's IPv{family} addresses, {seen} ({addresses.origin}), and the iptables mode serves "
                         f"node ports there only with localhostNodePorts, for IPv4: the IPv{family} plan has no "
                         f"node ports")
    return found


def _answering(plane, family: int, matched) -> tuple:
    """The matched addresses node ports answer on: the iptables mode leaves
    loopback out unless its localhost node ports are on (IPv4 only)."""
    from netplane.proxy.iptables import localnet

    if plane.mode.name == "iptables" and not localnet.wanted(plane.options.localhost_nodeports, family, matched):
        return tuple(ip for ip in matched if not ip.is_loopback())
    return matched


def kernel_side(plane, plans: dict) -> list[str]:
    """What the mode's applier installs outside the plan (family -> plan),
    as lines in the mode's own syntax."""
    describe = KERNEL_SIDE.get(plane.mode.name)
    return describe(plane, plans) if describe else []


def _iptables(plane, plans: dict) -> list[str]:
    from netplane.proxy.iptables import chains, localnet
    from netplane.proxy.iptables.restore import Iptables

    tools = " and ".join(Iptables(f).cmd for f in plane.settings.families)
    lines = [f"{JUMPS_HEADER} (installed by the applier, not by iptables-restore; "
             "at the top of each chain, in this order)"]
    for table in dict.fromkeys(t for t, _, _ in chains.JUMPS):
        lines.append(f"# {tools} -t {table}")
        for builtin in dict.fromkeys(b for t, b, _ in chains.JUMPS if t == table):
            lines += [f"-A {builtin} {rule}" for t, b, rule in chains.JUMPS if (t, b) == (table, builtin)]
    if any(plan.context.localhost_nodeports for plan in plans.values()):
        lines.append(f"# sysctl (set by the applier, for node ports on localhost): "
                     f"{localnet.SYSCTL.replace('/', '.')}=1")
    return lines


def _base_chains(names) -> str:
    return f"{JUMPS_HEADER}: none; the base chains in the plan above carry the hooks ({', '.join(names)})"


def _nftables(plane, plans: dict) -> list[str]:
    from netplane.proxy.nftables import static

    return [_base_chains(static.BASE_CHAINS)]


def _ipvs(plane, plans: dict) -> list[str]:
    from netplane.proxy.ipvs import device, static
    from netplane.proxy.ipvs.names import DEVICE

    wanted = device.sysctls(plane.options.strict_arp)
    return [_base_chains(static.BASE_CHAINS),
            "# set by the applier before its first sync, outside the plan:",
            f"# device {DEVICE} (dummy), holding the addresses listed above as '{DEVICE}: add'",
            f"# sysctl (for kernel {platform.release()}): "
            + ", ".join(f"{k.replace('/', '.')}={v}" for k, v in sorted(wanted.items()))]


def _ebpf(plane, plans: dict) -> list[str]:
    from netplane.proxy.ebpf import devices, loader

    o = plane.options
    where = ", ".join(d.strip() for d in o.devices.split(",") if d.strip()) or \
        "the devices holding the node IPs and those routing to other nodes' pods (found on the node)"
    programs = ", ".join(f"{p} ({kind})" for p, kind in loader.PROGRAMS.items())
    return [f"{JUMPS_HEADER}: none; the applier attaches programs instead:",
            f"# cgroup {o.cgroup_path or '(ebpf.cgroupPath is not set: a node needs it)'}: {programs}",
            f"# tc clsact {', '.join(f'{hook} ({p})' for hook, p in loader.TC_PROGRAMS.items())}, filter priority "
            f"{devices.PRIORITY:#x} handle {devices.HANDLE}, on {where}",
            f"# pinned under {o.pin_path}"]


KERNEL_SIDE = {"iptables": _iptables, "nftables": _nftables, "ipvs": _ipvs, "ebpf": _ebpf}


def _lap(started: float, timing: dict | None = None) -> float:
    """Seconds since `started`, less the phases already in `timing`."""
    return time.perf_counter() - started - sum((timing or {}).values())
