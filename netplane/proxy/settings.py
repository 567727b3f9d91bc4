"""The node-level proxy settings, the same for every mode, and the node's
addresses for node ports as neutral values that each mode renders."""
from dataclasses import dataclass

import netaddr

from netplane.proxy.policy import Node


@dataclass(frozen=True)
class Settings:
    node: Node
    node_ips: tuple[netaddr.IPAddress, ...] = ()
    cluster_cidrs: tuple[netaddr.IPNetwork, ...] = ()        # at most one per family
    nodeport_addresses: tuple[netaddr.IPNetwork, ...] = ()   # () = every local address
    masquerade_all: bool = False
    masquerade_bit: int = 14
    service_cidrs: tuple[netaddr.IPNetwork, ...] = ()        # unallocated addresses in them are dropped (nftables)

    @property
    def families(self) -> tuple[int, ...]:
        """The families this node proxies: those of its node IPs (both when none are given)."""
        found = tuple(sorted({ip.version for ip in self.node_ips}))
        return found or (4, 6)

    def cluster_cidr(self, family: int) -> netaddr.IPNetwork | None:
        return next((c for c in self.cluster_cidrs if c.version == family), None)

    def wants_local_addresses(self, family: int) -> bool:
        """Whether node ports need the node's addresses read (kube-proxy's --nodeport-addresses)."""
        return any(n.version == family for n in self.nodeport_addresses)


EVERY_LOCAL_ADDRESS = None


def nodeport_addresses(settings: Settings, family: int,
                       local_addresses: list[netaddr.IPAddress] | None) -> tuple[netaddr.IPAddress, ...] | None:
    """Where node ports listen, for one family: EVERY_LOCAL_ADDRESS (None:
    every local address but loopback, as kube-proxy's default, and for a
    family none of the --nodeport-addresses CIDRs is in), else this node's
    addresses inside the given CIDRs, in order (possibly none)."""
    wanted = [n for n in settings.nodeport_addresses if n.version == family]
    if not wanted:
        return EVERY_LOCAL_ADDRESS
    return tuple(sorted({ip for ip in (local_addresses or []) if ip.version == family and any(ip in n for n in wanted)}))
