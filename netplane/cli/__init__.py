"""The `netplane` command: one entry point, a module per subcommand.

    agent    the node agent (agent.py)
    bench    benchmarks users run (bench.py)
    cni      CNI plugin tools (cni.py)
    lab      the namespaced cluster on this machine, and demo (lab.py)
    proxy    the service proxy daemon (proxy.py)
    compile  the proxy's rules for manifests, no root (compile.py)
    explain  what the proxy does to a packet, in any mode (explain.py)
"""
import logging
import os
import sys

from netplane.cli import agent, bench, cni, compile, explain, lab, proxy
from netplane.cli.common import Exit, Parser
from netplane.errors import OperatorError


def run() -> None:
    """The console script: main(), then exit (at once, if a command asked: common.Exit)."""
    code = main()
    if Exit.fast:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except OperatorError as err:
        print(f"netplane: {err}", file=sys.stderr)
        return 2


def _parser() -> Parser:
    parser = Parser(prog="netplane", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(metavar="COMMAND", parser_class=Parser)
    for module in (agent, bench, cni, lab, proxy, compile, explain):
        module.add_parser(sub)
    return parser
