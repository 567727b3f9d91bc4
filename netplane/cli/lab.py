"""`netplane lab` and `netplane demo`: clusters of namespaces on this machine."""
import argparse
import os
import sys

from netplane.cli.common import UsageError


LAB_VM_TIMEOUT = 1800.0        # s for `lab run` inside the emulated VM, boot included


def add_parser(sub) -> None:
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
    demo = sub.add_parser("demo", help="wire three pods on a throwaway node through the real plugin and ping them")
    demo.add_argument("--pods", type=int, default=3, help="how many pods (default 3)")
    demo.set_defaults(func=_demo)


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


def _demo(args) -> int:
    from netplane import demo

    if args.pods < 2:
        raise UsageError("--pods must be at least 2")
    return demo.run(args.pods)
