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
import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # the harness of this tree

from netplane.bench import first_packet as bench   # noqa: E402


def parse_args(argv=None):
    from netplane.proxy import modes

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default=",".join(modes.available()),
                   help="proxy modes, comma-separated (default: every mode this kernel runs: %(default)s)")
    p.add_argument("--sizes", default="100,10000",
                   help="SMALL,LARGE: Services on node1's and node3's proxy, the measured one included")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (at least 5 for the issue's numbers)")
    p.add_argument("--connections", type=int, default=400, help="connections per target per round")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    for m in args.modes:
        if m not in modes.names():
            p.error(f"--modes: unknown mode {m!r}; known: {', '.join(modes.names())}")
    try:
        args.sizes = tuple(int(x) for x in args.sizes.split(","))
    except ValueError:
        p.error("--sizes: two integers, SMALL,LARGE")
    if len(args.sizes) != 2 or min(args.sizes) < 1:
        p.error("--sizes: two positive integers, SMALL,LARGE")
    if args.rounds < 1 or args.connections < 1:
        p.error("--rounds and --connections must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every lab's `finally: lab.down()` runs
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(128 + s)))
    report = bench.run(args.modes, args.sizes, args.rounds, args.connections,
                       say=lambda text: print(text, flush=True))
    paths = bench.write(report, args.out)
    print()
    print("\n".join(bench.table(report)))
    print()
    print("\n".join(bench.ratio_table(report)))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
