"""Parse v1 Service and discovery.k8s.io/v1 EndpointSlice objects into the model.

Input from the API server or from manifest files is checked here and only
here. A bad object raises InvalidObject with a reason the caller logs; it
never takes the daemon or other services down. Services the proxy does
not handle (headless, ExternalName) parse to no ports at all.
"""
import dataclasses
from dataclasses import dataclass

import netaddr

from netplane.kube.fields import InvalidObject, ip_address, mapping, sequence
from netplane.proxy.model import DEFAULT_AFFINITY_TIMEOUT, PROTOCOLS, Endpoint, PortName, ServicePort

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TOPOLOGY_ANNOTATIONS = ("service.kubernetes.io/topology-mode", "service.kubernetes.io/topology-aware-hints")
TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


@dataclass(frozen=True)
class Slice:
    """One EndpointSlice: its service, and endpoints per (port name, protocol)."""
    namespace: str
    service: str
    name: str
    ports: dict[tuple[str, str], tuple[Endpoint, ...]]


def service_ports(obj) -> tuple[ServicePort, ...]:
    meta, spec = _meta(obj, "Service"), mapping(obj.get("spec"), "spec")
    kind = spec.get("type", "ClusterIP")
    if kind not in TYPES:
        raise InvalidObject(f"spec.type {kind!r} is not one of {', '.join(TYPES)}")
    cluster_ips = _cluster_ips(spec)
    if kind == "ExternalName" or not cluster_ips:
        return ()                                    # nothing to proxy: DNS-only or headless
    common = _common(spec, kind, mapping(obj.get("status"), "status"), mapping(meta.get("annotations"), "annotations"))
    ports = sequence(spec.get("ports"), "spec.ports")
    node_ports = kind in ("NodePort", "LoadBalancer")
    return tuple(_port(meta, p, i, len(ports), node_ports, cluster_ips, common) for i, p in enumerate(ports))


def endpoint_slice(obj) -> Slice | None:
    """None for a slice the proxy ignores (FQDN addresses, or no service label)."""
    meta = _meta(obj, "EndpointSlice")
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    address_type = obj.get("addressType")
    if not service or address_type == "FQDN":
        return None
    if address_type not in ("IPv4", "IPv6"):
        raise InvalidObject(f"addressType {address_type!r} is not IPv4, IPv6 or FQDN")
    version = 4 if address_type == "IPv4" else 6
    endpoints = [e for i, raw in enumerate(sequence(obj.get("endpoints"), "endpoints")) for e in _endpoints(raw, i, version)]
    ports = {}
    for i, raw in enumerate(sequence(obj.get("ports"), "ports")):
        raw = mapping(raw, f"ports[{i}]")
        protocol = _protocol(raw.get("protocol", "TCP"), f"ports[{i}].protocol")
        number = _port_number(raw.get("port"), f"ports[{i}].port")
        ports[(raw.get("name") or "", protocol)] = tuple(dataclasses.replace(e, port=number) for e in endpoints)
    return Slice(meta["namespace"], service, meta["name"], ports)


# -- Service pieces -----------------------------------------------------------

def _common(spec: dict, kind: str, status: dict, annotations: dict) -> dict:
    external = kind in ("NodePort", "LoadBalancer")
    lb = kind == "LoadBalancer"
    affinity = spec.get("sessionAffinity", "None")
    if affinity not in ("None", "ClientIP"):
        raise InvalidObject(f"spec.sessionAffinity {affinity!r} is not None or ClientIP")
    return {
        "external_ips": tuple(ip_address(a, "spec.externalIPs") for a in sequence(spec.get("externalIPs"), "spec.externalIPs")),
        "load_balancer_ips": _ingress_ips(status) if lb else (),
        "load_balancer_source_ranges": tuple(_cidr(c, "spec.loadBalancerSourceRanges") for c in
                                             sequence(spec.get("loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges"))
        if lb else (),
        "affinity_timeout": _affinity_timeout(spec) if affinity == "ClientIP" else 0,
        "external_local": _policy(spec, "externalTrafficPolicy") and (external or bool(spec.get("externalIPs"))),
        "internal_local": _policy(spec, "internalTrafficPolicy"),
        "health_check_node_port": _optional_port(spec.get("healthCheckNodePort"), "spec.healthCheckNodePort") if lb else 0,
        "topology_aware": spec.get("trafficDistribution") in ("PreferClose", "PreferSameZone")
        or any(str(annotations.get(a, "")).lower() == "auto" for a in TOPOLOGY_ANNOTATIONS),
    }


def _port(meta: dict, raw, index: int, count: int, node_ports: bool, cluster_ips, common: dict) -> ServicePort:
    where = f"spec.ports[{index}]"
    raw = mapping(raw, where)
    name = raw.get("name") or ""
    if count > 1 and not name:
        raise InvalidObject(f"{where}: a service with several ports must name each one")
    node_port = _optional_port(raw.get("nodePort"), f"{where}.nodePort") if node_ports else 0
    return ServicePort(PortName(meta["namespace"], meta["name"], name),
                       _protocol(raw.get("protocol", "TCP"), f"{where}.protocol"),
                       _port_number(raw.get("port"), f"{where}.port"), cluster_ips, node_port, **common)


def _cluster_ips(spec: dict) -> tuple[netaddr.IPAddress, ...]:
    raw = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    raw = sequence(raw, "spec.clusterIPs")
    if not raw or raw[0] in ("None", ""):
        return ()
    ips = tuple(ip_address(a, "spec.clusterIPs") for a in raw)
    if len({ip.version for ip in ips}) != len(ips):
        raise InvalidObject("spec.clusterIPs has two addresses of one family")
    return ips


def _ingress_ips(status: dict) -> tuple[netaddr.IPAddress, ...]:
    """LoadBalancer ingress IPs; hostname-only entries have nothing to match on,
    and an `ipMode: Proxy` load balancer must receive the traffic itself (the
    node must not short-circuit it), as kube-proxy does."""
    ingress = sequence(mapping(status.get("loadBalancer"), "status.loadBalancer").get("ingress"),
                    "status.loadBalancer.ingress")
    return tuple(ip_address(i["ip"], "status.loadBalancer.ingress") for i in ingress
                 if isinstance(i, dict) and i.get("ip") and i.get("ipMode", "VIP") != "Proxy")


def _affinity_timeout(spec: dict) -> int:
    config = mapping(mapping(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig").get("clientIP"),
                   "spec.sessionAffinityConfig.clientIP")
    timeout = config.get("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 86400:
        raise InvalidObject(f"sessionAffinityConfig.clientIP.timeoutSeconds {timeout!r} is not 1..86400")
    return timeout


def _policy(spec: dict, key: str) -> bool:
    value = spec.get(key) or "Cluster"
    if value not in ("Cluster", "Local"):
        raise InvalidObject(f"spec.{key} {value!r} is not Cluster or Local")
    return value == "Local"


# -- EndpointSlice pieces -----------------------------------------------------

def _endpoints(raw, index: int, version: int) -> list[Endpoint]:
    where = f"endpoints[{index}]"
    raw = mapping(raw, where)
    conditions = mapping(raw.get("conditions"), f"{where}.conditions")
    ready = conditions.get("ready") is not False          # nil means ready, per the API
    serving = conditions.get("serving", ready) is not False
    terminating = conditions.get("terminating") is True
    hints = mapping(raw.get("hints"), f"{where}.hints").get("forZones") or []
    zones = frozenset(h["name"] for h in sequence(hints, f"{where}.hints.forZones") if isinstance(h, dict) and h.get("name"))
    node, zone = raw.get("nodeName") or "", raw.get("zone") or ""
    ips = [ip_address(a, f"{where}.addresses") for a in sequence(raw.get("addresses"), f"{where}.addresses")]
    if any(ip.version != version for ip in ips):
        raise InvalidObject(f"{where}.addresses: not all IPv{version}, as addressType says")
    return [Endpoint(ip, 0, ready, serving, terminating, node, zone, zones) for ip in ips[:1]]   # the API: one address counts


# -- shared checks ------------------------------------------------------------

def _meta(obj, kind: str) -> dict:
    if not isinstance(obj, dict) or obj.get("kind", kind) != kind:
        raise InvalidObject(f"not a {kind}")
    meta = mapping(obj.get("metadata"), "metadata")
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        raise InvalidObject("metadata.name is missing")
    return {**meta, "namespace": meta.get("namespace") or "default"}


def _cidr(text, where: str) -> netaddr.IPNetwork:
    try:
        if not isinstance(text, str):
            raise TypeError
        return netaddr.IPNetwork(text.strip()).cidr
    except (netaddr.AddrFormatError, TypeError, ValueError):
        raise InvalidObject(f"{where}: {text!r} is not a CIDR") from None


def _protocol(value, where: str) -> str:
    if value not in PROTOCOLS:
        raise InvalidObject(f"{where} {value!r} is not one of {', '.join(PROTOCOLS)}")
    return value


def _port_number(value, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise InvalidObject(f"{where} {value!r} is not a port number")
    return value


def _optional_port(value, where: str) -> int:
    return 0 if value in (None, 0) else _port_number(value, where)
