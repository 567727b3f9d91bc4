"""Sysctls that let a node forward pod traffic, in the calling thread's network namespace."""
import os

FORWARDING = {4: "/proc/sys/net/ipv4/ip_forward", 6: "/proc/sys/net/ipv6/conf/all/forwarding"}


def ensure_forwarding(families: set[int]) -> None:
    """Pods reach other nodes through this one, so it must route.

    /proc/sys/net shows the namespace of the thread that opens it: this is
    the node's namespace, never the host's unless the node is the host.
    """
    for version in families:
        _write(FORWARDING[version], b"1")



def skip_link_local_dad(ifname: str) -> None:
    """Let `ifname`'s IPv6 link-local address work at once, without DAD.

    A node forwarding IPv6 out of an interface solicits the next hop from
    that interface's link-local address, and sends no solicitation at all
    while that address is still tentative: for the 1-2 s of DAD after the
    link gets carrier, forwarded IPv6 is dropped. The node bridge gets its
    carrier when its first pod attaches, so without this, remote pods
    could not reach a node's first pod over IPv6 for its first seconds.
    The link-local is derived from a MAC netplane chose, so DAD adds nothing.
    """
    _write(f"/proc/sys/net/ipv6/conf/{ifname}/accept_dad", b"0")


def _write(path: str, value: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        if os.read(fd, 8).strip() != value:
            os.pwrite(fd, value, 0)  # at offset 0: a strict sysctl ignores writes elsewhere
    finally:
        os.close(fd)
