"""What the eBPF compile needs from the node, for one family."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Context:
    family: int
    nodeports: tuple[str, ...] = ()     # the addresses node ports answer on, loopback included
