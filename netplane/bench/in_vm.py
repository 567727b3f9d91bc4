"""The proxy benchmarks for a mode this kernel cannot run (IPVS), inside
the VM (netplane/vm.py: Debian's 6.1 kernel, emulated without KVM), side
by side with the iptables and nftables modes in the same VM run, so that
every ratio compares like with like. Nothing here is comparable with the
numbers measured on this machine's kernel: the guest is many times slower.

One boot runs:
- network programming through the daemon (benchmarks/proxy_programming.py):
  full sync and one endpoint change, from the file write to the answer;
- first-packet latency through a ClusterIP and a NodePort
  (netplane.bench.first_packet) at SMALL and LARGE Services, interleaved
  rounds.
Results land in benchmarks/results/ as proxy_programming_vm.* and
proxy_first_packet_vm.*.

Usage: python -m netplane.bench.in_vm [--modes iptables,nftables,ipvs] [--sizes 100,1000] [--rounds 5]
"""
import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from netplane import vm

TREE = Path(__file__).resolve().parents[2]
SCRATCH = TREE / "build" / "vm-bench"          # the guest's one writable path back here
TIMEOUT = 3600.0
PARTS = ("programming", "first-packet")           # guest_commands' order


def guest_commands(modes: str, small: int, large: int, rounds: int, changes: int, connections: int) -> list[str]:
    python = sys.executable
    return [
        f"{python} benchmarks/proxy_programming.py --mode {modes} --sizes {large} --changes {changes} "
        f"--soak 0 --idle-window 5 --tag vm --out {SCRATCH}",
        f"{python} benchmarks/proxy_first_packet.py --modes {modes} --sizes {small},{large} --rounds {rounds} "
        f"--connections {connections} --out {SCRATCH}",
    ]


def _inside(commands: list[str]) -> int:
    """In the guest: each benchmark in a session of its own (one ends by
    signalling its process group, which would end a shell chain too)."""
    failed = 0
    for command in commands:
        failed |= subprocess.run(shlex.split(command), start_new_session=True).returncode != 0
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="iptables,nftables,ipvs")
    p.add_argument("--sizes", default="100,1000", help="SMALL,LARGE Services (the programming run uses LARGE)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--changes", type=int, default=10)
    p.add_argument("--connections", type=int, default=100, help="per target per round")
    p.add_argument("--out", type=Path, default=TREE / "benchmarks" / "results")
    p.add_argument("--parts", default="programming,first-packet", help="which of the two benchmarks to run")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    small, large = (int(x) for x in args.sizes.split(","))
    why = vm.available()
    if why:
        print(f"netplane bench: cannot boot the VM: {why}", file=sys.stderr)
        return 2
    if args.inside:
        commands = guest_commands(args.modes, small, large, args.rounds, args.changes, args.connections)
        wanted = [c for c, part in zip(commands, PARTS) if part in args.parts.split(",")]
        return _inside(wanted)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    status = vm.run([sys.executable, "-m", "netplane.bench.in_vm", "--inside", *(argv or sys.argv[1:])],
                    timeout=TIMEOUT, rwdirs=[str(SCRATCH)], cwd=str(TREE))
    for produced, name in (("proxy_programming_vm", "proxy_programming_vm"),
                           ("proxy_first_packet", "proxy_first_packet_vm")):
        for ext in ("json", "md", "png"):
            source = SCRATCH / f"{produced}.{ext}"
            if source.exists():
                args.out.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, args.out / f"{name}.{ext}")
                print(f"wrote {args.out / f'{name}.{ext}'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
