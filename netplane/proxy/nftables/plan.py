"""The nftables plan: the in-memory mirror of what the table holds, and the
transaction that gets the kernel there. Plain data; render.py writes it as
an nft script.

The mirror is the truth for partial syncs (the table is never listed back
then, which is what made kube-proxy's nftables mode slow at scale): every
element with its value and the port that owns it, the shared path chains
with how many ports use them, and each port's fragment.
"""
from dataclasses import dataclass, field

from netplane.proxy.model import PortName
from netplane.proxy.nftables.context import Context
from netplane.proxy.nftables.names import TABLE


@dataclass
class Transaction:
    """One atomic nft transaction, as data, in the order it is rendered:
    objects first, then what empties them, then what fills them, and last
    the deletions that had to wait (see compile.py, "stale")."""
    family: int
    full: bool = False
    table: str = TABLE                                          # the IPVS mode's rules live in a table of their own
    base_chains: dict[str, tuple[str, str, str]] = field(default_factory=dict)   # name -> (type, hook, priority)
    sets: dict[str, str] = field(default_factory=dict)          # name -> declaration body
    flush_sets: list[str] = field(default_factory=list)
    delete_elements: dict[str, list[tuple]] = field(default_factory=dict)   # map or set -> keys
    chains: list[str] = field(default_factory=list)             # chains added (if new) and flushed
    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)         # chain -> its rules (after the flush)
    flush_chains: list[str] = field(default_factory=list)       # emptied now, deleted later
    add_elements: dict[str, list[tuple]] = field(default_factory=dict)      # map or set -> (key, value) pairs
    delete_chains: list[str] = field(default_factory=list)
    delete_sets: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.full or self.sets or self.flush_sets or self.chains or self.flush_chains
                    or self.delete_chains or self.delete_sets or any(self.delete_elements.values())
                    or any(self.add_elements.values()))


@dataclass
class Plan:
    context: Context
    fragments: dict[PortName, object]                      # port -> Fragment
    elements: dict[str, dict[tuple, tuple]]                # map or set -> key -> (value, owner port)
    contested: dict[tuple, list[PortName]]                 # (map, key) -> the other ports claiming it
    shapes: dict[tuple, int]                               # shared path chain shape -> ports using it
    own_chains: dict[str, tuple[str, ...]]                 # affinity ports' chains -> rules
    own_sets: dict[str, int]                               # affinity ports' sets -> timeout
    stale: dict[str, tuple[str, float]]                    # chain or set flushed -> ("chain"|"set", when)
    transaction: Transaction
