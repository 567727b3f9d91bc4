"""A new connection through a node port from outside the cluster, for every
proxy mode, side by side in one run, through the running daemon.

What the eBPF mode's issue asks: "A new connection through a NodePort from
outside (connect + first byte back), at 10k Services against 100: ratio
<= 1.05; and the eBPF mode against the nftables mode at 10k: <= 1.05.
Medians of >= 5 interleaved rounds, with the spread reported."

The first-packet benchmark's labs (benchmarks/proxy_first_packet.py, one
per mode, the modes one after the other; node1's proxy holds SMALL
Services, node3's LARGE; the server node2-pod1, whose node runs no proxy),
plus the lab's external client namespace (192.168.200.2 on the underlay
segment with the nodes), where a third worker runs. The measured Service
is type NodePort (nodePort 32600, externalTrafficPolicy Cluster), its only
endpoint node2-pod1: remote to node1 and node3, so each node DNATs the
client's connection to the pod and SNATs it to its own address. Every 4th
filler Service is a NodePort too (at most 2,500). Seven targets,
interleaved in every round with the order rotating: the pod targets of
the first-packet benchmark (cluster IP and pod IP from node1-pod1 and
node3-pod1), and from the client nodeport-small (node1's IP : nodePort),
nodeport-large (node3's) and direct-client (the pod IP, through a route
via node2 in the client namespace only). Every answer must name
node2-pod1 and, as the client it saw, the node (through a node port) or
the client (direct). Reported per target: the median over rounds of the
per-round median, and its spread; ratios per mode (NodePort large /
small, each against direct-client, and the pod side's), and across modes
the eBPF mode against nftables per target, of the per-mode medians.
Details: netplane/bench/first_packet.py.

Writes proxy_nodeport.{json,md,png} to benchmarks/results/ (or --out) and
prints the tables. Needs root; everything happens inside the labs'
namespaces, and each lab is torn down, also on failure, Ctrl-C or SIGTERM.

With --ab A,B (e.g. --ab ebpf,nftables) the two modes are compared in ONE lab
instead: node1's proxy runs mode A and node3's mode B, both reading the same
cluster (LARGE of --sizes, default 10,000 Services: the large side's
manifests); targets nodeport-node1, nodeport-node3, direct-client, vip-node1
and vip-node3, interleaved as above. Then a second lab with the nodes
swapped (node1 B, node3 A). Per lab the ratio A / B of the NodePort (and
cluster IP) medians, with the same-round spread; the result is the
geometric mean of the two labs' ratios, which cancels any node1/node3
asymmetry. Writes proxy_nodeport_ab.{json,md,png}.

Usage: python benchmarks/proxy_nodeport.py [--modes ebpf,nftables,iptables] [--sizes 100,10000]
           [--rounds 7] [--connections 400] [--out DIR]
       python benchmarks/proxy_nodeport.py --ab ebpf,nftables [--sizes 100,10000] [--rounds 7] ...
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # the harness of this tree

from netplane.bench import first_packet as bench   # noqa: E402


def main(argv=None) -> int:
    return bench.main(argv, bench.NODEPORT_TARGETS, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
