"""Network programming through the running proxy daemon, end to end: a
manifest file written -> the kernel answering with the change.

For each size N (Services of 10 endpoints; the measured one's endpoint
moves between two local pods), `netplane proxy` is started as a user
would, in a throwaway network namespace, and measured from outside:
full sync (spawn -> first answer through the Service IP), network-
programming latency (file write -> first answer from the new pod;
p50/p90/max and every sample), the cost of a sync with nothing to do (the
daemon's logged durations in a run with a short --sync-period), idle CPU,
and RSS after the first sync and over a soak of K partial syncs. What and
how: netplane/bench/programming.py.

Writes proxy_programming[_TAG].{json,md,png} to benchmarks/results/ (or
--out). Needs root; namespaces and processes are removed on exit, failure,
Ctrl-C and SIGTERM.

Usage: python benchmarks/proxy_programming.py [--mode iptables] [--flags '--iptables-layout compact']
           [--sizes 1000,10000] [--changes 10] [--soak 1000,100] [--netplane PATH] [--baseline PATH]
           [--tag TAG] [--out DIR]
       python benchmarks/proxy_programming.py --render benchmarks/results/proxy_programming.json
"""
import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # the harness of this tree

from netplane.bench import programming as bench   # noqa: E402

NAME = "proxy_programming"


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="iptables", help="proxy mode(s), comma-separated")
    p.add_argument("--flags", default="", help="extra daemon flags for every run (one shell-quoted string)")
    p.add_argument("--sizes", default="1000,10000", type=ints, help="numbers of Services")
    p.add_argument("--changes", type=int, default=10)
    p.add_argument("--gap", type=float, default=2.0, help="s between one change's answer and the next write")
    p.add_argument("--jitter", type=float, default=1.0, help="plus a random 0..JITTER s (the source polls every 1 s)")
    p.add_argument("--soak", default="1000", type=ints,
                   help="partial syncs in the soak run: one value, or one per size (0: skip the soak)")
    p.add_argument("--soak-flags", default="--sync-period 200ms --min-sync-period 100ms",
                   help="flags added for the soak run (also the empty-sync window)")
    p.add_argument("--rss-every", type=int, default=100)
    p.add_argument("--idle-window", type=float, default=30.0, help="s of idle CPU, default periods")
    p.add_argument("--idle-sync-window", type=float, default=10.0, help="s of empty syncs in the soak run")
    p.add_argument("--probe-interval", type=float, default=0.001)
    p.add_argument("--probe-timeout", type=float, default=0.05)
    p.add_argument("--start-timeout", type=float, default=1200.0)
    p.add_argument("--no-cleanup", action="store_true", help="skip `netplane proxy --cleanup` after each run")
    p.add_argument("--netplane", default=str(Path(sys.executable).with_name("netplane")),
                   help="the netplane executable under test (default: this venv's)")
    p.add_argument("--baseline", metavar="PATH", help="another build's netplane binary (e.g. an older checkout's "
                                                      ".venv/bin/netplane): each size runs it, then this one, and "
                                                      "the report gives their ratios")
    p.add_argument("--tag", default="", help="suffix of the output names: proxy_programming_TAG.*")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--keep-temp", action="store_true", help="keep manifests and daemon logs")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: write the Markdown and the plot again from a results JSON")
    args = p.parse_args(argv)
    if len(args.soak) not in (1, len(args.sizes)):
        p.error("--soak: give one value, or one per size")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text())
        name = args.render.name.removesuffix(".json")
        bench.write_report(report, args.render.parent, name)
        print(f"wrote {args.render.parent / name}.{{md,png}}")
        return 0
    params = bench.Params(netplane=args.netplane, changes=args.changes, gap=args.gap, jitter=args.jitter, soak=args.soak[0],
                          soak_flags=tuple(shlex.split(args.soak_flags)), rss_every=args.rss_every,
                          idle_window=args.idle_window, idle_sync_window=args.idle_sync_window,
                          probe_interval=args.probe_interval, probe_timeout=args.probe_timeout,
                          start_timeout=args.start_timeout, cleanup=not args.no_cleanup, keep_temp=args.keep_temp)
    modes = [bench.mode(m, shlex.split(args.flags)) for m in args.mode.split(",")]
    soaks = args.soak * len(args.sizes) if len(args.soak) == 1 else args.soak
    builds = {"before": args.baseline, "after": args.netplane} if args.baseline else None
    report = bench.run(modes, args.sizes, params, soaks, say=lambda s: print(s, flush=True), builds=builds)
    name = f"{NAME}_{args.tag}" if args.tag else NAME
    paths = bench.write_report(report, args.out, name)
    print("\n".join(bench.TABLE + [bench.table_row(r) for r in report["results"]] + [""]
                    + bench.ratio_lines(report["results"])))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
