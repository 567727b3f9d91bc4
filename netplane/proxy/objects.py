"""Parse v1 Service and discovery.k8s.io/v1 EndpointSlice objects into the model.

Input from the API server or from manifest files is checked here and only
here. A bad object raises InvalidObject with a reason the caller logs; it
never takes the daemon or other services down. Services the proxy does
not handle (headless, ExternalName) parse to no ports at all, and so do
those that kube-proxy leaves alone by label (its informers select
`!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless`):
a Service whose proxy-name label gives it to another proxy, and the
EndpointSlices labelled so, or as a headless Service's.
"""
import logging
from dataclasses import dataclass
from operator import itemgetter

import netaddr

from netplane.kube.fields import (InvalidObject, dns1035_label, dns1123_label, dns1123_subdomain, ip_address,
                                  mapping, parse_ip, sequence)
from netplane.proxy.model import DEFAULT_AFFINITY_TIMEOUT, PROTOCOLS, Endpoint, PortName, ServicePort

log = logging.getLogger("netplane.proxy")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TOPOLOGY_ANNOTATIONS = ("service.kubernetes.io/topology-mode", "service.kubernetes.io/topology-aware-hints")
TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
TRAFFIC_DISTRIBUTIONS = ("PreferClose", "PreferSameZone", "PreferSameNode")
IPVS_SCHEDULER_ANNOTATION = "netplane.io/ipvs-scheduler"
# the schedulers Linux ships (net/netfilter/ipvs/ip_vs_*.c)
IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos")
NO_ZONES: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Slice:
    """One EndpointSlice: its service, and endpoints per (port name, protocol),
    in address order, each address once (the first the slice lists)."""
    namespace: str
    service: str
    name: str
    ports: dict[tuple[str, str], tuple[Endpoint, ...]]


def service_ports(obj) -> tuple[ServicePort, ...]:
    meta, namespace, name = _meta(obj, "Service", dns1035_label)
    if _not_ours(mapping(meta.get("labels"), "metadata.labels"), "Service", namespace, name):
        return ()
    spec = mapping(obj.get("spec"), "spec")
    kind = spec.get("type", "ClusterIP")
    if kind not in TYPES:
        raise InvalidObject(f"spec.type {kind!r} is not one of {', '.join(TYPES)}")
    cluster_ips = _cluster_ips(spec)
    if kind == "ExternalName" or not cluster_ips:
        return ()                                    # nothing to proxy: DNS-only or headless
    common = _common(spec, kind, mapping(obj.get("status"), "status"), mapping(meta.get("annotations"), "annotations"))
    ports = sequence(spec.get("ports"), "spec.ports")
    node_ports, count = kind in ("NodePort", "LoadBalancer"), len(ports)
    return tuple([_port(namespace, name, p, i, count, node_ports, cluster_ips, common) for i, p in enumerate(ports)])


def endpoint_slice(obj) -> Slice | None:
    """None for a slice the proxy ignores (FQDN addresses, or no service label)."""
    meta, namespace, name = _meta(obj, "EndpointSlice", dns1123_subdomain)
    labels = mapping(meta.get("labels"), "metadata.labels")
    service = labels.get(SERVICE_NAME_LABEL)
    address_type = obj.get("addressType")
    if not service or address_type == "FQDN" or _not_ours(labels, "EndpointSlice", namespace, name):
        return None
    dns1123_label(service, f"metadata.labels[{SERVICE_NAME_LABEL!r}]")
    if address_type not in ("IPv4", "IPv6"):
        raise InvalidObject(f"addressType {address_type!r} is not IPv4, IPv6 or FQDN")
    records = _endpoints(sequence(obj.get("endpoints"), "endpoints"), 4 if address_type == "IPv4" else 6)
    ports = {}
    for i, raw in enumerate(sequence(obj.get("ports"), "ports")):
        raw = raw if isinstance(raw, dict) else mapping(raw, f"ports[{i}]")
        port_name, protocol, number = _port_entry(raw, "ports", i)
        ports[(port_name, protocol)] = tuple([
            Endpoint(ip, number, ready, serving, terminating, node, zone, zones, text, nodes)
            for _, ip, text, ready, serving, terminating, node, zone, zones, nodes in records])
    return Slice(namespace, service, name, ports)


def _port_entry(raw: dict, field: str, index: int) -> tuple[str, str, int]:
    """A Service's or an EndpointSlice's port entry: its name (a DNS label,
    what the API server checks, when given), protocol and number. The
    where-strings are made only for an error: this runs once per port."""
    name = raw.get("name") or ""
    if name:
        dns1123_label(name, f"{field}[{index}].name")
    protocol = raw.get("protocol", "TCP")
    if protocol not in PROTOCOLS:
        _protocol(protocol, f"{field}[{index}].protocol")
    number = raw.get("port")
    if type(number) is not int or not 1 <= number <= 65535:
        number = _port_number(number, f"{field}[{index}].port")
    return name, protocol, number


def _not_ours(labels: dict, kind: str, namespace: str, name: str) -> bool:
    """Whether a label leaves the object to another proxy (or to DNS alone).
    That is normal, not a problem: said at debug level only. (Runs for
    every object: the common case is two failed lookups.)"""
    if SERVICE_PROXY_NAME_LABEL not in labels and HEADLESS_LABEL not in labels:
        return False
    label = SERVICE_PROXY_NAME_LABEL if SERVICE_PROXY_NAME_LABEL in labels else HEADLESS_LABEL
    log.debug("ignoring %s %s/%s: labelled %s=%r", kind, namespace, name, label, labels[label])
    return True


# -- Service pieces -----------------------------------------------------------

def _common(spec: dict, kind: str, status: dict, annotations: dict) -> tuple:
    """What every port of the service shares: ServicePort's fields after node_port."""
    external = kind in ("NodePort", "LoadBalancer")
    lb = kind == "LoadBalancer"
    affinity = spec.get("sessionAffinity", "None")
    if affinity not in ("None", "ClientIP"):
        raise InvalidObject(f"spec.sessionAffinity {affinity!r} is not None or ClientIP")
    external_ips = sequence(spec.get("externalIPs"), "spec.externalIPs")
    return (
        tuple([ip_address(a, "spec.externalIPs") for a in external_ips]) if external_ips else (),
        _ingress_ips(status) if lb else (),
        tuple(_cidr(c, "spec.loadBalancerSourceRanges") for c in
              sequence(spec.get("loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges")) if lb else (),
        _affinity_timeout(spec) if affinity == "ClientIP" else 0,
        _policy(spec, "externalTrafficPolicy") and (external or bool(spec.get("externalIPs"))),
        _policy(spec, "internalTrafficPolicy"),
        _optional_port(spec.get("healthCheckNodePort"), "spec.healthCheckNodePort") if lb else 0,
        spec.get("trafficDistribution") in TRAFFIC_DISTRIBUTIONS
        or bool(annotations) and any(str(annotations.get(a, "")).lower() == "auto" for a in TOPOLOGY_ANNOTATIONS),
        _ipvs_scheduler(annotations.get(IPVS_SCHEDULER_ANNOTATION)) if annotations else "",
    )


def _ipvs_scheduler(value) -> str:
    if value is None:
        return ""
    if value not in IPVS_SCHEDULERS:
        raise InvalidObject(f"metadata.annotations[{IPVS_SCHEDULER_ANNOTATION!r}] {value!r} is not an IPVS "
                            f"scheduler ({', '.join(IPVS_SCHEDULERS)})")
    return value


def _port(namespace: str, service: str, raw, index: int, count: int, node_ports: bool, cluster_ips,
          common: tuple) -> ServicePort:
    # the where-strings are made only for an error: 10k services, one call each
    raw = raw if isinstance(raw, dict) else mapping(raw, f"spec.ports[{index}]")
    name = raw.get("name") or ""
    if count > 1 and not name:
        raise InvalidObject(f"spec.ports[{index}]: a service with several ports must name each one")
    name, protocol, number = _port_entry(raw, "spec.ports", index)
    node_port = _optional_port(raw.get("nodePort"), f"spec.ports[{index}].nodePort") if node_ports else 0
    return ServicePort(PortName(namespace, service, name), protocol, number, cluster_ips, node_port, *common)


def _cluster_ips(spec: dict) -> tuple[netaddr.IPAddress, ...]:
    raw = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    raw = sequence(raw, "spec.clusterIPs")
    if not raw or raw[0] in ("None", ""):
        return ()
    if len(raw) == 1:
        return (ip_address(raw[0], "spec.clusterIPs"),)
    ips = tuple([ip_address(a, "spec.clusterIPs") for a in raw])
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

_BY_ADDRESS = itemgetter(0)


def _endpoints(endpoints: list, version: int) -> list[tuple]:
    """The slice's endpoints as (int(ip), ip, address, ready, serving,
    terminating, node, zone, hint zones), by address, each address once:
    Endpoints are made from them per port. This loop runs a hundred thousand
    times in a large cluster: checks are inlined, and the where-strings of
    the errors made only for an error."""
    records = []
    last = -1                                               # the previous address, while they ascend
    for index, raw in enumerate(endpoints):
        if not isinstance(raw, dict):
            if raw is None:
                continue                                    # null: an endpoint without addresses
            raise InvalidObject(f"endpoints[{index}] is not an object")
        conditions = raw.get("conditions")
        if conditions is None:
            ready = serving = True                          # nil means ready, per the API
            terminating = False
        elif isinstance(conditions, dict):
            ready = conditions.get("ready") is not False
            serving = conditions.get("serving", ready) is not False
            terminating = conditions.get("terminating") is True
        else:
            raise InvalidObject(f"endpoints[{index}].conditions is not an object")
        hints = raw.get("hints")
        zones, nodes = (NO_ZONES, NO_ZONES) if hints is None else _hints(hints, f"endpoints[{index}]")
        node, zone = raw.get("nodeName") or "", raw.get("zone") or ""
        if not isinstance(node, str) or not isinstance(zone, str):
            raise InvalidObject(f"endpoints[{index}]: nodeName and zone must be strings")
        addresses = raw.get("addresses")
        if not isinstance(addresses, list):
            if addresses is None:
                continue
            raise InvalidObject(f"endpoints[{index}].addresses is not a list")
        if not addresses:
            continue
        parsed = parse_ip(addresses[0])
        if parsed is None:
            raise InvalidObject(f"endpoints[{index}].addresses: {addresses[0]!r} is not an IP address")
        ip, ip_version, value, text = parsed
        if len(addresses) > 1:                              # all are checked, though only the first counts
            others = [ip_address(a, f"endpoints[{index}].addresses") for a in addresses[1:]]
            if any(other.version != version for other in others):
                ip_version = 0
        if ip_version != version:
            raise InvalidObject(f"endpoints[{index}].addresses: not all IPv{version}, as addressType says")
        records.append((value, ip, text, ready, serving, terminating, node, zone, zones, nodes))
        last = value if last is not None and value > last else None
    if last is None:                                        # not strictly ascending: sort, and drop repeats
        records.sort(key=_BY_ADDRESS)                       # stable: the first listing of an address counts
        records = [r for i, r in enumerate(records) if not i or r[0] != records[i - 1][0]]
    return records


def _hints(hints, where: str) -> tuple[frozenset[str], frozenset[str]]:
    """The zones (PreferClose, PreferSameZone) and nodes (PreferSameNode) an endpoint is hinted for."""
    hints = mapping(hints, f"{where}.hints")
    return _hinted(hints, "forZones", where), _hinted(hints, "forNodes", where)


def _hinted(hints: dict, key: str, where: str) -> frozenset[str]:
    names = [h["name"] for h in sequence(hints.get(key) or [], f"{where}.hints.{key}")
             if isinstance(h, dict) and h.get("name")]
    if not all(type(n) is str for n in names):
        raise InvalidObject(f"{where}.hints.{key}: a {'zone' if key == 'forZones' else 'node'} name is not a string")
    return frozenset(names) if names else NO_ZONES


# -- shared checks ------------------------------------------------------------

def _meta(obj, kind: str, valid_name) -> tuple[dict, str, str]:
    """The metadata, namespace and name, both checked as the API server
    does: they end up in rule comments, so a quote or newline must not."""
    if not isinstance(obj, dict) or obj.get("kind", kind) != kind:
        raise InvalidObject(f"not a {kind}")
    meta = mapping(obj.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidObject("metadata.name is missing")
    valid_name(name, "metadata.name")
    namespace = dns1123_label(meta.get("namespace") or "default", "metadata.namespace")
    return meta, namespace, name


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
