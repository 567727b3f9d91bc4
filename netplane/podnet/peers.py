"""Which peers are safe to program, whatever the node objects claim.

Node objects are input like any other: a typo or a hostile edit could give
a peer this node's own pod CIDR, the underlay's subnet, another peer's
CIDR, or a duplicate node IP or VTEP MAC. Installing that would replace
routes this node depends on (a route replace wins over a connected route
of equal metric). So a conflicting peer is left out, and reported, before
any mode plans anything. Among peers that conflict with each other, the
first by name wins, so every node makes the same choice.
"""
from netplane.podnet.model import Node
from netplane.podnet.plan import Underlay


def sane_peers(me: Node, peers: list[Node], underlay: Underlay) -> tuple[list[Node], list[str]]:
    kept, problems = [], []
    for peer in sorted(peers, key=lambda n: n.name):
        conflict = _conflict(peer, me, kept, underlay)
        if conflict:
            problems.append(f"peer {peer.name}: {conflict}; left out")
        else:
            kept.append(peer)
    return kept, problems


def _conflict(peer: Node, me: Node, kept: list[Node], underlay: Underlay) -> str | None:
    for cidr in peer.pod_cidrs:
        for other, what in [(c, "this node's pod CIDR") for c in me.pod_cidrs] + \
                           [(p, "the underlay network") for p in underlay.prefixes] + \
                           [(c, f"peer {k.name}'s pod CIDR") for k in kept for c in k.pod_cidrs]:
            if cidr.version == other.version and (cidr in other or other in cidr):
                return f"its pod CIDR {cidr} overlaps {what} {other}"
    for ip in peer.internal_ips:
        owner = "this node" if ip in me.internal_ips else next((k.name for k in kept if ip in k.internal_ips), None)
        if owner:
            return f"its InternalIP {ip} is also {owner}'s"
    if peer.vtep_mac and peer.vtep_mac in {k.vtep_mac for k in kept}:
        return f"its VTEP MAC {peer.vtep_mac} is also announced by another peer"
    return None
