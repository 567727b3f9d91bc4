"""`netplane bench`: benchmarks users run on their own node."""
import subprocess
import sys

from netplane.cli.common import UsageError


def add_parser(sub) -> None:
    from netplane.bench.proxy import command

    bench = sub.add_parser("bench", help="benchmarks users run on their own node").add_subparsers(metavar="WHAT")
    p = bench.add_parser("proxy", help="every proxy mode side by side, with kube-proxy's layout and no proxy")
    command.add_arguments(p)
    p.set_defaults(func=_bench, run=command.main)
    p = bench.add_parser("compare", help="set two result directories of `bench proxy` side by side")
    command.add_compare_arguments(p)
    p.set_defaults(func=_bench, run=command.compare)


def _bench(args) -> int:
    from netplane.bench.proxy.command import BenchError
    from netplane.bench.proxy.compare import CompareError
    from netplane.lab.lab import LabError

    try:
        return args.run(args)
    except (BenchError, CompareError, LabError) as err:
        raise UsageError(str(err)) from None
    except KeyboardInterrupt:
        print("netplane bench: interrupted; the lab is removed", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as err:
        # the lab is already removed (the runner's finally); one line, no traceback
        text = " ".join(str(err).split())[:500] or type(err).__name__
        print(f"netplane bench: failed: {text}", file=sys.stderr)
        return 1
