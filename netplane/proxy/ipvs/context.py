"""What the IPVS compile needs from the node, for one family."""
from dataclasses import dataclass

from netplane.proxy.nftables.names import FAMILY


@dataclass(frozen=True)
class Context:
    family: int
    cluster_cidr: str = ""              # "" = unknown: off-cluster traffic cannot be told apart
    masquerade_all: bool = False
    masquerade_bit: int = 14
    nodeports: tuple[str, ...] = ()     # the node's addresses node ports answer on (a virtual server each)
    scheduler: str = "rr"               # for ports without the netplane.io/ipvs-scheduler annotation

    @property
    def ip(self) -> str:
        return FAMILY[self.family]

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"
