"""One service port's share of IPVS and of the sets around it, with
kube-proxy's semantics. Every decision was made in policy.py; this only
says it as virtual servers and set elements.

Per address and port (cluster IPs, external IPs, load-balancer IPs, and
the node-port addresses) one Entry:
- with endpoints for it: a virtual server over them (the internal ones for
  cluster IPs, the external ones for the rest), in `served`, and in
  `cluster-vips` or `external-vips` for masquerading (static.py);
- without: no virtual server, and the refusal in `no-endpoints`;
- under externalTrafficPolicy Local with endpoints anywhere: the
  address's firewall mark in `local-shortcut`, and one firewall-mark
  virtual server for the port, over every endpoint (`everywhere`), which
  pods and the node reach instead;
- a load-balancer IP with source ranges: in `firewall`, and its ranges in
  `firewall-allow`.
"""
from typing import NamedTuple

import netaddr

from netplane.proxy.ipvs import names as n
from netplane.proxy.ipvs.context import Context
from netplane.proxy.ipvs.plan import FWMARK, Entry, Key, VirtualServer
from netplane.proxy.policy import REJECT, PortPolicy

REFUSAL = {REJECT: n.REJECT_VERDICT}


class Fragment(NamedTuple):
    entries: dict[Key, Entry]
    addresses: tuple[str, ...]          # for np-ipvs0
    hairpin: tuple[tuple[str, str], ...]


def needs_mark(policy: PortPolicy) -> bool:
    """Whether the port has a Local short-circuit (a firewall-mark virtual server)."""
    p = policy.port
    return p.external_local and p.externally_accessible and policy.has_any


def port_fragment(policy: PortPolicy, ctx: Context, mark: int = 0) -> Fragment:
    p = policy.port
    server = VirtualServer(p.scheduler or ctx.scheduler, p.affinity_timeout)
    proto, drain = p.protocol, p.protocol != "UDP"
    entries: dict[Key, Entry] = {}
    for ip in p.cluster_ips:
        entries[Key(proto, str(ip), p.port)] = _entry(policy, server, policy.internal, n.CLUSTER_VIPS, drain)
    external = [(str(ip), p.port) for ip in p.external_ips + p.load_balancer_ips]
    external += [(address, p.node_port) for address in ctx.nodeports] if p.node_port else []
    kind = "" if p.external_local else n.EXTERNAL_VIPS
    nodeports = {(address, p.node_port) for address in ctx.nodeports} if p.node_port else set()
    for address, port in external:
        entry = _entry(policy, server, policy.external, kind, drain)
        if (address, port) in nodeports and entry.server:
            entry = entry._replace(elements=entry.elements + ((n.NODEPORT_SERVERS, (), None),))
        if mark:
            entry = entry._replace(elements=entry.elements + ((n.SHORTCUT, (), (f"{mark:#x}",)),))
        entries.setdefault(Key(proto, address, port), entry)
    if mark:
        entries[Key(FWMARK, "", mark)] = Entry(server, _dests(policy.cluster or policy.local), (), drain)
    _firewall(policy, entries)
    addresses = tuple(str(ip) for ip in p.cluster_ips + p.external_ips + p.load_balancer_ips)
    return Fragment(entries, addresses, tuple((e.address, e.address) for e in policy.hairpin))


def _entry(policy: PortPolicy, server: VirtualServer, endpoints, masquerade: str, drain: bool) -> Entry:
    if not endpoints:
        return Entry(None, (), ((n.NO_ENDPOINTS, (), REFUSAL.get(policy.refusal, n.DROP_VERDICT)),), drain)
    elements = ((n.SERVED, (), None),) + (((masquerade, (), None),) if masquerade else ())
    return Entry(server, _dests(endpoints), elements, drain)


def _dests(endpoints) -> tuple[tuple[str, int], ...]:
    return tuple((e.address, e.port) for e in endpoints)


def _firewall(policy: PortPolicy, entries: dict[Key, Entry]) -> None:
    """Load-balancer IPs with source ranges (not those also external IPs,
    as in the other modes, where the external-IP rule matches first).
    Overlapping ranges are merged: an interval set refuses overlaps."""
    p = policy.port
    if not policy.firewall:
        return
    ranges = tuple(str(r) for r in netaddr.cidr_merge(policy.firewall))
    for ip in p.load_balancer_ips:
        key = Key(p.protocol, str(ip), p.port)
        if ip in p.external_ips or key not in entries:
            continue
        entry = entries[key]
        guard = ((n.FIREWALL, (), None),) + tuple((n.FIREWALL_ALLOW, (r,), None) for r in ranges)
        entries[key] = entry._replace(elements=entry.elements + guard)
