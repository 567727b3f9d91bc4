"""rtnetlink requests as plain data; nothing here touches a socket.

Each builder returns a channel.Request holding the encoded message body
(everything after the netlink header). Keeping them pure lets unit tests
check exactly what would be sent, and the same builders serve the CNI
plugin now and the node agent later. Replies are decoded with pyroute2,
imported only when one is.
"""
import struct

from netplane.netlink import wire as w
from netplane.netlink.channel import EEXIST, ENODEV, Request

# message types (linux/rtnetlink.h) and request flags (linux/netlink.h)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 20, 22, 24, 26
NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x300, 0x200, 0x400
CREATE = NLM_F_CREATE | NLM_F_EXCL
IFF_UP = 0x1
IFA_F_NODAD = 0x02
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
# Links waiting for deferred deletion carry this netdev group, so one
# RTM_DELLINK by group removes a whole batch ("np" in ASCII).
REAP_GROUP = 0x6E70


def get_link(name: str, missing_ok: bool = False) -> Request:
    """With missing_ok, an absent link is no error: the request gets no reply."""
    return Request(w.ifinfomsg() + w.string(w.IFLA_IFNAME, name), RTM_GETLINK, 0, f"look up link {name}",
                   tolerate=frozenset({ENODEV}) if missing_ok else frozenset())


def new_bridge(name: str, mac: str, mtu: int) -> Request:
    """Create the node bridge, already up; an existing one is left alone."""
    body = (w.ifinfomsg(flags=IFF_UP, change=IFF_UP) + w.string(w.IFLA_IFNAME, name) + w.mac(w.IFLA_ADDRESS, mac)
            + w.u32(w.IFLA_MTU, mtu) + w.nest(w.IFLA_LINKINFO, w.string(w.IFLA_INFO_KIND, "bridge")))
    return Request(body, RTM_NEWLINK, CREATE, f"create bridge {name}", tolerate=frozenset({EEXIST}))


def set_up(name: str) -> Request:
    body = w.ifinfomsg(flags=IFF_UP, change=IFF_UP) + w.string(w.IFLA_IFNAME, name)
    return Request(body, RTM_SETLINK, 0, f"set {name} up")


def new_veth(host: str, host_mac: str, master: int, mtu: int,
             peer: str, peer_mac: str, peer_netns_fd: int) -> Request:
    """A veth pair whose node end is up on the bridge and whose pod end is
    created directly inside the pod's namespace under its final name.

    Creating the peer in place (IFLA_NET_NS_FD) avoids a temporary name and a
    move, so a name clash in the pod fails cleanly before anything exists.
    The pod end cannot be created up: the kernel opens it before the two
    ends are linked (veth_open then fails with ENOTCONN).
    """
    peer_body = (w.ifinfomsg() + w.string(w.IFLA_IFNAME, peer) + w.s32(w.IFLA_NET_NS_FD, peer_netns_fd)
                 + w.u32(w.IFLA_MTU, mtu) + w.mac(w.IFLA_ADDRESS, peer_mac))
    body = (w.ifinfomsg(flags=IFF_UP, change=IFF_UP) + w.string(w.IFLA_IFNAME, host) + w.mac(w.IFLA_ADDRESS, host_mac)
            + w.u32(w.IFLA_MTU, mtu) + w.u32(w.IFLA_MASTER, master)
            + w.nest(w.IFLA_LINKINFO, w.string(w.IFLA_INFO_KIND, "veth"),
                     w.nest(w.IFLA_INFO_DATA, w.attr(w.VETH_INFO_PEER, peer_body))))
    return Request(body, RTM_NEWLINK, CREATE, f"create veth {host} <-> {peer}")


def set_hairpin(name: str) -> Request:
    """Let frames leave the bridge port they came in on, so a pod can reach
    itself through a service address that the node DNATs back to it."""
    return Request(_bridge_port(name, w.u8(w.IFLA_BRPORT_MODE, 1)), RTM_NEWLINK, 0, f"turn hairpin on for {name}")


def retire_link(name: str) -> Request:
    """Take the node end of a pod's veth down and tag it for deferred deletion.

    Deleting or moving a link waits out RCU grace periods (~17 ms here);
    this does not. A down bridge port forwards nothing, the pod end loses
    carrier so it cannot transmit, and only an administrator in the node's
    namespace could bring it back up. (Disabling the port through its
    bridge state is not enough: the bridge re-enables a disabled port on
    its next carrier event.)
    """
    body = w.ifinfomsg(flags=0, change=IFF_UP) + w.string(w.IFLA_IFNAME, name) + w.u32(w.IFLA_GROUP, REAP_GROUP)
    return Request(body, RTM_SETLINK, 0, f"retire link {name}", tolerate=frozenset({ENODEV}))


def set_down_index(index: int) -> Request:
    body = w.ifinfomsg(index=index, flags=0, change=IFF_UP)
    return Request(body, RTM_SETLINK, 0, f"set link {index} down", tolerate=frozenset({ENODEV}))


def rename_index(index: int, name: str) -> Request:
    """Rename a link (it must be down: Linux refuses to rename one that is up)."""
    body = w.ifinfomsg(index=index) + w.string(w.IFLA_IFNAME, name)
    return Request(body, RTM_SETLINK, 0, f"rename link {index} to {name}", tolerate=frozenset({ENODEV}))


def _bridge_port(name: str, *port_attrs: bytes) -> bytes:
    return (w.ifinfomsg() + w.string(w.IFLA_IFNAME, name)
            + w.nest(w.IFLA_LINKINFO, w.string(w.IFLA_INFO_SLAVE_KIND, "bridge"),
                     w.nest(w.IFLA_INFO_SLAVE_DATA, *port_attrs)))


def del_link(name: str) -> Request:
    return Request(w.ifinfomsg() + w.string(w.IFLA_IFNAME, name), RTM_DELLINK, 0, f"delete link {name}",
                   tolerate=frozenset({ENODEV}))


def del_group(group: int) -> Request:
    """Delete every link in a netdev group: one unregister batch, one RCU wait."""
    return Request(w.ifinfomsg() + w.u32(w.IFLA_GROUP, group), RTM_DELLINK, 0, f"delete links in group {group:#x}",
                   tolerate=frozenset({ENODEV}))


def new_address(index: int, address: str, prefixlen: int, version: int, *,
                exist_ok: bool = False, what: str = "") -> Request:
    """Add an address. DAD is skipped for IPv6: IPAM already guarantees the
    address is unique, and DAD would leave it unusable for about a second."""
    flags = IFA_F_NODAD if version == 6 else 0
    body = (w.IFADDRMSG.pack(w.FAMILY[version], prefixlen, flags, 0, index)
            + w.ip(w.IFA_ADDRESS, address, version) + w.ip(w.IFA_LOCAL, address, version))
    tolerate = frozenset({EEXIST}) if exist_ok else frozenset()
    return Request(body, RTM_NEWADDR, CREATE, what or f"add address {address}/{prefixlen}", tolerate=tolerate)


def new_default_route(index: int, gateway: str, version: int) -> Request:
    body = (w.RTMSG.pack(w.FAMILY[version], 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0)
            + w.ip(w.RTA_GATEWAY, gateway, version) + w.u32(w.RTA_OIF, index))
    return Request(body, RTM_NEWROUTE, CREATE, f"add default route via {gateway}")


def dump_addresses() -> Request:
    return Request(w.IFADDRMSG.pack(0, 0, 0, 0, 0), RTM_GETADDR, NLM_F_DUMP, "list addresses")


def dump_routes(version: int) -> Request:
    body = w.RTMSG.pack(w.FAMILY[version], 0, 0, 0, 0, 0, 0, 0, 0)
    return Request(body, RTM_GETROUTE, NLM_F_DUMP, f"list IPv{version} routes")


def link_index(raw: bytes) -> int:
    """ifi_index from a raw RTM_NEWLINK reply, without decoding the rest."""
    return struct.unpack_from("=i", raw, 16 + 4)[0]


def link_attr(raw: bytes, kind: int) -> bytes | None:
    """One top-level attribute of a raw link message, found by a plain TLV walk
    (a full pyroute2 decode of a link message costs ~0.4 ms)."""
    offset = 16 + 16  # nlmsghdr, ifinfomsg
    while offset + 4 <= len(raw):
        length, attr = struct.unpack_from("=HH", raw, offset)
        if length < 4:
            return None
        if attr & 0x3FFF == kind:
            return raw[offset + 4: offset + length]
        offset += (length + 3) & ~3
    return None


def link_peer_index(raw: bytes) -> int:
    """IFLA_LINK: for a veth, its peer's index (in the peer's namespace).
    Kernels before 5.12 leave it out when it equals the link's own index."""
    value = link_attr(raw, w.IFLA_LINK)
    return struct.unpack("=I", value)[0] if value and len(value) == 4 else link_index(raw)


def link_kind(raw: bytes) -> str:
    """IFLA_INFO_KIND inside IFLA_LINKINFO ("veth", "bridge", ...), or ""."""
    info = link_attr(raw, w.IFLA_LINKINFO) or b""
    offset = 0
    while offset + 4 <= len(info):
        length, attr = struct.unpack_from("=HH", info, offset)
        if length < 4:
            break
        if attr & 0x3FFF == w.IFLA_INFO_KIND:
            return info[offset + 4: offset + length].rstrip(b"\0").decode(errors="replace")
        offset += (length + 3) & ~3
    return ""


def link_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in link_attr(raw, w.IFLA_ADDRESS) or b"")


# pyroute2's decoders are imported where used: importing pyroute2 costs
# ~0.1 s, which the standalone plugin would pay on every ADD and DEL that
# never decodes a message (only CHECK and the dumps do).

def decode_link(raw: bytes):
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    return _decoded(ifinfmsg(raw))


def decode_address(raw: bytes):
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    return _decoded(ifaddrmsg(raw))


def decode_route(raw: bytes):
    from pyroute2.netlink.rtnl.rtmsg import rtmsg
    return _decoded(rtmsg(raw))


def _decoded(msg):
    msg.decode()
    return msg
