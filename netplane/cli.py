"""The `netplane` command: one entry point, a subcommand per job."""
import argparse
import sys

from netplane.cni import config
from netplane.cni.errors import CniError
from netplane.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageError as err:
        print(f"netplane: {err}", file=sys.stderr)
        return 2


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netplane", description=__doc__)
    sub = parser.add_subparsers(metavar="COMMAND")
    _agent_parser(sub)
    _cni_parser(sub)
    demo = sub.add_parser("demo", help="wire three pods on a throwaway node through the real plugin and ping them")
    demo.add_argument("--pods", type=int, default=3, help="how many pods (default 3)")
    demo.set_defaults(func=_demo)
    return parser


def _agent_parser(sub) -> None:
    p = sub.add_parser("agent", help="run the node agent (serves the CNI fast path)")
    p.add_argument("--cni-socket", default="@netplane-cni",
                   help="where to serve the CNI plugin: @name (abstract, per netns; default) or a path")
    p.add_argument("--node-name", default="", help="this node's name, recorded in the state file")
    p.add_argument("--pod-cidr", action="append", default=[],
                   help="this node's pod CIDR (repeat for dual-stack); publishes the node state file")
    p.add_argument("--mtu", type=int, help="pod MTU to publish in the node state file")
    p.add_argument("--state-file", default=config.DEFAULT_STATE_FILE, help="node state file the plugin reads")
    p.add_argument("--sync-teardown", action="store_true",
                   help="delete a pod's veth inside DEL instead of cutting it off and deleting it in the background")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-file", help="log here instead of stderr")
    p.set_defaults(func=_agent)


def _cni_parser(sub) -> None:
    cni = sub.add_parser("cni", help="CNI plugin tools").add_subparsers(metavar="ACTION")
    p = cni.add_parser("install", help="install the plugin executable (and optionally a conflist)")
    p.add_argument("--bin-dir", required=True, help="CNI bin directory, e.g. /opt/cni/bin")
    p.add_argument("--conf-dir", help="also write 10-netplane.conflist here, e.g. /etc/cni/net.d")
    p.add_argument("--name", default="netplane", help="network name in the conflist")
    p.add_argument("--subnet", action="append", default=[], help="pod CIDR (repeat for dual-stack); "
                   "omit to read it from the agent's node state file")
    p.add_argument("--bridge", help=f"node bridge (default {config.DEFAULT_BRIDGE})")
    p.add_argument("--mtu", type=int, help="pod MTU")
    p.add_argument("--data-dir", help=f"IPAM directory (default {config.DEFAULT_DATA_DIR})")
    p.add_argument("--state-file", help=f"node state file (default {config.DEFAULT_STATE_FILE})")
    p.add_argument("--cni-version", default="1.0.0", choices=["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
                   help="cniVersion of the conflist (default 1.0.0, which every current runtime parses; "
                        "1.1.0 enables GC and STATUS)")
    p.add_argument("--agent-socket", default="@netplane-cni", help="the agent socket the plugin tries first")
    p.add_argument("--python", default=sys.executable, help="interpreter for the plugin (default: this one)")
    p.set_defaults(func=_cni_install)


def _agent(args) -> int:
    from netplane.agent import main as agent

    configure_logging(args.log_level, path=args.log_file)
    if args.pod_cidr:
        cidrs = _flag(config.parse_subnets, args.pod_cidr, "--pod-cidr")
        mtu = _flag(config.parse_mtu, args.mtu, "--mtu") if args.mtu is not None else None
        agent.publish_node_state(args.state_file, args.node_name, cidrs, mtu)
    return agent.run(args.cni_socket, deferred_teardown=not args.sync_teardown)


def _flag(parse, value, flag: str):
    """Validate a flag with the config parser, reporting it by its flag name."""
    try:
        return parse(value, flag)
    except CniError as err:
        raise UsageError(f"{flag}: {err.details}") from None


def _cni_install(args) -> int:
    from netplane.cni import install

    plugin_conf = {key: value for key, value in (
        ("subnet", args.subnet or None), ("bridge", args.bridge), ("mtu", args.mtu),
        ("dataDir", args.data_dir), ("stateFile", args.state_file)) if value is not None}
    try:
        written = install.install(args.bin_dir, args.conf_dir, python=args.python, agent_socket=args.agent_socket,
                                  name=args.name, plugin_conf=plugin_conf, cni_version=args.cni_version)
    except install.InstallError as err:
        raise UsageError(str(err)) from None
    for path in written:
        print(path)
    return 0


def _demo(args) -> int:
    from netplane import demo

    if args.pods < 2:
        raise UsageError("--pods must be at least 2")
    return demo.run(args.pods)
