"""What the eBPF compile needs from the node, for one family."""
from dataclasses import dataclass

from netplane.proxy.ebpf import maglev


@dataclass(frozen=True)
class Context:
    family: int
    nodeports: tuple[str, ...] = ()     # the addresses node ports answer on, loopback included
    node: str = ""                      # this node's name: its endpoints are reached without SNAT
    maglev_size: int = maglev.DEFAULT_SIZE   # M of every table, or the largest with maglev_compact
    maglev_compact: bool = False        # per Service the smallest size >= 100 x its backends
    maglev_seed: int = 0                # the same on every node: every node builds the same tables
    node_ips: tuple = ()                # the applier finds the tc programs' devices by these
    cluster_cidrs: tuple = ()           # (and by the routes into these)
