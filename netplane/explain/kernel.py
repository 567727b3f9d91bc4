"""One family's state of one proxy mode, in the form that mode's fake
kernel holds it (netplane/testing/), and the mode's tracer over it.

Both ways of explaining end here: a compile of manifests programs the
fake kernel through the mode's real applier (compiled.py), and the live
kernel is read into the same form (live.py). The tracers are the semantic
suite's, so what `netplane explain` says is what the suite checks.
"""
from dataclasses import dataclass
from typing import Any

from netplane.errors import OperatorError
from netplane.explain.packet import Packet
from netplane.testing.ebpf import trace_maps
from netplane.testing.iptables_trace import Tracer as IptablesTracer
from netplane.testing.ipvs_trace import IpvsTracer
from netplane.testing.nftables_trace import Tracer as NftTracer
from netplane.testing.verdict import Verdict


@dataclass
class Kernel:
    mode: str
    family: int
    # iptables: {table: {chain: [rule]}}; nftables: the table ({"chains", "base", "sets"});
    # ebpf: the maps (services, backends, nodeports, source_ranges, tables); ipvs: (nft table, virtual servers)
    state: Any
    local: tuple[str, ...]              # the node's addresses (ipvs: with np-ipvs0's)
    cluster_cidrs: tuple = ()           # ebpf: a pod's connection is a socket's on this node

    def trace(self, packet: Packet) -> Verdict:
        args = (packet.src, packet.proto, packet.dst, packet.port)
        try:
            if self.mode == "iptables":
                return IptablesTracer(self.state, self.local).trace(*args)
            if self.mode == "nftables":
                return NftTracer(self.state, self.local).trace(*args)
            if self.mode == "ebpf":
                return trace_maps(self.state, self.cluster_cidrs, self.local, *args)
            if self.mode == "ipvs":
                table, servers = self.state
                return IpvsTracer(table, self.local, servers).trace(*args)
        except AssertionError as err:     # the tracers refuse what they cannot read, rather than guess
            raise OperatorError(f"cannot explain the {self.mode} mode's state: {err}") from None
        raise OperatorError(f"netplane explain does not know the {self.mode} mode")
