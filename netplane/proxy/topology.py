"""Which endpoints each kind of traffic to a service port may use.

Computed once per service port and shared by every backend, with
kube-proxy's semantics (its CategorizeEndpoints):
- Cluster policy (the default for internal and external traffic): every
  ready endpoint, narrowed by hints when the Service asks for them
  (trafficDistribution, or the topology-mode annotation): to the endpoints
  hinted for this node when every ready endpoint has node hints
  (PreferSameNode) and some are for this node, else to this zone's when
  every ready endpoint has zone hints and some are for this zone. With no
  ready endpoint anywhere, fall back to endpoints that are serving but
  terminating, so a rolling restart of the last pod does not drop
  connections.
- Local policy (internalTrafficPolicy or externalTrafficPolicy Local):
  this node's ready endpoints, else this node's serving-terminating ones.
  Hints do not apply.
`has_any` says whether traffic should be served at all; when it is False,
backends reject traffic to the port at once instead of letting it time out.
"""
from dataclasses import dataclass

from netplane.proxy.model import Endpoint, ServicePort


@dataclass(frozen=True, slots=True)
class Categorized:
    cluster: tuple[Endpoint, ...] = ()        # for traffic under the Cluster policy
    local: tuple[Endpoint, ...] = ()          # for traffic under the Local policy
    all_reachable: tuple[Endpoint, ...] = ()  # union of both: what may carry traffic at all
    has_any: bool = False                     # some usable endpoint exists somewhere in the cluster


def categorize(port: ServicePort, endpoints: list[Endpoint], node_name: str, node_zone: str = "") -> Categorized:
    cluster = _cluster(port, endpoints, node_name, node_zone) if port.uses_cluster_endpoints else ()
    if not port.uses_local_endpoints:
        return Categorized(cluster, (), cluster, bool(cluster))
    local = _local(endpoints, node_name)
    has_any = bool(cluster) or any(e.ready or e.serving_terminating for e in endpoints)
    if not port.uses_cluster_endpoints:
        return Categorized((), local, local, has_any)
    union = cluster + tuple(e for e in local if e not in cluster)
    return Categorized(cluster, local, union, has_any)


def _cluster(port: ServicePort, endpoints: list[Endpoint], node: str, zone: str) -> tuple[Endpoint, ...]:
    hinted = _hinted_for(port, endpoints, node, zone)
    ready = tuple(e for e in endpoints if e.ready and (hinted is None or hinted(e)))
    return ready or tuple(e for e in endpoints if e.serving_terminating)


def _hinted_for(port: ServicePort, endpoints: list[Endpoint], node: str, zone: str):
    """The test an endpoint's hints must pass, or None when hints do not apply."""
    if not port.topology_aware:
        return None
    if _hints_usable(endpoints, "hint_nodes", node):
        return lambda e: node in e.hint_nodes
    if _hints_usable(endpoints, "hint_zones", zone):
        return lambda e: zone in e.hint_zones
    return None


def _local(endpoints: list[Endpoint], node_name: str) -> tuple[Endpoint, ...]:
    mine = [e for e in endpoints if e.is_local(node_name)]
    return tuple(e for e in mine if e.ready) or tuple(e for e in mine if e.serving_terminating)


def _hints_usable(endpoints: list[Endpoint], kind: str, mine: str) -> bool:
    """Hints are all-or-nothing: one ready endpoint without hints of this kind
    (the controller is mid-update, or overloaded) and they are ignored, as is
    a node or zone no endpoint is hinted for, which would otherwise get none."""
    if not mine:
        return False
    ready = [getattr(e, kind) for e in endpoints if e.ready]
    return bool(ready) and all(ready) and any(mine in hints for hints in ready)
