"""`netplane cni`: installing the CNI plugin on a node."""
import sys

from netplane.cni import config
from netplane.cli.common import UsageError


def add_parser(sub) -> None:
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
    p.add_argument("--client", default="native", choices=["native", "python"],
                   help="the plugin executable: native (static, needs nothing on the host; default) "
                        "or python (its twin, run by --python)")
    p.add_argument("--no-standalone", dest="standalone", action="store_false",
                   help="when no agent answers, answer CNI error 11 (try again later) instead of "
                        "running the plugin in-process with --python")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for the standalone path and the python client (default: this one)")
    p.set_defaults(func=_cni_install)


def _cni_install(args) -> int:
    from netplane.cni import install

    plugin_conf = {key: value for key, value in (
        ("subnet", args.subnet or None), ("bridge", args.bridge), ("mtu", args.mtu),
        ("dataDir", args.data_dir), ("stateFile", args.state_file)) if value is not None}
    try:
        written = install.install(args.bin_dir, args.conf_dir, client=args.client, standalone=args.standalone,
                                  python=args.python, agent_socket=args.agent_socket,
                                  name=args.name, plugin_conf=plugin_conf, cni_version=args.cni_version)
    except install.InstallError as err:
        raise UsageError(str(err)) from None
    for path in written:
        print(path)
    return 0
