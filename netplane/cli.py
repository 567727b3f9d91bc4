"""The `netplane` command: one entry point, a subcommand per job."""
import argparse
import gc
import logging
import os
import socket
import subprocess
import sys
import time

from netplane.cni import config
from netplane.cni.errors import CniError
from netplane.errors import OperatorError, require_net_admin
from netplane.logs import configure_logging

LAB_VM_TIMEOUT = 1800.0        # s for `lab run` inside the emulated VM, boot included

def run() -> None:
    """The console script: main(), then exit. A one-shot command that built
    millions of objects (a compile at scale) leaves without freeing them one
    by one, which takes longer than the compile (0.4 s at 10k Services)."""
    code = main()
    if _exit_fast:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


_exit_fast = False


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


class UsageError(OperatorError):
    pass


def _configure_logging(args) -> None:
    # --log-level, else kube-proxy's --v (klog: 4 and up is debug output)
    level = args.log_level or ("DEBUG" if (getattr(args, "verbosity", None) or 0) >= 4 else "INFO")
    try:
        configure_logging(level, path=args.log_file)
    except OSError as exc:
        raise UsageError(f"--log-file {args.log_file}: {exc.strerror}") from None


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad flag said in one line (the usage block is what
    --help is for); subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="netplane", description=__doc__)
    sub = parser.add_subparsers(metavar="COMMAND")
    _agent_parser(sub)
    _bench_parser(sub)
    _cni_parser(sub)
    _lab_parser(sub)
    _proxy_parsers(sub)
    demo = sub.add_parser("demo", help="wire three pods on a throwaway node through the real plugin and ping them")
    demo.add_argument("--pods", type=int, default=3, help="how many pods (default 3)")
    demo.set_defaults(func=_demo)
    return parser


def _agent_parser(sub) -> None:
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
    p.add_argument("--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-file", help="log here instead of stderr")
    p.set_defaults(func=_agent)


def _bench_parser(sub) -> None:
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


def _proxy_parsers(sub) -> None:
    p = sub.add_parser("proxy", help="run the service proxy (kube-proxy replacement) on this node")
    _proxy_options(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--manifests", help="a directory of Service and EndpointSlice manifests, watched")
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
    p.add_argument("--metrics-bind-address", help="host:port for /metrics (default 127.0.0.1:10249; '' off)")
    p.add_argument("--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="default INFO")
    p.add_argument("--v", type=int, dest="verbosity", help="kube-proxy's verbosity: 4 and up is --log-level DEBUG")
    p.add_argument("--log-file", help="log here instead of stderr")
    p.set_defaults(func=_proxy)
    c = sub.add_parser("compile", help="print the rules the proxy would install for a manifests directory (no root)")
    _proxy_options(c)
    c.add_argument("--manifests", required=True, help="a directory of Service and EndpointSlice manifests")
    c.add_argument("--timing", action="store_true", help="print how long each phase took, on stderr")
    c.set_defaults(func=_compile, kubeconfig=None, in_cluster=None, sync_period=None, min_sync_period=None,
                   full_sync_period=None, healthz_bind_address=None, metrics_bind_address=None)


def _proxy_options(p) -> None:
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
    p.add_argument("--masquerade-all", nargs="?", const=True, type=_boolean, default=None, metavar="BOOL",
                   help="masquerade all service traffic (also --masquerade-all=true|false, as kube-proxy takes it)")
    p.add_argument("--masquerade-bit", "--iptables-masquerade-bit", dest="masquerade_bit", type=int,
                   help="the packet mark bit that means 'masquerade' (default 14)")
    from netplane.proxy import modes, options

    for name in modes.names():                   # each mode's own flags, such as --iptables-layout
        options.add_flags(p, modes.get(name).options)


def _boolean(text: str) -> bool:
    """A flag's value as Go's strconv.ParseBool reads it."""
    value = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return value


def _proxy_config(args):
    from netplane.proxy import config, modes, options

    try:
        base = config.load_file(args.config) if args.config else config.ProxyConfig()
        flags = {"mode": args.mode, "node_name": args.node_name, "zone": args.zone,
                 "node_ips": _commas(args.node_ip), "cluster_cidrs": _commas(args.cluster_cidr),
                 "service_cidrs": _commas(args.service_cidr),
                 "nodeport_addresses": _commas(args.nodeport_addresses), "masquerade_all": args.masquerade_all,
                 "masquerade_bit": args.masquerade_bit, "manifests": args.manifests, "kubeconfig": args.kubeconfig,
                 "in_cluster": args.in_cluster, "healthz_bind_address": args.healthz_bind_address,
                 "metrics_bind_address": args.metrics_bind_address}
        for flag in ("sync_period", "min_sync_period", "full_sync_period"):
            value = getattr(args, flag)
            flags[flag] = config.duration(value, "--" + flag.replace("_", "-")) if value is not None else None
        cfg = config.merge(base, flags)
        cfg.mode_options = {name: options.with_flags(config.options_of(cfg, name), args) for name in modes.names()}
        if sum(bool(x) for x in (cfg.manifests, cfg.kubeconfig, cfg.in_cluster)) > 1:
            raise config.ConfigError("give one source: --manifests, --kubeconfig or --in-cluster")
        return cfg, config.check(cfg, modes.names())
    except (config.ConfigError, options.OptionError) as err:
        raise UsageError(str(err)) from None


def _commas(values) -> list[str] | None:
    if values is None:
        return None
    items = values if isinstance(values, list) else [values]
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def _proxy(args) -> int:
    from netplane.proxy import daemon

    cfg, checked = _proxy_config(args)
    _configure_logging(args)
    require_net_admin("netplane proxy")
    for field in cfg.ignored:
        logging.getLogger("netplane.proxy").warning("config: ignoring kube-proxy field %s", field)
    if args.cleanup:
        for line in daemon.cleanup(cfg, checked):
            print(f"removed {line}")
        return 0
    if not (cfg.manifests or cfg.kubeconfig or cfg.in_cluster):
        raise UsageError("give a source: --manifests DIR, --kubeconfig FILE or --in-cluster")
    _check_source(cfg)
    return daemon.run(cfg, checked, once=args.once)


def _check_source(cfg) -> None:
    if cfg.manifests is not None and not os.path.isdir(cfg.manifests):
        raise UsageError(f"manifests {cfg.manifests}: no such directory")
    if cfg.kubeconfig is not None and not os.path.isfile(cfg.kubeconfig):
        raise UsageError(f"kubeconfig {cfg.kubeconfig}: no such file")


def _compile(args) -> int:
    from netplane.proxy import daemon

    cfg, checked = _proxy_config(args)
    _check_source(cfg)
    configure_logging("WARNING")
    timing: dict[str, float] = {}
    started = time.perf_counter()
    global _exit_fast
    _exit_fast = True
    gc.disable()         # to the end: the millions of objects made stay until the process ends (see run())
    sys.stdout.write(daemon.compile_plan(cfg, checked, timing))
    sys.stdout.flush()
    timing["print"] = time.perf_counter() - started - sum(timing.values())
    if args.timing:
        phases = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timing.items())
        print(f"compile timing: {phases}; total {sum(timing.values()) * 1000:.1f} ms", file=sys.stderr)
    return 0


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
    p.add_argument("--client", default="native", choices=["native", "python"],
                   help="the plugin executable: native (static, needs nothing on the host; default) "
                        "or python (its twin, run by --python)")
    p.add_argument("--no-standalone", dest="standalone", action="store_false",
                   help="when no agent answers, answer CNI error 11 (try again later) instead of "
                        "running the plugin in-process with --python")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for the standalone path and the python client (default: this one)")
    p.set_defaults(func=_cni_install)


def _lab_parser(sub) -> None:
    lab = sub.add_parser("lab", help="a cluster of nodes and pods in network namespaces on this machine")
    actions = lab.add_subparsers(metavar="ACTION")
    up = actions.add_parser("up", help="build the lab: underlay, nodes with agents, pods through the CNI plugin")
    up.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    up.add_argument("--mode", default="vxlan", choices=["vxlan", "routed"], help="pod network mode (default vxlan)")
    up.add_argument("--pods-per-node", type=int, default=2, help="pods on each node (default 2)")
    up.add_argument("--underlay", default="ipv4", choices=["ipv4", "ipv6"],
                    help="the nodes' first InternalIP family, which VXLAN runs over (default ipv4)")
    up.add_argument("--resync-interval", type=float, default=10.0, help="agents' reconcile period, s (default 10)")
    up.add_argument("--proxy", action="store_true",
                    help="also run netplane proxy on every node, echo servers in the pods, demo Services "
                         "and an external client namespace")
    up.add_argument("--proxy-mode", default="iptables", help="the proxy's mode (default iptables)")
    up.set_defaults(func=_lab_up)
    for action, helptext, func in (("status", "show nodes, agents, pods and addresses", _lab_status),
                                   ("check", "ping every pod from every pod; non-zero exit on any gap", _lab_check),
                                   ("services", "send real traffic to the demo Services (needs up --proxy); "
                                                "non-zero exit on any surprise", _lab_services),
                                   ("down", "remove everything the lab made", _lab_down)):
        actions.add_parser(action, help=helptext).set_defaults(func=func)
    run = actions.add_parser("run", help="up, status, check and down in one go (the README's main job)")
    run.add_argument("--nodes", type=int, default=3)
    run.add_argument("--mode", action="append", choices=["vxlan", "routed"],
                     help="mode to run (repeat; default both, one after the other)")
    run.add_argument("--no-proxy", action="store_true", help="skip the service proxy and its Services")
    run.add_argument("--proxy-mode", action="append",
                     help="the proxy's mode (repeat; default every mode this kernel supports, one after the other)")
    run.set_defaults(func=_lab_run)
    for p in actions.choices.values():
        p.add_argument("--name", default="default", help="lab name (default 'default'); several labs can coexist")
        p.add_argument("--root", default="/run/netplane/lab", help=argparse.SUPPRESS)


def _lab(args, load: bool = True):
    from netplane.lab import Lab, LabError

    try:
        lab = Lab(args.name, args.root)
        return lab.load() if load else lab
    except LabError as err:
        raise UsageError(str(err)) from None


def _lab_up(args) -> int:
    from netplane.lab import LabError
    from netplane.lab.report import status_lines

    if os.geteuid() != 0:
        raise UsageError("netplane lab needs root: it creates network namespaces")
    if args.proxy:
        _check_proxy_mode(args.proxy_mode, here=True)
    lab = _lab(args, load=False)
    try:
        lab.up(args.nodes, args.mode, args.pods_per_node, 4 if args.underlay == "ipv4" else 6, args.resync_interval)
    except LabError as err:
        raise UsageError(str(err)) from None
    if args.proxy:
        _lab_enable_proxy(lab, args.proxy_mode)
    print("\n".join(status_lines(lab)))
    return 0


def _check_proxy_mode(mode: str, here: bool = False) -> None:
    """A known mode; with `here`, one this kernel can run (`lab up` keeps
    its lab on this machine: a mode that needs the VM runs only in `lab run`)."""
    from netplane.proxy import modes

    if mode not in modes.names():
        raise UsageError(f"--proxy-mode {mode!r}: available modes are {', '.join(modes.names())}")
    why = modes.get(mode).unavailable() if here else None
    if why:
        raise UsageError(f"--proxy-mode {mode}: {why}; `netplane lab run --proxy-mode {mode}` runs it in a VM")


def _lab_enable_proxy(lab, mode: str) -> None:
    from netplane.lab import services

    if len(lab.record.nodes) < 2 or len(lab.record.pods) < 2:
        lab.down()
        raise UsageError("--proxy needs at least 2 nodes and 2 pods")
    try:
        services.enable(lab, mode=mode)
    except BaseException:
        lab.down()
        raise


def _lab_services(args) -> int:
    from netplane.lab import services

    lab = _lab(args)
    if not lab.record.processes:
        raise UsageError(f"lab {args.name} has no proxies; build it with `netplane lab up --proxy`")
    checks = services.run_checks(lab)
    print("\n".join(services.table(checks)))
    bad = sum(not c.ok for c in checks)
    print(f"services: {len(checks) - bad} of {len(checks)} checks as expected")
    return 1 if bad else 0


def _lab_status(args) -> int:
    from netplane.lab.report import status_lines

    print("\n".join(status_lines(_lab(args))))
    return 0


def _lab_check(args) -> int:
    from netplane.lab.report import check, matrix_lines

    lab = _lab(args)
    probes = check(lab)
    print("\n".join(matrix_lines(lab, probes)))
    return 0 if probes and all(p.ok for p in probes) else 1


def _lab_down(args) -> int:
    removed = _lab(args, load=False).down()
    print(f"removed {len(removed)} thing(s)" if removed else "nothing to remove")
    return 0


def _lab_run(args) -> int:
    from netplane.lab import services
    from netplane.proxy import modes

    proxy_modes = args.proxy_mode or _default_proxy_modes()
    for proxy_mode in proxy_modes:
        _check_proxy_mode(proxy_mode)
    in_vm = [m for m in proxy_modes if modes.get(m).unavailable()] if not args.no_proxy else []
    proxy_modes = [m for m in proxy_modes if m not in in_vm]
    if not proxy_modes and not args.no_proxy:
        return _lab_run_in_vm(args, in_vm)
    failures = 0
    for mode in args.mode or ["vxlan", "routed"]:
        print(f"=== lab {args.name}: {args.nodes} nodes, {mode} mode ===")
        one = argparse.Namespace(**vars(args))
        one.mode, one.pods_per_node, one.underlay, one.resync_interval = mode, 2, "ipv4", 10.0
        one.proxy, one.proxy_mode = not args.no_proxy, proxy_modes[0]
        _lab_up(one)               # refuses, touching nothing, if a lab of that name exists
        try:
            print()
            failures += _lab_check(one)
            for i, proxy_mode in enumerate(proxy_modes if one.proxy else []):
                if i:
                    services.switch_mode(_lab(one), proxy_mode)
                print(f"\n--- the proxy in {proxy_mode} mode ---")
                failures += _lab_services(one)
        finally:
            _lab(one, load=False).down()
        print()
    print("lab: every pod reached every other pod" + ("" if args.no_proxy else ", and every Service answered as expected")
          + ", in every mode" if not failures else "lab: gaps found")
    if in_vm:
        failures += _lab_run_in_vm(args, in_vm)
    return 1 if failures else 0


def _default_proxy_modes() -> list[str]:
    """Every mode this kernel runs, then those only a VM's kernel runs
    (IPVS here), when a VM can be booted."""
    from netplane import vm
    from netplane.proxy import modes

    here = modes.available()
    if vm.in_vm() or vm.available() is not None:
        return here
    return here + [m for m in modes.names() if m not in here]


def _lab_run_in_vm(args, proxy_modes: list[str]) -> int:
    """The same `lab run`, for modes this kernel cannot run, inside the VM
    (Debian's 6.1 kernel under virtme-ng, netplane/vm.py)."""
    from netplane import vm
    from netplane.proxy import modes

    if vm.in_vm():
        raise UsageError(f"--proxy-mode {proxy_modes[0]}: {modes.get(proxy_modes[0]).unavailable()}")
    why = vm.available()
    if why:
        raise UsageError(f"--proxy-mode {', '.join(proxy_modes)}: {modes.get(proxy_modes[0]).unavailable()}, "
                         f"and no VM can be booted here: {why}")
    print(f"\n=== the proxy in {', '.join(proxy_modes)} mode: "
          f"{modes.get(proxy_modes[0]).unavailable()}; running the lab in a VM "
          f"(Debian's kernel {vm.kernel().name.removeprefix('vmlinuz-')}, virtme-ng, emulated: slower) ===",
          flush=True)
    argv = [sys.executable, "-m", "netplane", "lab", "run", "--nodes", str(args.nodes), "--name", args.name,
            *(f"--mode={m}" for m in args.mode or []), *(f"--proxy-mode={m}" for m in proxy_modes)]
    return 1 if vm.run(argv, timeout=LAB_VM_TIMEOUT) else 0


def _agent(args) -> int:
    from netplane.agent import main as agent

    require_net_admin("netplane agent")
    network = _pod_network(args)
    _configure_logging(args)
    if args.pod_cidr:
        cidrs = _flag(config.parse_subnets, args.pod_cidr, "--pod-cidr")
        mtu = _flag(config.parse_mtu, args.mtu, "--mtu") if args.mtu is not None else None
        agent.publish_node_state(args.state_file, args.node_name, cidrs, mtu)
    return agent.run(args.cni_socket, deferred_teardown=not args.sync_teardown, network=network)


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


def _demo(args) -> int:
    from netplane import demo

    if args.pods < 2:
        raise UsageError("--pods must be at least 2")
    return demo.run(args.pods)
