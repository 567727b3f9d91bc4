"""`netplane explain`: what the proxy does to a packet, in words (or --json).

Exit code: 0 the packet reaches an endpoint; 1 it is rejected or dropped;
3 no Service port matches it and it passes untouched; 2 bad input."""
import sys

from netplane.cli.proxy import add_options, proxy_config
from netplane.logs import configure_logging


def add_parser(sub) -> None:
    e = sub.add_parser("explain", help="say what the proxy does to a packet: its endpoints and their chances, "
                                       "a rejection or a drop, masquerading, and the rule that decided",
                       description=__doc__.splitlines()[0], epilog=" ".join(__doc__.splitlines()[2:]))
    e.add_argument("source", metavar="SRC", help="the client's address, e.g. 10.244.1.5")
    e.add_argument("destination", metavar="DST:PORT[/PROTO]",
                   help="where it connects, e.g. 10.96.0.10:80/tcp or [fd00::10]:53/udp (tcp by default)")
    add_options(e)
    e.add_argument("--manifests", metavar="DIR|FILE",
                   help="explain the rules a compile of these Service and EndpointSlice manifests would make "
                        "(no root); without it, the live kernel state of this network namespace is read")
    e.add_argument("--netns", metavar="NAME", help="read the live state of /run/netns/NAME (a lab node)")
    e.add_argument("--json", action="store_true", help="print the answer as JSON, for scripts")
    e.set_defaults(func=_explain, kubeconfig=None, in_cluster=None, sync_period=None, min_sync_period=None,
                   full_sync_period=None, healthz_bind_address=None, metrics_bind_address=None)


def _explain(args) -> int:
    from netplane.explain import command, words
    from netplane.explain.packet import parse

    packet = parse(args.source, args.destination)
    cfg, checked = proxy_config(args)
    configure_logging("WARNING")
    mode = args.mode or (cfg.mode if args.config else None)
    x = command.explain(packet, cfg, checked, manifests=args.manifests, mode=mode, netns=args.netns)
    sys.stdout.write(command.dumps(x) if args.json else words.render(x))
    return x.exit_code
