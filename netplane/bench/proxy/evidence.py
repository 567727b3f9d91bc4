"""Proof that a subject's traffic went through its own mode: what the node's
kernel holds once the proxy has synced, read back from the kernel (never
timed). Each mode must hold its objects for the measured Service, and no
other mode's Service rules may be there, so a leftover of the previous
subject cannot carry the traffic. The floor must find none at all.
"""
import os

from netplane.bench.proxy import cluster
from netplane.bench.proxy.subjects import Subject
from netplane.bench.proxy.testbed import PROXY_NODE, Testbed

VIP = f"{cluster.TARGET_IP}:{cluster.TARGET_PORT}"


def read(bed: Testbed) -> dict:
    """What each mode could have installed on the proxy's node, for the measured Service."""
    nat = bed.lab.run(PROXY_NODE, ["iptables-save", "-t", "nat"]).stdout.splitlines()
    table = bed.lab.run(PROXY_NODE, ["nft", "list", "table", "ip", "netplane"])
    pins = os.path.join(bed.lab.bpffs_dir, PROXY_NODE)
    ipvs = bed.lab.run(PROXY_NODE, ["ipvsadm", "-Ln", "-t", VIP]) if _has_ipvs(bed) else None
    return {"iptables": sum(1 for line in nat if line.startswith("-A NP-SERVICES ") and cluster.TARGET_IP in line),
            "iptables_endpoint_chains": sum(1 for line in nat if line.startswith(":NP-SEP-")),
            "nftables": table.returncode == 0 and cluster.TARGET_IP in table.stdout,
            "ebpf": len(os.listdir(pins)) if os.path.isdir(pins) else 0,
            "ipvs": ipvs is not None and ipvs.returncode == 0 and f":{cluster.POD_PORT}" in ipvs.stdout}


def _has_ipvs(bed: Testbed) -> bool:
    return os.path.exists("/proc/net/ip_vs") or bed.lab.run(PROXY_NODE, ["test", "-e", "/proc/net/ip_vs"]).returncode == 0


def check(bed: Testbed, subject: Subject, services: int, endpoints: int) -> str:
    """One line of what the kernel held; RuntimeError when the subject's mode is not what carries
    the Service, or another mode's rules are there too, or the iptables layout is not the one asked
    for (kube-proxy's gives every endpoint a chain; the compact one only some)."""
    held = read(bed)
    if subject.mode == "iptables":
        _check_layout(subject, held["iptables_endpoint_chains"], (services - 1) * endpoints + 1)
    own = {"iptables": held["iptables"] > 0, "nftables": held["nftables"], "ebpf": held["ebpf"] > 0,
           "ipvs": bool(held["ipvs"])}
    if subject.mode is not None and not own.get(subject.mode, False):
        raise RuntimeError(f"{subject.row}: the node holds no {subject.mode} objects for {VIP} ({held})")
    foreign = [m for m, present in own.items() if present and m != subject.mode]
    if foreign:
        raise RuntimeError(f"{subject.row}: the node also holds {', '.join(foreign)} objects ({held})")
    if subject.mode is None:
        return "no proxy's objects on the node"
    return {"iptables": f"iptables: NP-SERVICES sends {VIP} on, {held['iptables_endpoint_chains']:,} endpoint chains",
            "nftables": "nftables: table ip netplane",
            "ebpf": f"eBPF: {held['ebpf']} pinned objects",
            "ipvs": f"IPVS: virtual server {VIP} with its real server"}[subject.mode]


def _check_layout(subject: Subject, chains: int, endpoints: int) -> None:
    kube_proxy = "kube-proxy" in subject.flags
    if kube_proxy != (chains >= endpoints):
        raise RuntimeError(f"{subject.row}: {chains:,} endpoint chains for {endpoints:,} endpoints: not the "
                           f"{'kube-proxy' if kube_proxy else 'compact'} layout")
