"""The desired kernel state of one node's pod network, as plain data.

A mode (modes/vxlan.py, modes/routed.py) turns this node, its peers and
the underlay into a Plan with a pure function; kernel.observe() reads the
same shape back from netlink, so diff.changes() can compare the two.
Everything is keyed the way the kernel keys it: a neighbour by its IP on
the VXLAN device, an FDB entry by MAC, a route by its destination.
"""
from dataclasses import dataclass, field

import netaddr

VXLAN_OVERHEAD = {4: 50, 6: 70}     # outer IP + UDP + VXLAN + inner Ethernet headers


@dataclass(frozen=True)
class Settings:
    """Operator settings shared by the modes (agent flags)."""
    mode: str = "vxlan"
    vni: int = 1
    port: int = 8472                 # the Linux default, as flannel; IANA's 4789 is an option
    device: str = "np-vxlan"


@dataclass(frozen=True)
class Underlay:
    """The interface that carries this node's InternalIP, as found in the kernel."""
    ifname: str
    index: int
    mtu: int
    prefixes: tuple[netaddr.IPNetwork, ...]     # on-link networks of that interface

    def on_link(self, ip: netaddr.IPAddress) -> bool:
        return any(ip in prefix for prefix in self.prefixes)


@dataclass(frozen=True)
class VxlanDevice:
    name: str
    vni: int
    port: int
    local: netaddr.IPAddress
    mac: str
    mtu: int
    underlay_index: int
    up: bool = True


@dataclass(frozen=True)
class Route:
    dst: netaddr.IPNetwork
    gateway: netaddr.IPAddress
    oif: str                         # device name; kernel.py resolves it
    onlink: bool = False


@dataclass(frozen=True)
class Plan:
    device: VxlanDevice | None = None
    device_addresses: frozenset[netaddr.IPNetwork] = frozenset()
    neighbours: dict[netaddr.IPAddress, str] = field(default_factory=dict)   # on the device
    fdb: dict[str, netaddr.IPAddress] = field(default_factory=dict)          # VTEP MAC -> peer IP
    routes: dict[netaddr.IPNetwork, Route] = field(default_factory=dict)
    pod_mtu: int = 1500
    peers: tuple[str, ...] = ()      # peers whose pod CIDRs are fully reachable
    problems: tuple[str, ...] = ()   # peers (or families) left out, and why
