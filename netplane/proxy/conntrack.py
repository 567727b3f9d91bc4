"""Stale UDP conntrack entries, removed after endpoints change.

UDP has no connection to close: a client that keeps sending to a service
keeps refreshing the conntrack entry that DNATs it to the endpoint it first
got, even after that endpoint is gone, and its traffic vanishes. After each
sync the proxy lists UDP flows and deletes those that are stale, the way
kube-proxy's conntrack reconciler does:
- a flow to a service address (or node port) DNATed to an address that is
  no longer a serving endpoint of the port;
- a flow to a service address that was never DNATed (it arrived while the
  port had no endpoints) now that the port has some.
Choosing the flows is pure (stale_flows); listing and deleting them is a
small pyroute2 wrapper, run in the proxy's network namespace.
"""
import errno
import logging
import socket
from dataclasses import dataclass

from netplane.proxy.model import PortName
from netplane.proxy.policy import PortPolicy

log = logging.getLogger("netplane.proxy")


@dataclass(frozen=True)
class Flow:
    family: int
    orig_src: str
    orig_sport: int
    orig_dst: str
    orig_dport: int
    reply_src: str
    reply_sport: int


def stale_flows(flows: list[Flow], views: dict[PortName, PortPolicy]) -> list[Flow]:
    by_address, by_node_port = _udp_service_targets(views)
    stale = []
    for f in flows:
        endpoints = by_address.get((f.orig_dst, f.orig_dport))
        if endpoints is None:
            endpoints = by_node_port.get(f.orig_dport)
        if endpoints is None:
            continue
        if (f.reply_src, f.reply_sport) in endpoints:
            continue
        never_translated = (f.reply_src, f.reply_sport) == (f.orig_dst, f.orig_dport)
        if not never_translated or endpoints:
            stale.append(f)
    return stale


def _udp_service_targets(views):
    """(address, port) -> endpoints, and node port -> endpoints, for UDP ports."""
    by_address: dict[tuple[str, int], set] = {}
    by_node_port: dict[int, set] = {}
    for view in views.values():
        p = view.port
        if p.protocol != "UDP":
            continue
        # every endpoint still serving keeps its flows, even one this node's
        # policy or topology no longer picks for new traffic (as kube-proxy)
        endpoints = {(str(e.ip), e.port) for e in view.all_endpoints if e.ready or e.serving}
        for ip in p.cluster_ips + p.external_ips + p.load_balancer_ips:
            by_address[(str(ip), p.port)] = endpoints
        if p.node_port:
            by_node_port[p.node_port] = endpoints
    return by_address, by_node_port


def udp_flows(family: int) -> list[Flow]:
    from pyroute2 import Conntrack
    from pyroute2.conntrack import NFCTAttrTuple

    af = socket.AF_INET if family == 4 else socket.AF_INET6
    with Conntrack(nfgen_family=af) as ct:        # the socket's family selects the table dumped
        entries = ct.dump_entries(tuple_orig=NFCTAttrTuple(family=af, proto=socket.IPPROTO_UDP))
        return [Flow(family, e.tuple_orig.saddr, e.tuple_orig.sport, e.tuple_orig.daddr, e.tuple_orig.dport,
                     e.tuple_reply.saddr, e.tuple_reply.sport) for e in entries]


def delete(flows: list[Flow]) -> int:
    from pyroute2 import Conntrack

    deleted = 0
    for family in sorted({f.family for f in flows}):
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        with Conntrack(nfgen_family=af) as ct:
            deleted += _delete_family(ct, af, [f for f in flows if f.family == family])
    return deleted


def _delete_family(ct, af: int, flows: list[Flow]) -> int:
    from pyroute2.conntrack import NFCTAttrTuple
    from pyroute2.netlink.exceptions import NetlinkError

    deleted = 0
    for f in flows:
        orig = NFCTAttrTuple(family=af, saddr=f.orig_src, daddr=f.orig_dst, proto=socket.IPPROTO_UDP,
                             sport=f.orig_sport, dport=f.orig_dport)
        try:
            ct.entry("del", tuple_orig=orig)
            deleted += 1
        except NetlinkError as err:            # ENOENT: it timed out meanwhile, which is fine
            if err.code != errno.ENOENT:
                raise
    return deleted


def clean(family: int, views: dict[PortName, PortPolicy]) -> int:
    stale = stale_flows(udp_flows(family), views)
    if not stale:
        return 0
    count = delete(stale)
    log.info("deleted %d stale UDP conntrack entries (IPv%d)", count, family)
    return count
