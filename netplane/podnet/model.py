"""Nodes as the pod network sees them, parsed from Kubernetes Node objects.

Both sources (the Kubernetes API and the lab's nodes file) yield the same
v1 Node JSON, so there is one parser. A Node that cannot be used is
reported with a reason (InvalidNode) and skipped by the caller; it never
stops the other nodes from being configured.
"""
import hashlib
import logging
import re
from dataclasses import dataclass

import netaddr

from netplane.kube.fields import InvalidObject, ip_address, mapping, sequence

log = logging.getLogger("netplane.podnet")
VTEP_MAC_ANNOTATION = "netplane.io/vtep-mac"
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")


class InvalidNode(InvalidObject):
    """A Node object that cannot be used, with the reason."""


@dataclass(frozen=True)
class Node:
    name: str
    internal_ips: tuple[netaddr.IPAddress, ...]
    pod_cidrs: tuple[netaddr.IPNetwork, ...]
    vtep_mac: str | None = None          # from the annotation, if the node's agent set it

    def ip_of_family(self, version: int) -> netaddr.IPAddress | None:
        return next((ip for ip in self.internal_ips if ip.version == version), None)


def node_from_object(obj) -> Node:
    if not isinstance(obj, dict) or obj.get("kind", "Node") != "Node":
        raise InvalidNode("not a v1 Node object")
    try:
        meta = mapping(obj.get("metadata"), "metadata")
    except InvalidObject as err:
        raise InvalidNode(str(err)) from None
    name = meta.get("name")
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.fullmatch(name):
        raise InvalidNode(f"metadata.name {name!r} is not a DNS subdomain")
    try:
        return Node(name, _internal_ips(obj), _pod_cidrs(obj), _vtep_mac(meta))
    except InvalidObject as err:
        raise InvalidNode(f"node {name}: {err}") from None


def derived_vtep_mac(node_name: str) -> str:
    """A locally administered unicast MAC that depends only on the node name,
    so a node's VTEP keeps its address across agent restarts and reinstalls
    and peers never hold a stale one."""
    digest = bytearray(hashlib.sha256(b"netplane-vtep/" + node_name.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def _internal_ips(obj: dict) -> tuple[netaddr.IPAddress, ...]:
    addresses = sequence(mapping(obj.get("status"), "status").get("addresses"), "status.addresses")
    ips = []
    for entry in addresses:
        if isinstance(entry, dict) and entry.get("type") == "InternalIP":
            ips.append(_unicast(entry.get("address")))
    if not ips:
        raise InvalidNode("no InternalIP in status.addresses")
    return tuple(ips)


def _unicast(text) -> netaddr.IPAddress:
    ip = ip_address(text, "InternalIP")
    if ip.is_loopback() or ip.is_multicast() or ip.is_link_local() or int(ip) == 0:
        raise InvalidNode(f"InternalIP {text} is not a routable unicast address")
    return ip


def _pod_cidrs(obj: dict) -> tuple[netaddr.IPNetwork, ...]:
    spec = mapping(obj.get("spec"), "spec")
    raw = sequence(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []), "spec.podCIDRs")
    if not raw:
        raise InvalidNode("no spec.podCIDRs yet")
    cidrs = []
    for text in raw:
        try:
            cidr = netaddr.IPNetwork(text)
        except (netaddr.AddrFormatError, TypeError, ValueError):
            raise InvalidNode(f"pod CIDR {text!r} is not a CIDR") from None
        if cidr.network != cidr.ip:
            raise InvalidNode(f"pod CIDR {text} has host bits set")
        if cidr.prefixlen == 0:
            raise InvalidNode(f"pod CIDR {text} covers every address")
        cidrs.append(cidr)
    if len({c.version for c in cidrs}) != len(cidrs):
        raise InvalidNode("more than one pod CIDR of the same IP family")
    return tuple(cidrs)


def _vtep_mac(meta: dict) -> str | None:
    """The announced VTEP MAC. A broken annotation is ignored, not fatal: the
    node stays in the cluster (peers fall back to the derived MAC), and its
    own agent overwrites the annotation on its next pass."""
    annotations = meta.get("annotations")
    mac = annotations.get(VTEP_MAC_ANNOTATION) if isinstance(annotations, dict) else None
    if mac is None:
        return None
    if not isinstance(mac, str) or not _MAC.fullmatch(mac.lower()) or int(mac[:2], 16) & 1:
        log.warning("node %s: ignoring annotation %s=%r: not a unicast MAC address",
                    meta.get("name"), VTEP_MAC_ANNOTATION, mac)
        return None
    return mac.lower()
