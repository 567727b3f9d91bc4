"""Routed mode: a route to each peer's pod CIDR via the peer's node IP.

Like flannel's host-gw: no encapsulation, so the pod MTU is the underlay
MTU and throughput is the underlay's. It only works when every peer is
on-link (one L2 segment). A peer that is not, or that has no node IP of a
pod CIDR's family, is left out entirely and reported, rather than given a
route the kernel would reject or send to the default gateway.
"""
from netplane.podnet.model import Node
from netplane.podnet.plan import Plan, Route, Settings, Underlay


def plan(me: Node, peers: list[Node], underlay: Underlay, settings: Settings) -> Plan:
    routes, reachable, problems = {}, [], []
    for peer in peers:
        peer_routes, problem = _routes_to(peer, underlay)
        if problem:
            problems.append(problem)
            continue
        routes.update(peer_routes)
        reachable.append(peer.name)
    return Plan(routes=routes, pod_mtu=underlay.mtu, peers=tuple(reachable), problems=tuple(problems))


def _routes_to(peer: Node, underlay: Underlay):
    routes = {}
    for cidr in peer.pod_cidrs:
        via = peer.ip_of_family(cidr.version)
        if via is None:
            return {}, (f"peer {peer.name}: no IPv{cidr.version} InternalIP to route its pod CIDR {cidr} "
                        "via; not routed (use vxlan mode, or give the node an address of that family)")
        if not underlay.on_link(via):
            return {}, (f"peer {peer.name}: node IP {via} is not on-link from {underlay.ifname} "
                        f"({', '.join(map(str, underlay.prefixes)) or 'no prefixes'}); routed mode needs "
                        "all nodes on one L2 segment; its pod CIDRs are not routed (use vxlan mode)")
        routes[cidr] = Route(cidr, via, underlay.ifname)
    return routes, None
