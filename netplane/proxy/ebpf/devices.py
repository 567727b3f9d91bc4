"""The devices the tc programs (bpf/tc_lb.c) sit on, in the node's network
namespace: attached, found again, and removed.

Which devices: `ebpf.devices`, else the ones holding the node's IPs (where
traffic from other machines arrives) and the ones carrying the routes to
other nodes' pods (an overlay such as VXLAN: a backend on another node is
reached, and SNATed, through it, and its replies come back through it).
Bridges and veths are left out: traffic to this node's pods is never
SNATed, and a reply from a pod leaves through a device above.

Each program is a direct-action bpf filter of a clsact qdisc, at our own
priority and handle, so a restart replaces it in one netlink call (the
device is never without it) and nobody else's filters are touched.
"""
import errno
import socket
from dataclasses import dataclass

import netaddr

PRIORITY, HANDLE = 0x4E50, 1          # "NP": ours among the device's filters
PARENTS = {"ingress": "ffff:fff2", "egress": "ffff:fff3"}
_SKIPPED_KINDS = {"bridge", "veth"}


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    addresses: dict                   # family -> the address SNAT uses on it (None: the node's)


def _iproute():
    from pyroute2 import IPRoute
    return IPRoute()


def find(names: tuple[str, ...], node_ips, cluster_cidrs) -> list[Device]:
    """The devices to attach to: `names`, else the default above."""
    with _iproute() as ipr:
        links = {link["index"]: (link.get_attr("IFLA_IFNAME"), _kind(link)) for link in ipr.get_links()}
        by_name = {name: index for index, (name, _) in links.items()}
        addresses = _addresses(ipr)
        if names:
            missing = [n for n in names if n not in by_name]
            if missing:
                raise ValueError(f"ebpf.devices: no device named {', '.join(missing)} on this node")
            chosen = {by_name[n] for n in names}
        else:
            chosen = {index for index, ips in addresses.items() if any(ip in ips for ip in node_ips)}
            chosen |= _overlay(ipr, links, cluster_cidrs)
    return [Device(i, links[i][0], {f: _snat_address(addresses.get(i, ()), f, node_ips) for f in (4, 6)})
            for i in sorted(chosen)]


def _kind(link) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else ""


def _addresses(ipr) -> dict[int, list]:
    found = {}
    for a in ipr.get_addr():
        ip = netaddr.IPAddress(a.get_attr("IFA_ADDRESS"))
        if not ip.is_link_local():
            found.setdefault(a["index"], []).append(ip)
    return found


def _overlay(ipr, links: dict, cluster_cidrs) -> set[int]:
    """Devices of routes into the cluster CIDRs, but for bridges and veths."""
    found = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        for r in ipr.get_routes(family=family, table=254):
            dst = r.get_attr("RTA_DST")
            oif = r.get_attr("RTA_OIF")
            if dst is None or oif not in links or links[oif][1] in _SKIPPED_KINDS or links[oif][0] == "lo":
                continue
            net = netaddr.IPNetwork(f"{dst}/{r['dst_len']}")
            if any(net.version == c.version and net in c for c in cluster_cidrs):
                found.add(oif)
    return found


def _snat_address(ips, family: int, node_ips):
    """The node's IP when the device holds it, else the device's first address (as MASQUERADE picks)."""
    ours = [ip for ip in ips if ip.version == family]
    for ip in node_ips:
        if ip in ours:
            return ip
    return ours[0] if ours else next((ip for ip in node_ips if ip.version == family), None)


def attach(device: Device, programs: dict[str, int]) -> None:
    """Put each program (hook -> fd) on the device, replacing ours in one call."""
    from pyroute2.netlink.exceptions import NetlinkError
    with _iproute() as ipr:
        try:
            ipr.tc("add", "clsact", device.index)
        except NetlinkError as err:
            if err.code != errno.EEXIST:
                raise
        for hook, fd in programs.items():
            ipr.tc("replace-filter", "bpf", device.index, HANDLE, fd=fd, name=f"netplane_{hook}",
                   parent=PARENTS[hook], classid=1, direct_action=True, prio=PRIORITY)


def attached(index: int) -> set[str]:
    """The hooks of the device that hold our filter."""
    from pyroute2.netlink.exceptions import NetlinkError
    found = set()
    with _iproute() as ipr:
        for hook, parent in PARENTS.items():
            try:
                filters = ipr.get_filters(index=index, parent=int(parent.replace(":", ""), 16))
            except NetlinkError:
                continue
            if any(f["info"] >> 16 == PRIORITY and f.get_attr("TCA_KIND") == "bpf" for f in filters):
                found.add(hook)
    return found


def detach(index: int) -> bool:
    """Remove our filters from the device (the qdisc stays: others may use it)."""
    from pyroute2.netlink.exceptions import NetlinkError
    removed = False
    with _iproute() as ipr:
        for parent in PARENTS.values():
            try:
                ipr.tc("del-filter", "bpf", index, HANDLE, parent=parent, prio=PRIORITY)
                removed = True
            except NetlinkError as err:
                if err.code not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                    raise
    return removed


def ours() -> list[tuple[int, str]]:
    """Every device of the namespace that holds one of our filters."""
    with _iproute() as ipr:
        links = [(link["index"], link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]
    return [(index, name) for index, name in links if attached(index)]
