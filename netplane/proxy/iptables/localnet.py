"""Localhost node ports (kube-proxy's iptables.localhostNodePorts).

A node port reached at 127.0.0.1 is DNATed to a pod, so the packet leaves
with a loopback address: the kernel calls that a martian and drops it
unless net.ipv4.conf.all.route_localnet is 1. kube-proxy sets it (IPv4
only: IPv6 has no such switch) unless its node-port addresses leave
loopback out, and guards the hole it opens with a DROP rule (compile.py's
NP-FIREWALL). The sysctl is written where the proxy runs, which is the
node's network namespace: /proc/sys/net belongs to the writer's namespace.
"""
from netplane.errors import OperatorError

SYSCTL = "net/ipv4/conf/all/route_localnet"
ALTERNATIVES = ("--iptables-localhost-nodeports=false (iptables.localhostNodePorts: false), "
                "or --mode ebpf, which serves localhost node ports at connect() without it")


class LocalnetError(OperatorError):
    pass


def wanted(enabled: bool, family: int, nodeports) -> bool:
    """Whether node ports answer on 127.0.0.1: asked for, IPv4, and loopback
    among the node-port addresses (all of them, or a CIDR holding it)."""
    if not enabled or family != 4:
        return False
    return nodeports is None or any(ip.is_loopback() for ip in nodeports)


def enable(root: str = "/proc/sys") -> bool:
    """Set route_localnet to 1; returns whether it was changed."""
    path = f"{root}/{SYSCTL}"
    try:
        with open(path) as f:
            if f.read().strip() == "1":
                return False
        with open(path, "w") as f:
            f.write("1")
    except OSError as exc:
        raise LocalnetError(f"localhost node ports need {SYSCTL.replace('/', '.')}=1, which could not be set "
                            f"({exc.strerror or exc}); use {ALTERNATIVES}") from None
    return True
