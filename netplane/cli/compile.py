"""`netplane compile`: the rules the proxy would install, printed, no root."""
import gc
import sys
import time

from netplane.cli.common import Exit
from netplane.cli.proxy import add_options, check_source, proxy_config
from netplane.logs import configure_logging


def add_parser(sub) -> None:
    c = sub.add_parser("compile", help="print the rules the proxy would install for a manifests directory (no root)")
    add_options(c)
    c.add_argument("--manifests", required=True, help="a directory of Service and EndpointSlice manifests")
    c.add_argument("--timing", action="store_true", help="print how long each phase took, on stderr")
    c.set_defaults(func=_compile, kubeconfig=None, in_cluster=None, sync_period=None, min_sync_period=None,
                   full_sync_period=None, healthz_bind_address=None, metrics_bind_address=None)


def _compile(args) -> int:
    from netplane.proxy import daemon

    cfg, checked = proxy_config(args)
    check_source(cfg)
    configure_logging("WARNING")
    timing: dict[str, float] = {}
    started = time.perf_counter()
    Exit.fast = True
    gc.disable()         # to the end: the millions of objects made stay until the process ends (see run())
    sys.stdout.write(daemon.compile_plan(cfg, checked, timing))
    sys.stdout.flush()
    timing["print"] = time.perf_counter() - started - sum(timing.values())
    if args.timing:
        phases = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timing.items())
        print(f"compile timing: {phases}; total {sum(timing.values()) * 1000:.1f} ms", file=sys.stderr)
    return 0
