"""`netplane compile`: the rules the proxy would install, printed, no root.

Also a lint for CI: each problem (an object skipped, a file that does not
parse, a node-port address filter that matches nothing) is one warning on
stderr, and `--strict` turns any of them into exit status 1; the plan is
printed either way.
"""
import gc
import sys
import time

from netplane.cli.common import Exit, UsageError
from netplane.cli.proxy import add_options, proxy_config
from netplane.logs import configure_logging


def add_parser(sub) -> None:
    c = sub.add_parser("compile", help="print the rules the proxy would install for manifests (no root)")
    add_options(c)
    c.add_argument("--manifests", required=True,
                   help="Service and EndpointSlice manifests: a directory, or one file (other kinds are ignored)")
    c.add_argument("--timing", action="store_true", help="print how long each phase took, on stderr")
    c.add_argument("--strict", action="store_true",
                   help="exit 1 when an object was skipped or a node-port address filter matches nothing")
    c.set_defaults(func=_compile, kubeconfig=None, in_cluster=None, sync_period=None, min_sync_period=None,
                   full_sync_period=None, healthz_bind_address=None, metrics_bind_address=None)


def _compile(args) -> int:
    from netplane.proxy import dry_run
    from netplane.proxy.manifest_source import problem

    cfg, checked = proxy_config(args)
    if why := problem(cfg.manifests):
        raise UsageError(f"manifests {cfg.manifests}: {why}")
    configure_logging("WARNING")
    timing: dict[str, float] = {}
    started = time.perf_counter()
    Exit.fast = True
    gc.disable()         # to the end: the millions of objects made stay until the process ends (see run())
    result = dry_run.compile_plan(cfg, checked, timing)
    sys.stdout.write(result.text)
    sys.stdout.flush()
    timing["print"] = time.perf_counter() - started - sum(timing.values())
    if args.timing:
        phases = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timing.items())
        print(f"compile timing: {phases}; total {sum(timing.values()) * 1000:.1f} ms", file=sys.stderr)
    if args.strict and result.problems:
        print(f"netplane compile: --strict: {len(result.problems)} problem(s), see the warnings above",
              file=sys.stderr)
        return 1
    return 0
