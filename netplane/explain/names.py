"""Which Service a packet is addressed to, and by which of its frontends.

From the policies (with --manifests), every mode can name it. The live
kernel names it only where the rules carry names: iptables' comments.
nftables sets, eBPF maps and IPVS hold addresses only, so a live answer
there names the map entry that decided and not the Service."""
from dataclasses import dataclass

import netaddr

from netplane.explain.iptables import service_in
from netplane.explain.packet import Packet


@dataclass(frozen=True)
class Frontend:
    service: str            # namespace/name:port, "" when unknown
    kind: str               # cluster IP, node port, external IP, load balancer IP; "" when unknown


def from_policies(policies: dict, packet: Packet, local) -> Frontend | None:
    dst, proto = netaddr.IPAddress(packet.dst), packet.proto.upper()
    node_address = packet.dst in local
    for name, policy in policies.items():
        port = policy.port
        if port.protocol != proto:
            continue
        if packet.port == port.port:
            for kind, held in (("cluster IP", port.cluster_ips), ("external IP", port.external_ips),
                               ("load balancer IP", port.load_balancer_ips)):
                if dst in held:
                    return Frontend(str(name), kind)
        if port.node_port and packet.port == port.node_port and node_address:
            return Frontend(str(name), "node port")
    return None


def from_steps(mode: str, steps) -> Frontend | None:
    """The Service a rule's comment names on the way (iptables only)."""
    if mode != "iptables":
        return None
    name, kind = service_in(steps)
    return Frontend(name, kind) if name else None
