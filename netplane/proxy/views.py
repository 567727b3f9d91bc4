"""What this node's proxy must do for one IP family: every service port,
narrowed to that family, with the endpoints categorize() chose for it.

kube-proxy runs one proxier per family, and so do our backends: a
dual-stack Service appears in both families' views, a single-stack one in
its family's only, and endpoints of the other family are never mixed in.
The views are what every backend compiles; computing them here keeps the
traffic-policy and topology semantics in one place.
"""
import dataclasses
from dataclasses import dataclass

from netplane.proxy.model import Endpoint, PortName, ServicePort
from netplane.proxy.state import PortState
from netplane.proxy.topology import Categorized, categorize

@dataclass(frozen=True, slots=True)
class Node:
    """Who is asking: endpoint selection depends on the node and its zone."""
    name: str
    zone: str = ""


@dataclass(frozen=True, slots=True)
class PortView:
    port: ServicePort          # this family's addresses only
    endpoints: Categorized     # this family's endpoints only, as categorize() chose them
    all_endpoints: tuple[Endpoint, ...] = ()     # every endpoint of this family, chosen or not


def family_view(state: PortState, family: int, node: Node) -> PortView | None:
    """None when the service port has no cluster IP in this family."""
    p = state.port
    cluster_ips = tuple(ip for ip in p.cluster_ips if ip.version == family)
    if not cluster_ips:
        return None
    port = dataclasses.replace(
        p, cluster_ips=cluster_ips,
        external_ips=tuple(ip for ip in p.external_ips if ip.version == family),
        load_balancer_ips=tuple(ip for ip in p.load_balancer_ips if ip.version == family),
        load_balancer_source_ranges=tuple(r for r in p.load_balancer_source_ranges if r.version == family))
    endpoints = [e for e in state.endpoints if e.ip.version == family]
    return PortView(port, categorize(port, endpoints, node.name, node.zone), tuple(endpoints))


def family_views(ports: dict[PortName, PortState], family: int, node: Node,
                 previous: dict[PortName, PortView] | None = None,
                 changed: set[PortName] | None = None) -> dict[PortName, PortView]:
    """All views for a family; with `previous` and `changed`, only the
    changed ports are recomputed (the rest are reused as they are)."""
    if previous is None or changed is None:
        names = ports.keys()
        views = {}
    else:
        names = changed
        views = {n: v for n, v in previous.items() if n not in changed}
    for name in names:
        state = ports.get(name)
        view = family_view(state, family, node) if state is not None else None
        if view is not None:
            views[name] = view
    return views
