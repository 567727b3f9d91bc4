"""`netplane proxy`: the service proxy's flags and config, checked before it starts."""
import argparse
import logging
import os

from netplane.cli.common import UsageError, boolean, commas, configure_logging_from
from netplane.logs import FORMATS
from netplane.errors import require_net_admin


def add_parser(sub) -> None:
    p = sub.add_parser("proxy", help="run the service proxy (kube-proxy replacement) on this node")
    add_options(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--manifests", help="a directory of Service and EndpointSlice manifests, or one file, watched")
    source.add_argument("--kubeconfig", help="watch Services and EndpointSlices on the API server it names")
    source.add_argument("--in-cluster", action="store_true", default=None, help="watch them with in-cluster credentials")
    p.add_argument("--once", action="store_true", help="sync once and exit")
    p.add_argument("--cleanup", action="store_true", help="remove everything netplane installed for the mode, and exit")
    # kube-proxy's flag names are accepted too, so its command lines carry over.
    p.add_argument("--sync-period", "--iptables-sync-period", help="longest time between syncs, e.g. 30s (default 30s)")
    p.add_argument("--min-sync-period", "--iptables-min-sync-period",
                   help="shortest time between syncs, e.g. 1s (default 1s)")
    p.add_argument("--full-sync-period", help="time between full syncs, e.g. 1h (default 1h)")
    p.add_argument("--healthz-bind-address", help="host:port for /healthz and /livez (default 0.0.0.0:10256; '' off)")
    p.add_argument("--metrics-bind-address", help="host:port for /metrics and /proxyMode (default 127.0.0.1:10249; '' off)")
    p.add_argument("--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="default INFO")
    p.add_argument("--v", type=verbosity, dest="verbosity",
                   help="kube-proxy's verbosity, 0 or more: 4 and up is --log-level DEBUG")
    p.add_argument("--log-file", help="log here instead of stderr")
    p.add_argument("--logging-format", choices=FORMATS,
                   help="text (key=value, default) or json (one object per line, as kube-proxy's)")
    from netplane.proxy import conntrack_settings

    conntrack_settings.add_flags(p.add_argument_group("kube-proxy's conntrack settings (written in the node's "
                                                      "network namespace at start)"))
    p.set_defaults(func=_proxy)


def verbosity(text: str) -> int:
    """--v as kube-proxy reads it: a whole number, 0 or more (klog's level is unsigned)."""
    try:
        level = int(text)
    except ValueError:
        level = -1
    if level < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a verbosity: use a whole number, 0 or more")
    return level


def add_options(p) -> None:
    p.add_argument("--config", help="a config file (YAML; a kube-proxy KubeProxyConfiguration works); flags win")
    p.add_argument("--mode", "--proxy-mode", dest="mode", help="proxy mode (default iptables)")
    p.add_argument("--node-name", "--hostname-override", dest="node_name",
                   help="this node's name (default: the hostname)")
    p.add_argument("--node-ip", action="append", help="this node's IP (repeat, or comma-separate, for dual-stack)")
    p.add_argument("--zone", help="this node's zone, for topology hints")
    p.add_argument("--cluster-cidr", help="the pod network, one CIDR per family, comma-separated; "
                                          "traffic from outside it is masqueraded")
    p.add_argument("--service-cidr", help="the Service CIDRs (comma-separated): the nftables mode drops traffic "
                                          "to their addresses that no Service holds")
    p.add_argument("--nodeport-addresses", help="CIDRs (comma-separated) or 'primary': node ports answer only on "
                                                "this node's addresses inside them (default: every local address)")
    p.add_argument("--masquerade-all", nargs="?", const=True, type=boolean, default=None, metavar="BOOL",
                   help="masquerade all service traffic (also --masquerade-all=true|false, as kube-proxy takes it)")
    p.add_argument("--masquerade-bit", "--iptables-masquerade-bit", dest="masquerade_bit", type=int,
                   help="the packet mark bit that means 'masquerade' (default 14)")
    from netplane.proxy import modes, options

    for name in modes.names():                   # each mode's own flags, such as --iptables-layout
        options.add_flags(p, modes.get(name).options)


def proxy_config(args):
    from netplane.proxy import config, conntrack_settings, modes, options

    try:
        base = config.load_file(args.config) if args.config else config.ProxyConfig()
        flags = {"mode": args.mode, "node_name": args.node_name, "zone": args.zone,
                 "node_ips": commas(args.node_ip), "cluster_cidrs": commas(args.cluster_cidr),
                 "service_cidrs": commas(args.service_cidr),
                 "nodeport_addresses": commas(args.nodeport_addresses), "masquerade_all": args.masquerade_all,
                 "masquerade_bit": args.masquerade_bit, "manifests": args.manifests, "kubeconfig": args.kubeconfig,
                 "in_cluster": args.in_cluster, "healthz_bind_address": args.healthz_bind_address,
                 "metrics_bind_address": args.metrics_bind_address}
        for flag in ("sync_period", "min_sync_period", "full_sync_period"):
            value = getattr(args, flag)
            flags[flag] = config.duration(value, "--" + flag.replace("_", "-")) if value is not None else None
        flags["logging_format"] = getattr(args, "logging_format", None)
        flags["verbosity"] = getattr(args, "verbosity", None)
        cfg = config.merge(base, flags)
        cfg.conntrack = conntrack_settings.with_flags(cfg.conntrack, args)
        cfg.mode_options = {name: options.with_flags(config.options_of(cfg, name), args) for name in modes.names()}
        if sum(bool(x) for x in (cfg.manifests, cfg.kubeconfig, cfg.in_cluster)) > 1:
            raise config.ConfigError("give one source: --manifests, --kubeconfig or --in-cluster")
        return cfg, config.check(cfg, modes.names())
    except (config.ConfigError, options.OptionError) as err:
        raise UsageError(str(err)) from None


def _proxy(args) -> int:
    from netplane.proxy import daemon

    cfg, checked = proxy_config(args)
    configure_logging_from(args, cfg.verbosity, cfg.logging_format)
    require_net_admin("netplane proxy")
    if cfg.ignored:
        logging.getLogger("netplane.proxy").warning("config: ignoring kube-proxy fields", extra={"fields": cfg.ignored})
    if args.cleanup:
        for line in daemon.cleanup(cfg, checked):
            print(f"removed {line}")
        return 0
    if not (cfg.manifests or cfg.kubeconfig or cfg.in_cluster):
        raise UsageError("give a source: --manifests DIR|FILE, --kubeconfig FILE or --in-cluster")
    check_source(cfg)
    return daemon.run(cfg, checked, once=args.once)


def check_source(cfg) -> None:
    from netplane.proxy.manifest_source import problem

    if cfg.manifests is not None and (why := problem(cfg.manifests)):
        raise UsageError(f"manifests {cfg.manifests}: {why}")
    if cfg.kubeconfig is not None and not os.path.isfile(cfg.kubeconfig):
        raise UsageError(f"kubeconfig {cfg.kubeconfig}: no such file")
