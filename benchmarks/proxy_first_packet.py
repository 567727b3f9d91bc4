"""The data path's first packet, for every proxy mode, side by side in one run.

What the nftables-mode issue asks: "First packet (connect + first byte
through the node; the median of >= 5 interleaved rounds of >= 400
connections, with the spread reported): at 10k Services against 100, a
ratio <= 1.05. Through the VIP against straight to the pod: <= 1.10."

Method, per mode (one lab each, the modes one after the other): a 3-node
lab (routed, 2 pods per node); node2-pod1 runs the echo server. The proxies
on node1 and node3 run the mode under test but read different manifests:
node1's a cluster of SMALL Services, node3's one of LARGE (counts include
the measured Service zz-target, 10.96.255.254:80 -> node2-pod1:8080, which
sorts last; the others have 10 endpoints each, fake pod IPs). node2 runs no
proxy. From a worker process in node1-pod1 and one in node3-pod1, each
connection is timed from connect() to the first byte back (a byte sent
meanwhile; SO_LINGER 0 closes). Four targets: the cluster IP from each
client (crossing a small or a large cluster's node) and node2-pod1's IP
straight from each client. Each of R rounds runs one block of C
connections per target, the order rotating by one target per round.
Reported per target: the median over rounds of the per-round median, with
the spread (min..max of the per-round medians); the ratios VIP(large) /
VIP(small) and VIP / direct on each client node, with the spread of the
same-round ratios. The direct targets are also measured before any proxy
starts (no rules at all). Details: netplane/bench/first_packet.py.

Writes proxy_first_packet.{json,md,png} to benchmarks/results/ (or --out)
and prints the table. Needs root; everything happens inside the labs'
namespaces, and each lab is torn down, also on failure, Ctrl-C or SIGTERM.

Usage: python benchmarks/proxy_first_packet.py [--modes iptables,nftables] [--sizes 100,10000]
           [--rounds 7] [--connections 400] [--out DIR]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # the harness of this tree

from netplane.bench import first_packet as bench   # noqa: E402


def main(argv=None) -> int:
    return bench.main(argv, bench.TARGETS, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
