"""The proxy's model: what a Service port promises, and who can serve it.

Plain frozen data, parsed once from Kubernetes objects (objects.py) and
shared by every backend. A Service with several ports becomes one
ServicePort per port, as kube-proxy does: each port has its own name,
endpoints and rules.
"""
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import netaddr

PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_AFFINITY_TIMEOUT = 10800       # seconds, as the API server defaults it


class PortName(NamedTuple):
    """namespace/name:port — the key everything else hangs off. (A named
    tuple: every map of the proxy is keyed by it, and a tuple is hashed and
    compared in C, where a dataclass runs Python for both.)"""
    namespace: str
    name: str
    port: str = ""                     # the port's name; "" for a single unnamed port

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: PortName
    protocol: str
    port: int
    cluster_ips: tuple[netaddr.IPAddress, ...]
    node_port: int = 0
    external_ips: tuple[netaddr.IPAddress, ...] = ()
    load_balancer_ips: tuple[netaddr.IPAddress, ...] = ()
    load_balancer_source_ranges: tuple[netaddr.IPNetwork, ...] = ()
    affinity_timeout: int = 0          # seconds of ClientIP affinity; 0 = none
    external_local: bool = False       # externalTrafficPolicy: Local
    internal_local: bool = False       # internalTrafficPolicy: Local
    health_check_node_port: int = 0
    topology_aware: bool = False       # hints honoured (trafficDistribution or the topology-mode annotation)
    scheduler: str = ""                # the IPVS mode's scheduler for it (netplane.io/ipvs-scheduler); "" = default

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        # externally accessible ports need them even with both policies Local:
        # pods and the node reach external addresses through the cluster-wide chain
        return not self.internal_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_local or (self.externally_accessible and self.external_local)


@dataclass(frozen=True, slots=True, init=False)
class Endpoint:
    ip: netaddr.IPAddress
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node: str = ""
    zone: str = ""
    hint_zones: frozenset[str] = frozenset()
    hint_nodes: frozenset[str] = frozenset()  # trafficDistribution: PreferSameNode's hints
    # `ip` as text, exactly as str(ip) gives it: what every backend writes
    # (a DNAT target, a -s match), made once here rather than per rule.
    # Derived when not given; the parser gives it, as it has the text at
    # hand (for IPv4 the validated input already is canonical). A function
    # of `ip`: no part in ==/hash, and dataclasses.replace() derives it anew.
    address: str = field(default="", compare=False, init=False)

    # Written out instead of generated: a frozen dataclass's __init__ pays a
    # generic object.__setattr__ per field, where slot setters are direct
    # (0.75 -> 0.45 us; a large cluster has a hundred thousand endpoints).
    def __init__(self, ip: netaddr.IPAddress, port: int, ready: bool = True, serving: bool = True,
                 terminating: bool = False, node: str = "", zone: str = "", hint_zones: frozenset[str] = frozenset(),
                 address: str = "", hint_nodes: frozenset[str] = frozenset()) -> None:
        set_ip, set_port, set_ready, set_serving, set_terminating, set_node, set_zone, set_hints, set_node_hints, \
            set_address = _ENDPOINT_SETTERS
        set_ip(self, ip)
        set_port(self, port)
        set_ready(self, ready)
        set_serving(self, serving)
        set_terminating(self, terminating)
        set_node(self, node)
        set_zone(self, zone)
        set_hints(self, hint_zones)
        set_node_hints(self, hint_nodes)
        set_address(self, address or str(ip))

    def is_local(self, node_name: str) -> bool:
        return bool(node_name) and self.node == node_name

    @property
    def serving_terminating(self) -> bool:
        return self.serving and self.terminating


_ENDPOINT_SETTERS = tuple(Endpoint.__dict__[f.name].__set__ for f in fields(Endpoint))
