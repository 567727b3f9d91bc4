"""Which Service a packet is addressed to, and by which of its frontends.

From the policies (with --manifests), every mode can name it. The live
kernel names it only where the rules carry names: iptables' comments.
nftables sets, eBPF maps and IPVS hold addresses only, so a live answer
there names the map entry that decided and not the Service."""
import re
import shlex
from dataclasses import dataclass

import netaddr

from netplane.explain.packet import Packet

# an iptables rule's comment: "namespace/name:port" and, on the rule that
# matches the frontend, which one ("default/web:http cluster IP")
COMMENT = re.compile(r'--comment "?([a-z0-9][-a-z0-9.]*/[a-z0-9][-a-z0-9.]*(?::[-a-z0-9.]+)?)( [A-Za-z ]+)?')
FRONTENDS = ("cluster IP", "node port", "external IP", "load balancer IP")


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


def on_address_from_policies(policies: dict, packet: Packet, local) -> tuple[str, ...]:
    """The Service ports served on the packet's destination address, whatever
    its port and protocol ("namespace/name:port 80/tcp"; on a node's address,
    "... node port 30080/tcp"): what it missed. A Service IP is said as
    one even where it is local too (the IPVS mode's np-ipvs0 holds them)."""
    dst = netaddr.IPAddress(packet.dst)
    ordered = sorted(policies.items(), key=lambda item: str(item[0]))
    served = tuple(f"{name} {policy.port.port}/{policy.port.protocol.lower()}" for name, policy in ordered
                   if dst in (*policy.port.cluster_ips, *policy.port.external_ips, *policy.port.load_balancer_ips))
    if served or packet.dst not in local:
        return served
    return tuple(f"{name} node port {policy.port.node_port}/{policy.port.protocol.lower()}"
                 for name, policy in ordered if policy.port.node_port)


def on_address_from_rules(mode: str, state, packet: Packet) -> tuple[str, ...]:
    """As on_address_from_policies, from the iptables rules' comments: a
    rule that matches the destination address alone names its Service."""
    if mode != "iptables":
        return ()
    served = set()
    for rule in (r for chains in state.values() for chain in chains.values() for r in chain):
        named, words = COMMENT.search(rule), shlex.split(rule)
        address, port, proto = (_option(words, flag) for flag in ("-d", "--dport", "-p"))
        if named and port and proto and address and _is(address, packet.dst):
            served.add(f"{named.group(1)} {port}/{proto.lower()}")
    return tuple(sorted(served))


def _option(words: list[str], flag: str) -> str | None:
    """The value of `flag` in a rule (None: absent or negated)."""
    if flag not in words[:-1]:
        return None
    at = words.index(flag)
    return None if at and words[at - 1] == "!" else words[at + 1]


def _is(network: str, address: str) -> bool:
    """Whether `network` (a rule's -d) is that one address."""
    net = netaddr.IPNetwork(network)
    return net.size == 1 and netaddr.IPAddress(address) in net


def from_steps(mode: str, steps) -> Frontend | None:
    """The Service a rule's comment names on the way (iptables only)."""
    if mode != "iptables":
        return None
    name, kind = service_in(steps)
    return Frontend(name, kind) if name else None


def service_in(steps) -> tuple[str, str]:
    """(namespace/name:port, its frontend or "") that a rule's comment names,
    the first on the way and the most precise; ("", "") if none."""
    named = ""
    for step in steps:
        found = COMMENT.search(step)
        if found:
            kind = next((f for f in FRONTENDS if (found.group(2) or "").strip().startswith(f)), "")
            if kind:
                return found.group(1), kind
            named = named or found.group(1)
    return named, ""
