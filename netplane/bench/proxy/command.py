"""`netplane bench proxy` and `netplane bench compare`: the command line.

The host part runs every mode this kernel has, with both references, on a
throwaway lab. Modes it lacks (IPVS here) run as the same command inside
the VM tier's virtual machine (netplane/vm.py), with the floor measured in
that VM, at the sizes the VM can hold; their samples come back with
where="vm" and the report keeps them apart from the host's.
"""
import argparse
import dataclasses
import os
import shutil
import signal
import sys
import time
from pathlib import Path

TREE = Path(__file__).resolve().parents[3]
VM_MAX_SERVICES = 1000               # the emulated guest is ~30x slower: 10k would take most of an hour
VM_BOOT = 900.0                      # s the VM may take to boot and build its lab, and per size and round:
VM_PER_ROUND = 900.0                 # the guest is ~30x slower
QUICK = {"services": [100, 1000], "repeat": 1}
DEFAULT = {"services": [100, 1000, 10000], "repeat": 3}
QUICK_EFFORT = {"connections": 100, "blocks": 2, "rate_seconds": 1.0, "iperf_seconds": 1, "changes": 3, "burst": 10}
# the emulated guest makes a connection ~10x slower (outside the timed part too): half as many there
VM_EFFORT = {"connections": 0.5, "changes": 0.5}


class BenchError(Exception):
    """Bad input or a machine that cannot run it: one line for the user."""


def add_arguments(p) -> None:
    p.add_argument("--modes", help="comma-separated modes (default: every mode that works here, "
                                   "those this kernel lacks in the VM)")
    p.add_argument("--services", help="numbers of Services, comma-separated (default 100,1000,10000; "
                                      "--quick: 100,1000)")
    p.add_argument("--endpoints", default="10", help="endpoints per Service (default 10)")
    p.add_argument("--repeat", help="rounds per size (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="small sizes, one round, short steps: about 3 minutes")
    p.add_argument("--cap", default="120", help="seconds a step may take before it is reported as "
                                                "'did not finish' (default 120)")
    p.add_argument("--out", help="directory for results.json, report.md and the plots "
                                 "(default ./netplane-bench-<time>)")
    p.add_argument("--no-vm", action="store_true", help="skip the modes this kernel lacks instead of "
                                                        "running them in the VM")
    p.add_argument("--plain", action="store_true", help="plain progress lines instead of a bar")
    p.add_argument("--vm-guest", action="store_true", help=argparse.SUPPRESS)


def add_compare_arguments(p) -> None:
    p.add_argument("a", help="a result directory of `netplane bench proxy`")
    p.add_argument("b", help="another one, set beside the first")
    p.add_argument("--out", help="write compare.md here too")


# -- options ----------------------------------------------------------------------------

def int_list(text: str, flag: str, low: int, high: int) -> list[int]:
    try:
        values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BenchError(f"{flag} {text}: expected whole numbers separated by commas") from None
    if not values or any(not low <= v <= high for v in values):
        raise BenchError(f"{flag} {text}: each must be {low:,}..{high:,}")
    return sorted(set(values))


def integer(text: str, flag: str, low: int, high: int) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise BenchError(f"{flag} {text}: expected a whole number") from None
    if not low <= value <= high:
        raise BenchError(f"{flag} {text}: must be {low:,}..{high:,}")
    return value


def number(text: str, flag: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BenchError(f"{flag} {text}: expected a number") from None
    if not low <= value <= high:
        raise BenchError(f"{flag} {text}: must be {low:g}..{high:g}")
    return value


def split_modes(requested: str | None, no_vm: bool, guest: bool) -> tuple[list[str], list[str], list[str]]:
    """(modes run here, modes run in the VM, why others are left out). Asked for by name, a mode
    must run somewhere; by default, those that cannot are left out and said so."""
    from netplane import vm
    from netplane.proxy import modes

    names = modes.names()
    wanted = [m.strip() for m in requested.split(",") if m.strip()] if requested else names
    unknown = [m for m in wanted if m not in names]
    if unknown or not wanted:
        raise BenchError(f"--modes {requested}: unknown mode {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(names)}")
    here = [m for m in wanted if not modes.get(m).unavailable()]
    lacking = [m for m in wanted if m not in here]
    why_not = "--no-vm" if no_vm or guest else vm.available()
    if lacking and why_not:
        reason = f"{lacking[0]}: {modes.get(lacking[0]).unavailable()}, and " + (
            "--no-vm keeps it out of the VM" if why_not == "--no-vm" else f"no VM can be booted here: {why_not}")
        if requested:
            raise BenchError(f"--modes {requested}: {reason}")
        return here, [], [reason]
    return here, lacking, []


def plan_of(args, modes: list[str], where: str):
    from netplane.bench.proxy import cluster, runner, subjects
    from netplane.bench.proxy.steps import Effort

    base = QUICK if args.quick else DEFAULT
    services = int_list(args.services, "--services", 1, cluster.MAX_SERVICES) if args.services else base["services"]
    repeat = integer(args.repeat, "--repeat", 1, 100) if args.repeat else base["repeat"]
    endpoints = integer(args.endpoints, "--endpoints", 1, 1000)
    if max(services) * endpoints > cluster.MAX_ENDPOINTS:
        raise BenchError(f"--services {max(services):,} x --endpoints {endpoints:,}: at most "
                         f"{cluster.MAX_ENDPOINTS:,} endpoints in all")
    effort = Effort(**QUICK_EFFORT) if args.quick else Effort()
    if where == "vm":
        effort = dataclasses.replace(effort, **{k: max(1, int(getattr(effort, k) * f)) for k, f in VM_EFFORT.items()})
    return runner.Plan(subjects.lineup(modes, where, kube_proxy_row=where == "host"), services, endpoints, repeat,
                       number(args.cap, "--cap", 1, 86400), effort)


def vm_sizes(services: list[int], quick: bool) -> list[int]:
    """The sizes the VM runs: those it holds (up to VM_MAX_SERVICES), and with --quick only the
    smallest, which keeps the whole quick run within its 3 minutes (the guest is ~30x slower)."""
    held = [n for n in services if n <= VM_MAX_SERVICES] or [min(services)]
    return held[:1] if quick else held


def params(args, plan, modes: list[str], vm_plan) -> dict:
    return {"modes": modes, "services": plan.services, "vm_services": vm_plan.services if vm_plan else [],
            "endpoints": plan.endpoints, "repeat": plan.repeat, "quick": bool(args.quick), "cap_s": plan.cap,
            "effort": dataclasses.asdict(plan.effort),
            "lab": "2 nodes (routed), node1 runs the proxy, node2 the Service's pods; an external client"}


# -- the run ------------------------------------------------------------------------------

def main(args) -> int:
    if os.geteuid() != 0:
        raise BenchError("bench proxy needs root: it builds a lab of network namespaces")
    for tool in ("iperf3", "curl", "conntrack"):
        if shutil.which(tool) is None:
            raise BenchError(f"bench proxy needs {tool} (scripts/bootstrap installs it)")
    _check_libraries(args.vm_guest)
    here, in_vm, left_out = split_modes(args.modes, args.no_vm, args.vm_guest)
    plan = plan_of(args, here, "vm" if args.vm_guest else "host")
    vm_plan = None
    if in_vm:
        vm_plan = plan_of(args, in_vm, "vm")
        vm_plan.services = vm_sizes(plan.services, args.quick)
    out = _make_out(Path(args.out or f"netplane-bench-{time.strftime('%Y%m%d-%H%M%S')}"))
    for reason in left_out:
        print(f"netplane bench: left out {reason}", file=sys.stderr)
    signal.signal(signal.SIGTERM, _interrupt)          # unwinds like Ctrl-C: the lab comes down
    return _run(args, plan, vm_plan, here, in_vm, out)


def _run(args, plan, vm_plan, here: list[str], in_vm: list[str], out: Path) -> int:
    from netplane.bench.machine import describe
    from netplane.bench.proxy import progress, report, runner

    started = time.monotonic()
    subjects = plan.subjects if here else []       # every mode in the VM: no host rows at all

    def results(rec) -> dict:
        return runner.results(rec, subjects, params(args, plan, here + in_vm, vm_plan),
                              describe(TREE, ("iptables", "nft")), time.monotonic() - started)

    with progress.make(args.plain or args.vm_guest) as bar:
        rec = runner.run(plan, bar) if subjects else runner.Recorder()
        if args.vm_guest:            # the host reports; matplotlib would take half a minute in the guest
            report.write_json(results(rec), out)
            return 0
        report.write_json(results(rec), out)    # kept, should the VM's part fail or be interrupted
        guest = _run_in_vm(args, vm_plan, bar, out) if vm_plan else None
    final = results(rec)
    if guest:
        merge(final, guest)
    written = report.write(final, out)
    from rich.console import Console
    report.terminal(final, Console())
    print(f"wrote {', '.join(str(p) for p in written[:2])} and {len(written) - 2} plots in {out}")
    return 0


def _check_libraries(guest: bool) -> None:
    """The bench extra's libraries, before anything is built (not 30 minutes in)."""
    for name in ("rich",) if guest else ("rich", "matplotlib"):
        try:
            __import__(name)
        except ImportError:
            raise BenchError(f"bench needs {name}: install netplane's bench extra "
                             "(scripts/bootstrap does)") from None


def _make_out(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise BenchError(f"--out {out}: {err.strerror or err}") from None
    return out


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _run_in_vm(args, plan, bar, out: Path) -> dict | None:
    """The same command in the VM for the modes this kernel lacks; its results, or None (said why).
    The guest writes into a directory under --out, its one writable path back here."""
    from netplane import vm
    from netplane.bench.proxy.compare import CompareError, load

    scratch = out / "vm"
    shutil.rmtree(scratch, ignore_errors=True)
    argv = [sys.executable, "-m", "netplane", "bench", "proxy", "--vm-guest", "--no-vm",
            "--modes", ",".join(s.mode for s in plan.subjects if s.kind == "mode"),
            "--services", ",".join(map(str, plan.services)), "--repeat", str(plan.repeat),
            "--endpoints", str(plan.endpoints), "--cap", f"{plan.cap:g}", "--out", str(scratch.resolve()),
            *(["--quick"] if args.quick else [])]
    bar.pause()
    bar.say(f"running {', '.join(s.row for s in plan.subjects)} in the VM (Debian's "
            f"{vm.kernel().name.removeprefix('vmlinuz-')}, emulated, so slower; compared with the floor "
            f"measured in the same VM) at {', '.join(f'{n:,}' for n in plan.services)} Services")
    timeout = VM_BOOT + VM_PER_ROUND * plan.repeat * len(plan.services)
    try:
        status = vm.run(argv, timeout=timeout, rwdirs=[str(scratch.resolve())], cwd=str(TREE))
    except (RuntimeError, ValueError, OSError) as err:
        bar.say(f"the VM's part did not run: {err}")
        return None
    finally:
        bar.resume()
    try:
        return load(scratch)
    except CompareError as err:
        bar.say(f"the VM's run left no results (exit {status}): {err}")
        return None


def merge(results: dict, guest: dict) -> None:
    """The VM's samples and troubles into the host's results (the guest marked them where="vm")."""
    from netplane.bench.proxy import stats

    for key in ("samples", "unfinished", "failed", "held"):
        results[key] += guest.get(key, [])
    results["subjects"] += [s for s in guest.get("subjects", []) if s not in results["subjects"]]
    results["machine"]["vm"] = guest.get("machine", {})
    results["summary"] = stats.summaries(results["samples"])


def compare(args) -> int:
    from netplane.bench.proxy import compare as cmp

    return cmp.main(args.a, args.b, args.out)
