"""`netplane agent`: the node agent's flags, checked before it starts."""
import os
import socket

from netplane.agent.ports import DEFAULT_HEALTHZ_ADDRESS, DEFAULT_METRICS_ADDRESS
from netplane.cni import config
from netplane.cni.errors import CniError
from netplane.cli.common import UsageError, configure_logging_from
from netplane.logs import FORMATS
from netplane.errors import require_net_admin


def add_parser(sub) -> None:
    p = sub.add_parser("agent", help="run the node agent: the CNI fast path and the pod network across nodes")
    p.add_argument("--cni-socket", default="@netplane-cni",
                   help="where to serve the CNI plugin: @name (abstract, per netns; default) or a path")
    p.add_argument("--node-name", default="", help="this node's name (default with a node source: the hostname)")
    p.add_argument("--pod-cidr", action="append", default=[],
                   help="this node's pod CIDR (repeat for dual-stack); publishes the node state file "
                        "(without a node source)")
    p.add_argument("--mtu", type=int, help="pod MTU to publish with --pod-cidr")
    p.add_argument("--state-file", default=config.DEFAULT_STATE_FILE, help="node state file the plugin reads")
    p.add_argument("--sync-teardown", action="store_true",
                   help="delete a pod's veth inside DEL instead of cutting it off and deleting it in the background")
    net = p.add_argument_group("pod network across nodes (needs a node source)")
    source = net.add_mutually_exclusive_group()
    source.add_argument("--nodes-file", help="a file of Node manifests (YAML or JSON), watched for changes")
    source.add_argument("--kubeconfig", help="watch Node objects on the API server this kubeconfig names")
    source.add_argument("--in-cluster", action="store_true", help="watch Node objects, with in-cluster credentials")
    net.add_argument("--mode", default="vxlan", choices=["vxlan", "routed"], help="vxlan overlay (default) or routes")
    net.add_argument("--vni", type=int, default=1, help="VXLAN network identifier (default 1)")
    net.add_argument("--vxlan-port", type=int, default=8472, help="VXLAN UDP port (default 8472, as Linux and flannel)")
    net.add_argument("--resync-interval", type=float, default=30.0,
                     help="seconds between full reconciliations (default 30)")
    net.add_argument("--status-file", default="/run/netplane/network.json", help="where to report the pod network")
    observe = p.add_argument_group("health and metrics")
    observe.add_argument("--healthz-bind-address", default=DEFAULT_HEALTHZ_ADDRESS, metavar="HOST:PORT",
                         help=f"serve /healthz and /livez here ('' turns them off; default {DEFAULT_HEALTHZ_ADDRESS})")
    observe.add_argument("--metrics-bind-address", default=DEFAULT_METRICS_ADDRESS, metavar="HOST:PORT",
                         help=f"serve Prometheus /metrics here ('' turns it off; default {DEFAULT_METRICS_ADDRESS})")
    p.add_argument("--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-file", help="log here instead of stderr")
    p.add_argument("--logging-format", choices=FORMATS, default="text",
                   help="text (key=value, default) or json (one object per line)")
    p.set_defaults(func=_agent)


def _agent(args) -> int:
    from netplane.agent import main as agent

    require_net_admin("netplane agent")
    healthz = _bind_address(args.healthz_bind_address, "--healthz-bind-address")
    metrics = _bind_address(args.metrics_bind_address, "--metrics-bind-address")
    network = _pod_network(args)
    configure_logging_from(args, log_format=args.logging_format)
    if args.pod_cidr:
        cidrs = _flag(config.parse_subnets, args.pod_cidr, "--pod-cidr")
        mtu = _flag(config.parse_mtu, args.mtu, "--mtu") if args.mtu is not None else None
        agent.publish_node_state(args.state_file, args.node_name, cidrs, mtu)
    return agent.run(args.cni_socket, deferred_teardown=not args.sync_teardown, network=network,
                     healthz=healthz, metrics=metrics)


def _pod_network(args):
    """The pod-network controller the flags describe, or None without a node source."""
    if not (args.nodes_file is not None or args.kubeconfig is not None or args.in_cluster):
        if args.pod_cidr or args.mtu is None:
            return None
        raise UsageError("--mtu needs --pod-cidr (with a node source the MTU follows the underlay)")
    if args.pod_cidr or args.mtu is not None:
        raise UsageError("--pod-cidr and --mtu come from the node source; give one or the other")
    from netplane.podnet.controller import Controller
    from netplane.podnet.plan import Settings

    if not 1 <= args.vni <= 0xFFFFFF:
        raise UsageError(f"--vni {args.vni}: must be 1..16777215")
    if not 1 <= args.vxlan_port <= 65535:
        raise UsageError(f"--vxlan-port {args.vxlan_port}: must be 1..65535")
    if not 0 < args.resync_interval <= 86400:
        raise UsageError("--resync-interval must be more than 0 and at most 86400 seconds")
    _check_writable(args.status_file, "--status-file")
    _check_writable(args.state_file, "--state-file")
    settings = Settings(mode=args.mode, vni=args.vni, port=args.vxlan_port)
    return Controller(_node_source(args), args.node_name or socket.gethostname().lower(), settings,
                      args.state_file, args.status_file, args.resync_interval)


def _bind_address(text: str, flag: str) -> tuple[str, int] | None:
    """host:port as netplane proxy reads its own (None: turned off)."""
    from netplane.proxy.config import ConfigError, bind_address

    try:
        return bind_address(text, flag)
    except ConfigError as err:
        raise UsageError(str(err)) from None


def _check_writable(path: str, flag: str) -> None:
    """Refuse a file the agent could never write, before it starts (it makes missing directories)."""
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(directory):
        directory = os.path.dirname(directory)
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise UsageError(f"{flag} {path}: {directory} is not a writable directory")


def _node_source(args):
    from netplane.podnet import sources

    if args.nodes_file is not None:
        if not os.path.isfile(args.nodes_file):
            raise UsageError(f"--nodes-file {args.nodes_file}: no such file")
        return sources.FileSource(os.path.abspath(args.nodes_file))
    from netplane.kube import client

    if args.kubeconfig == "":
        raise UsageError("--kubeconfig: empty path (use --in-cluster for in-cluster credentials)")
    try:
        return sources.KubeSource(client.api_client(None if args.in_cluster else args.kubeconfig))
    except client.KubeConfigError as err:
        raise UsageError(str(err)) from None


def _flag(parse, value, flag: str):
    """Validate a flag with the config parser, reporting it by its flag name."""
    try:
        return parse(value, flag)
    except CniError as err:
        raise UsageError(f"{flag}: {err.details}") from None
