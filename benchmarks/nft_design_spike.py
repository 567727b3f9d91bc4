"""Spike for the nftables mode (issue: nftables mode): how fast candidate
designs load and change at scale, before any of them is built.

Designs, for N Services of 10 endpoints (IPv4, TCP):
- "maps": every Service in one verdict map, `ip daddr . meta l4proto .
  th dport vmap @services`, whose element jumps to one shared chain per
  endpoint count n; that chain's one rule DNATs through a map keyed by
  (VIP, protocol, port, slot) with `numgen random mod n` as the slot. No
  per-Service object: a change is element updates.
- "per-service": kube-proxy's nftables layout, reduced to its dispatch: the
  same verdict map, but a chain per Service ending in `numgen random mod N
  vmap` over one chain per endpoint, each with its DNAT.

Each design is loaded into an empty throwaway namespace in one
transaction, then changed: one endpoint replaced, and one Service added.
Both the `nft -f -` binary and libnftables in process (Debian's
python3-nftables, one `cmd` per transaction) are timed.

Usage: python benchmarks/nft_design_spike.py [--sizes 1000,10000] [--repeats 3]
Needs root; the namespaces are removed on exit.
"""
import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netplane import sandbox  # noqa: E402

ENDPOINTS = 10


def vip(i: int) -> str:
    return f"10.{96 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"


def endpoint(i: int, k: int) -> str:
    e = i * ENDPOINTS + k
    return f"10.{100 + e // 62500}.{e // 250 % 250}.{e % 250 + 2}"


def base_chains(dispatch: str) -> list[str]:
    return ["  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
            f"    {dispatch}", "  }",
            "  chain output {", "    type nat hook output priority -100; policy accept;", f"    {dispatch}", "  }"]


DISPATCH = "ip daddr . meta l4proto . th dport vmap @services"


def maps_design(n: int) -> str:
    lines = ["table ip netplane {",
             "  map backends {",
             "    typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport",
             "    elements = { " + ", ".join(f"{vip(i)} . tcp . 80 . {k} : {endpoint(i, k)} . 8080"
                                            for i in range(n) for k in range(ENDPOINTS)) + " }",
             "  }",
             "  map services {",
             "    type ipv4_addr . inet_proto . inet_service : verdict",
             "    elements = { " + ", ".join(f"{vip(i)} . tcp . 80 : goto pick-{ENDPOINTS}" for i in range(n)) + " }",
             "  }",
             f"  chain pick-{ENDPOINTS} {{",
             f"    dnat ip to ip daddr . meta l4proto . th dport . numgen random mod {ENDPOINTS} map @backends",
             "  }", *base_chains(DISPATCH), "}"]
    return "\n".join(lines) + "\n"


def maps_change(n: int, round_: int) -> str:
    """One endpoint of Service 0 replaced: one element deleted and added again, in one transaction."""
    return (f"delete element ip netplane backends {{ {vip(0)} . tcp . 80 . 0 }}\n"
            f"add element ip netplane backends {{ {vip(0)} . tcp . 80 . 0 : 10.99.0.{round_ + 2} . 8080 }}\n")


def maps_new_service(n: int, round_: int) -> str:
    i = n + round_
    return ("add element ip netplane backends { " + ", ".join(
        f"{vip(i)} . tcp . 80 . {k} : {endpoint(i, k)} . 8080" for k in range(ENDPOINTS)) + " }\n"
            f"add element ip netplane services {{ {vip(i)} . tcp . 80 : goto pick-{ENDPOINTS} }}\n")


def per_service_design(n: int) -> str:
    lines = ["table ip netplane {", "  map services {", "    type ipv4_addr . inet_proto . inet_service : verdict",
             "    elements = { " + ", ".join(f"{vip(i)} . tcp . 80 : goto svc-{i}" for i in range(n)) + " }", "  }"]
    for i in range(n):
        lines += _service_chains(i)
    lines += [*base_chains(DISPATCH), "}"]
    return "\n".join(lines) + "\n"


def _service_chains(i: int) -> list[str]:
    out = [f"  chain svc-{i} {{", f"    numgen random mod {ENDPOINTS} vmap {{ "
           + ", ".join(f"{k} : goto ep-{i}-{k}" for k in range(ENDPOINTS)) + " }", "  }"]
    for k in range(ENDPOINTS):
        out += [f"  chain ep-{i}-{k} {{", f"    meta l4proto tcp dnat ip to {endpoint(i, k)}:8080", "  }"]
    return out


def per_service_change(n: int, round_: int) -> str:
    return f"flush chain ip netplane ep-0-0\nadd rule ip netplane ep-0-0 meta l4proto tcp dnat ip to 10.99.0.{round_ + 2}:8080\n"


def per_service_new_service(n: int, round_: int) -> str:
    i = n + round_
    body = [line.strip() for line in _service_chains(i)]
    script = []
    for k in range(ENDPOINTS):
        script += [f"add chain ip netplane ep-{i}-{k}", f"add rule ip netplane ep-{i}-{k} meta l4proto tcp dnat ip to {endpoint(i, k)}:8080"]
    script += [f"add chain ip netplane svc-{i}", f"add rule ip netplane svc-{i} {body[1]}",
               f"add element ip netplane services {{ {vip(i)} . tcp . 80 : goto svc-{i} }}"]
    return "\n".join(script) + "\n"


DESIGNS = {"maps": (maps_design, maps_change, maps_new_service),
           "per-service": (per_service_design, per_service_change, per_service_new_service)}

# runs inside the namespace: apply each script from stdin (NUL-separated), print seconds each
INNER = r"""
import sys, time, subprocess
scripts = sys.stdin.read().split("\0")
how = sys.argv[1]
if how == "libnftables":
    import nftables
    nft = nftables.Nftables()
for script in scripts:
    t = time.perf_counter()
    if how == "libnftables":
        rc, out, err = nft.cmd(script)
    else:
        done = subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True)
        rc, err = done.returncode, done.stderr
    dt = time.perf_counter() - t
    if rc:
        print("error", err[:300]); sys.exit(1)
    print(dt, flush=True)
"""


def measure(design: str, n: int, how: str, repeats: int) -> dict:
    make, change, new = DESIGNS[design]
    scripts = [make(n)] + [change(n, r) for r in range(repeats)] + [new(n, r) for r in range(repeats)]
    with sandbox.Sandbox() as sb:
        ns = sb.netns("spike")
        python = "/usr/bin/python3" if how == "libnftables" else sys.executable
        done = sb.run(ns, [python, "-c", INNER, how], input="\0".join(scripts), capture_output=True, text=True,
                      check=False)
        if done.returncode:
            raise RuntimeError(f"{design} {n} {how}: {done.stdout[-300:]} {done.stderr[-300:]}")
        times = [float(x) for x in done.stdout.split()]
    return {"design": design, "services": n, "how": how, "load_s": times[0],
            "change_ms": statistics.median(times[1:1 + repeats]) * 1000,
            "new_service_ms": statistics.median(times[1 + repeats:]) * 1000}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--designs", default="maps,per-service")
    p.add_argument("--how", default="nft,libnftables")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print("| design | services | via | full load s | one endpoint ms | new Service ms |")
    print("|---|---|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",")):
        for design in args.designs.split(","):
            for how in args.how.split(","):
                r = measure(design, n, how, args.repeats)
                print(f"| {design} | {n:,} | {how} | {r['load_s']:.2f} | {r['change_ms']:.1f} "
                      f"| {r['new_service_ms']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
