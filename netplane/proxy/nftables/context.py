"""What the nftables compile needs from the node, for one family."""
from dataclasses import dataclass

from netplane.proxy.nftables.names import FAMILY


@dataclass(frozen=True)
class Context:
    family: int
    cluster_cidr: str = ""              # "" = unknown: off-cluster traffic cannot be told apart
    masquerade_all: bool = False
    masquerade_bit: int = 14
    nodeports: tuple[str, ...] | None = None    # the addresses node ports answer on; None = every local one
    service_cidrs: tuple[str, ...] = ()         # unallocated addresses in them are dropped

    @property
    def ip(self) -> str:
        """The family's word in nft: `ip daddr`, `dnat ip to`, `table ip`."""
        return FAMILY[self.family]

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"
