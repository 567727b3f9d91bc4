"""VXLAN mode: one VXLAN device per node, static entries per peer.

The design follows flannel's vxlan backend: learning off and no multicast;
the agent programs everything the kernel needs to know, per peer:
  - a permanent neighbour entry: peer's gateway address -> peer's VTEP MAC,
  - an FDB entry: peer's VTEP MAC -> peer's node IP (the outer destination),
  - an onlink route: peer's pod CIDR via that gateway address on the device.
The gateway address of a peer is the network address of its pod CIDR
(10.244.2.0 for 10.244.2.0/24), which that peer holds on its own VXLAN
device, so traffic the node itself sends to remote pods has a source
address the remote side routes back through the overlay. diff.py installs
neighbour, then FDB, then route, so the kernel never ARPs for a gateway.

One device carries both pod IP families; the outer family is that of the
node's first InternalIP, and it fixes the MTU overhead: 50 bytes for IPv4,
70 for IPv6.
"""
import netaddr

from netplane.podnet.model import Node, derived_vtep_mac
from netplane.podnet.plan import VXLAN_OVERHEAD, Plan, Route, Settings, Underlay, VxlanDevice


def plan(me: Node, peers: list[Node], underlay: Underlay, settings: Settings) -> Plan:
    local = me.internal_ips[0]
    mtu = underlay.mtu - VXLAN_OVERHEAD[local.version]
    device = VxlanDevice(settings.device, settings.vni, settings.port, local, derived_vtep_mac(me.name), mtu,
                         underlay.index)
    neighbours, fdb, routes, reachable, problems = {}, {}, {}, [], []
    for peer in peers:
        remote = peer.ip_of_family(local.version)
        if remote is None:
            problems.append(f"peer {peer.name}: no IPv{local.version} InternalIP to reach its VTEP; not connected")
            continue
        mac = peer.vtep_mac or derived_vtep_mac(peer.name)
        fdb[mac] = remote
        for cidr in peer.pod_cidrs:
            neighbours[_gateway(cidr)] = mac
            routes[cidr] = Route(cidr, _gateway(cidr), settings.device, onlink=True)
        reachable.append(peer.name)
    # this node's own gateway address, a host route on the device (see above)
    addresses = frozenset(netaddr.IPNetwork(f"{_gateway(c)}/{32 if c.version == 4 else 128}")
                          for c in me.pod_cidrs)
    return Plan(device, addresses, neighbours, fdb, routes, mtu, tuple(reachable), tuple(problems))


def _gateway(cidr: netaddr.IPNetwork) -> netaddr.IPAddress:
    return cidr.network
