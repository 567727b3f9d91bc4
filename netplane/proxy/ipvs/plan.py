"""The IPVS plan: typed data, no text.

IPVS holds virtual servers and their real servers; around them sit a few
nftables rules over sets (static.py), and the addresses on the dummy
device `np-ipvs0`. A plan is
- the mirror of what the kernel holds (`entries`, `held`, `draining`,
  `addresses`), the truth for partial syncs: IPVS is never dumped then;
- and the Changes that get the kernel there, applied in one pass
  (mode.py): addresses, virtual servers, real servers, then the nftables
  transaction, then what is removed.

Every virtual server is named by its Key: (protocol, address, port) for
one address, or ("FWMARK", "", mark) for a firewall-mark service (the
short-circuit of externalTrafficPolicy Local for pods and the node, see
entries.py).
"""
from dataclasses import dataclass, field
from typing import NamedTuple

from netplane.proxy.model import PortName
from netplane.proxy.ipvs.names import TABLE
from netplane.proxy.nftables.plan import Transaction

FWMARK = "FWMARK"
# real-server forwarding: masquerading (NAT); pyroute2's default is direct routing (3)
MASQ = 0


def endpoint(address: str, port: int) -> str:
    """address:port, with an IPv6 address in brackets (ipvsadm's and ss's form)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class Key(NamedTuple):
    protocol: str           # "TCP", "UDP", "SCTP", or FWMARK
    address: str            # "" for a firewall-mark service
    port: int               # the mark, for a firewall-mark service


class VirtualServer(NamedTuple):
    """A virtual server's own settings (its key apart)."""
    scheduler: str = "rr"
    timeout: int = 0        # persistence seconds (ClientIP affinity); 0 = none


class Entry(NamedTuple):
    """All that one key means: the virtual server (None: there is none, as
    for a port without endpoints here), its real servers, and the key's
    elements in the sets around IPVS: (set, key suffix, value)."""
    server: VirtualServer | None
    dests: tuple[tuple[str, int], ...] = ()      # (address, port), weight 1 each
    elements: tuple[tuple[str, tuple, object], ...] = ()
    drain: bool = True                           # a leaving real server drains (TCP, SCTP); UDP ones go at once


Dest = tuple[str, int]


@dataclass
class Changes:
    """What one sync sends, in the order it is applied."""
    family: int
    full: bool = False
    add_addresses: list[str] = field(default_factory=list)
    add_servers: list[tuple[Key, VirtualServer]] = field(default_factory=list)
    edit_servers: list[tuple[Key, VirtualServer]] = field(default_factory=list)
    # (key, dest, weight): "add" a new real server, "set" its weight, "delete" it
    dests: list[tuple[str, Key, Dest, int]] = field(default_factory=list)
    nft: Transaction = None                      # made from family and full when not given
    delete_servers: list[Key] = field(default_factory=list)
    delete_addresses: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.nft is None:
            self.nft = Transaction(self.family, full=self.full, table=TABLE)

    def empty(self) -> bool:
        return not (self.add_addresses or self.add_servers or self.edit_servers or self.dests
                    or self.delete_servers or self.delete_addresses or not self.nft.empty())

    def messages(self) -> int:
        """IPVS and address messages: what decides between pyroute2 and the batch path."""
        return (len(self.add_addresses) + len(self.add_servers) + len(self.edit_servers) + len(self.dests)
                + len(self.delete_servers) + len(self.delete_addresses))


@dataclass
class Plan:
    context: object
    fragments: dict[PortName, dict[Key, Entry]]   # each port's claims
    claims: dict[Key, list[PortName]]             # key -> the ports claiming it (the least one wins)
    entries: dict[Key, Entry]                     # key -> the winner's entry
    held: dict[Key, dict[Dest, int]]              # the real servers IPVS holds, with their weights
    draining: dict[tuple[Key, Dest], float]       # weight 0 since (monotonic seconds): deleted once drained
    addresses: dict[str, int]                     # np-ipvs0's addresses -> how many ports use each
    hairpin: dict[tuple, int]                     # (endpoint, endpoint) -> how many ports
    marks: dict[PortName, int]                    # firewall marks of the Local short-circuits
    changes: Changes
