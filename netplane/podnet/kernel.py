"""Read the pod network's kernel state, and apply diff.Ops, through pyroute2.

Everything here acts on the network namespace of the calling process (the
agent runs inside its node's namespace). Ownership is explicit: the routes
netplane reads back (and so may delete) carry its own routing protocol
number, and neighbour/FDB entries are read only from the VXLAN device it
owns. What it writes can still displace others: a route replace takes over
a route to the same destination, and a foreign link holding the device's
name is recreated. peers.py keeps conflicting pod CIDRs out for that reason.
"""
import errno
import logging
import socket

import netaddr
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from netplane.podnet.diff import Op
from netplane.podnet.plan import Plan, Route, Underlay, VxlanDevice

log = logging.getLogger("netplane.podnet")

RTPROT_NETPLANE = 110          # our routes' protocol: what we own, and `ip route show proto 110`
RTNH_F_ONLINK = 4
IFF_LOOPBACK = 0x8
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_GONE = {errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL}


class UnderlayNotFound(RuntimeError):
    pass


def underlay_for(ipr: IPRoute, ip: netaddr.IPAddress) -> Underlay:
    """The interface holding this node's InternalIP, with its MTU and on-link prefixes."""
    for addr in ipr.get_addr(family=_FAMILY[ip.version]):
        if netaddr.IPAddress(addr.get("IFA_ADDRESS")) == ip:
            index = addr["index"]
            link = ipr.link("get", index=index)[0]
            if link["flags"] & IFF_LOOPBACK:
                raise UnderlayNotFound(f"this node's InternalIP {ip} is on the loopback device; netplane "
                                       "needs it on the interface that reaches the other nodes")
            return Underlay(link.get("IFLA_IFNAME"), index, link.get("IFLA_MTU"), _prefixes(ipr, index))
    raise UnderlayNotFound(f"this node's InternalIP {ip} is not assigned to any interface in this network namespace")


def _prefixes(ipr: IPRoute, index: int) -> tuple[netaddr.IPNetwork, ...]:
    return tuple(sorted({n.cidr for n in _addresses(ipr, index)}))


def _addresses(ipr: IPRoute, index: int) -> list[netaddr.IPNetwork]:
    """The link's addresses with their prefix lengths, link-local ones left out."""
    nets = (netaddr.IPNetwork(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}") for a in ipr.get_addr(index=index))
    return [n for n in nets if not n.ip.is_link_local()]


def observe(ipr: IPRoute, device: str) -> Plan:
    index = _index(ipr, device)
    names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
    routes = _routes(ipr, names)
    if index is None:
        return Plan(routes=routes)
    return Plan(_device(ipr, index), frozenset(_addresses(ipr, index)), _neighbours(ipr, index), _fdb(ipr, index), routes)


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _device(ipr: IPRoute, index: int) -> VxlanDevice:
    link = ipr.link("get", index=index)[0]
    info = link.get("IFLA_LINKINFO")
    data = info.get("IFLA_INFO_DATA") if info and info.get("IFLA_INFO_KIND") == "vxlan" else None
    up = bool(link["flags"] & 1)
    if data is None:   # a foreign link holds our name: vni -1 forces a recreate
        return VxlanDevice(link.get("IFLA_IFNAME"), -1, 0, netaddr.IPAddress(0), "", 0, 0, up)
    local = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6")
    return VxlanDevice(link.get("IFLA_IFNAME"), data.get("IFLA_VXLAN_ID"), data.get("IFLA_VXLAN_PORT"),
                       netaddr.IPAddress(local) if local else None, link.get("IFLA_ADDRESS"),
                       link.get("IFLA_MTU"), data.get("IFLA_VXLAN_LINK") or 0, up)


def _neighbours(ipr: IPRoute, index: int) -> dict:
    found = {}
    for family in _FAMILY.values():
        for n in ipr.neigh("dump", ifindex=index, family=family):
            if n["ifindex"] == index and n["state"] & NUD_PERMANENT and n.get("NDA_LLADDR"):
                found[netaddr.IPAddress(n.get("NDA_DST"))] = n.get("NDA_LLADDR")
    return found


def _fdb(ipr: IPRoute, index: int) -> dict:
    return {e.get("NDA_LLADDR"): netaddr.IPAddress(e.get("NDA_DST"))
            for e in ipr.fdb("dump", ifindex=index) if e["ifindex"] == index and e.get("NDA_DST")}


def _routes(ipr: IPRoute, names: dict[int, str]) -> dict:
    found = {}
    for family in _FAMILY.values():
        for r in ipr.route("dump", family=family, proto=RTPROT_NETPLANE, table=254):
            if r["proto"] != RTPROT_NETPLANE or not r.get("RTA_GATEWAY"):
                continue
            default = "0.0.0.0" if family == socket.AF_INET else "::"     # a /0 route has no RTA_DST
            dst = netaddr.IPNetwork(f"{r.get('RTA_DST') or default}/{r['dst_len']}")
            found[dst] = Route(dst, netaddr.IPAddress(r.get("RTA_GATEWAY")), names.get(r.get("RTA_OIF"), "?"),
                               bool(r["flags"] & RTNH_F_ONLINK))
    return found


def apply(ipr: IPRoute, ops: list[Op], device: str) -> list[str]:
    """Apply ops in order; returns one message per op that failed. A failed
    op does not stop the rest: the next reconcile retries what is left."""
    failures = []
    for op in ops:
        try:
            _APPLY[op.kind](ipr, op, device)
        except NetlinkError as err:
            if op.action == "delete" and err.code in _GONE:
                continue
            failures.append(f"{op.action} {op.kind} {op.key}: {err.args[-1] if err.args else err}")
    return failures


def _apply_device(ipr: IPRoute, op: Op, _device: str) -> None:
    if op.action in ("delete", "recreate"):
        index = _index(ipr, op.key)
        if index is not None:
            log.info("deleting device %s (%s)", op.key, "its settings changed" if op.action == "recreate" else "unused")
            ipr.link("del", index=index)
    if op.action in ("create", "recreate"):
        _create_vxlan(ipr, op.value)
    if op.action in ("create", "recreate", "update"):
        d = op.value
        ipr.link("set", index=_index(ipr, d.name), address=d.mac, mtu=d.mtu, state="up")


def _create_vxlan(ipr: IPRoute, d: VxlanDevice) -> None:
    local = "vxlan_local" if d.local.version == 4 else "vxlan_local6"
    log.info("creating %s: vni %d port %d local %s mac %s mtu %d", d.name, d.vni, d.port, d.local, d.mac, d.mtu)
    ipr.link("add", ifname=d.name, kind="vxlan", vxlan_id=d.vni, vxlan_port=d.port, vxlan_learning=0,
             vxlan_link=d.underlay_index, **{local: str(d.local)}, address=d.mac, mtu=d.mtu)


def _apply_address(ipr: IPRoute, op: Op, device: str) -> None:
    net = op.key
    extra = {"flags": IFA_F_NODAD} if net.version == 6 else {}
    verb = "del" if op.action == "delete" else "replace"
    ipr.addr(verb, index=_index(ipr, device), address=str(net.ip), prefixlen=net.prefixlen,
             family=_FAMILY[net.version], **extra)


def _apply_neighbour(ipr: IPRoute, op: Op, device: str) -> None:
    ip = op.key
    verb = "del" if op.action == "delete" else "replace"
    ipr.neigh(verb, dst=str(ip), lladdr=op.value, ifindex=_index(ipr, device), family=_FAMILY[ip.version],
              state=NUD_PERMANENT)


def _apply_fdb(ipr: IPRoute, op: Op, device: str) -> None:
    verb = "del" if op.action == "delete" else "replace"
    # NTF_SELF: the entry belongs to the VXLAN device itself, not to a bridge above it
    ipr.fdb(verb, ifindex=_index(ipr, device), lladdr=op.key, dst=str(op.value), flags=NTF_SELF,
            state=NUD_PERMANENT)


def _apply_route(ipr: IPRoute, op: Op, _device: str) -> None:
    r: Route = op.value
    verb = "del" if op.action == "delete" else "replace"
    oif = _index(ipr, r.oif)
    if oif is None and op.action == "delete":
        return                                   # went with its device
    ipr.route(verb, dst=str(r.dst), gateway=str(r.gateway), oif=oif, family=_FAMILY[r.dst.version],
              flags=RTNH_F_ONLINK if r.onlink else 0, proto=RTPROT_NETPLANE, table=254)


_APPLY = {"device": _apply_device, "address": _apply_address, "neighbours": _apply_neighbour,
          "fdb": _apply_fdb, "routes": _apply_route}
