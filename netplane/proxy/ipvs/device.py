"""The dummy device np-ipvs0 and its addresses, and the sysctls IPVS needs.
All of it in the network namespace the proxy runs in (the node's).

Every cluster, external and load-balancer IP sits on np-ipvs0, so that the
kernel takes their packets as local, where IPVS intercepts them. The
device is a dummy, down and NOARP, as kube-proxy's kube-ipvs0: it never
sends or answers anything itself. Addresses are added and removed in
batches over one rtnetlink socket (netplane/netlink): a full sync at 10k
Services adds 10k of them.
"""
import errno
import logging
import os
import platform

from netplane.netlink import messages as m
from netplane.netlink import wire as w
from netplane.netlink.channel import Channel, NetlinkError, Request
from netplane.proxy.ipvs.names import DEVICE

log = logging.getLogger("netplane.proxy")
IFF_NOARP = 0x80
RTM_DELADDR = 21
PREFIX = {4: 32, 6: 128}

# Set where the proxy runs (kube-proxy's IPVS mode sets the same ones):
IPVS_SYSCTLS = {
    # IPVS keeps conntrack entries for its connections, so that the masquerade
    # rules in postrouting see them (and NAT their replies)
    "net/ipv4/vs/conntrack": "1",
    # a connection to a deleted real server is dropped at its next packet, so
    # that the client reconnects (to a live one) instead of timing out
    "net/ipv4/vs/expire_nodest_conn": "1",
    # persistence templates of a weight-0 real server expire: ClientIP
    # affinity moves off a draining endpoint
    "net/ipv4/vs/expire_quiescent_template": "1",
}
# the node does not answer ARP for np-ipvs0's addresses (ipvs.strictARP)
STRICT_ARP = {"net/ipv4/conf/all/arp_ignore": "1", "net/ipv4/conf/all/arp_announce": "2"}


def sysctls(strict_arp: bool, kernel: str | None = None) -> dict[str, str]:
    """The sysctls to set. conn_reuse_mode=1 (the default) makes a reused
    source port wait a second on kernels before 5.9 (kubernetes#93297, #70747):
    there it is turned off; later kernels fixed it, and keep it."""
    wanted = dict(IPVS_SYSCTLS)
    if _version(kernel or platform.release()) < (5, 9):
        wanted["net/ipv4/vs/conn_reuse_mode"] = "0"
    if strict_arp:
        wanted.update(STRICT_ARP)
    return wanted


def _version(release: str) -> tuple[int, int]:
    parts = release.split(".")
    try:
        return int(parts[0]), int(parts[1].split("-")[0])
    except (IndexError, ValueError):
        return (0, 0)


def write_sysctls(values: dict[str, str]) -> None:
    for path, value in values.items():
        full = f"/proc/sys/{path}"
        with open(full) as f:
            if f.read().strip() == value:
                continue
        with open(full, "w") as f:
            f.write(value)
        log.info("set %s = %s", path.replace("/", "."), value)


class Device:
    """np-ipvs0 in this process's network namespace."""

    def __init__(self, channel: Channel | None = None) -> None:
        self._channel = channel

    @property
    def channel(self) -> Channel:
        if self._channel is None:
            self._channel = Channel.open()
        return self._channel

    def index(self) -> int | None:
        try:
            replies = self.channel.send(m.get_link(DEVICE))[0].replies
        except NetlinkError as err:
            if err.errno == errno.ENODEV:
                return None
            raise
        return m.link_index(replies[0])

    def ensure(self) -> int:
        """Create np-ipvs0 (down, NOARP) unless it is there; its index."""
        index = self.index()
        if index is not None:
            return index
        body = (w.ifinfomsg(flags=IFF_NOARP, change=IFF_NOARP) + w.string(w.IFLA_IFNAME, DEVICE)
                + w.nest(w.IFLA_LINKINFO, w.string(w.IFLA_INFO_KIND, "dummy")))
        self.channel.send(Request(body, m.RTM_NEWLINK, m.CREATE, f"create dummy device {DEVICE}",
                                  tolerate=frozenset({errno.EEXIST})))
        log.info("created %s", DEVICE)
        return self.index()

    def remove(self) -> bool:
        if self.index() is None:
            return False
        self.channel.send(m.del_link(DEVICE))
        return True

    def addresses(self, family: int) -> set[str]:
        index = self.index()
        if index is None:
            return set()
        out = set()
        for raw in self.channel.dump(m.dump_addresses()):
            msg = m.decode_address(raw)
            if msg["index"] == index and msg["family"] == w.FAMILY[family]:
                out.add(msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL"))
        return out

    def change(self, family: int, add: list[str], delete: list[str]) -> None:
        """Add and delete addresses in batches (an address already there, or
        already gone, is no error: the kernel is where we want it)."""
        if not add and not delete:
            return
        index = self.ensure()
        requests = [m.new_address(index, a, PREFIX[family], family, exist_ok=True, what=f"add {a} to {DEVICE}")
                    for a in add]
        requests += [_del_address(index, a, family) for a in delete]
        self.channel.send(*requests)          # (the channel writes them in slices its acks fit)


def _del_address(index: int, address: str, family: int) -> Request:
    body = (w.IFADDRMSG.pack(w.FAMILY[family], PREFIX[family], 0, 0, index)
            + w.ip(w.IFA_LOCAL, address, family))
    return Request(body, RTM_DELADDR, 0, f"delete {address} from {DEVICE}",
                   tolerate=frozenset({errno.EADDRNOTAVAIL, errno.ENODEV}))


def ipvs_present() -> bool:
    """Whether this kernel has IPVS loaded (its /proc entry is per namespace)."""
    return os.path.exists("/proc/net/ip_vs")


