"""rtnetlink requests as plain data; nothing here touches a socket.

Each builder returns a channel.Request around a pyroute2 message. Keeping
them pure means unit tests can decode exactly what would be sent, and the
same builders serve the CNI plugin now and the node agent later.
"""
import socket
import struct

from pyroute2.netlink import NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL
from pyroute2.netlink.rtnl import (RTM_DELLINK, RTM_GETADDR, RTM_GETLINK, RTM_GETROUTE, RTM_NEWADDR,
                                   RTM_NEWLINK, RTM_NEWROUTE, RTM_SETLINK)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netplane.netlink.channel import EEXIST, ENODEV, Request

CREATE = NLM_F_CREATE | NLM_F_EXCL
IFA_F_NODAD = 0x02
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


def get_link(name: str) -> Request:
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", name)]
    return Request(msg, RTM_GETLINK, 0, f"look up link {name}")


def new_bridge(name: str, mac: str, mtu: int) -> Request:
    """Create the node bridge, already up; an existing one is left alone."""
    msg = ifinfmsg()
    msg["flags"] = msg["change"] = IFF_UP
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_ADDRESS", mac), ("IFLA_MTU", mtu),
                    ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})]
    return Request(msg, RTM_NEWLINK, CREATE, f"create bridge {name}", tolerate=frozenset({EEXIST}))


def set_up(name: str) -> Request:
    msg = ifinfmsg()
    msg["flags"] = msg["change"] = IFF_UP
    msg["attrs"] = [("IFLA_IFNAME", name)]
    return Request(msg, RTM_SETLINK, 0, f"set {name} up")


def new_veth(host: str, host_mac: str, master: int, mtu: int,
             peer: str, peer_mac: str, peer_netns_fd: int) -> Request:
    """A veth pair whose node end is up on the bridge and whose pod end is
    created directly inside the pod's namespace under its final name.

    Creating the peer in place (IFLA_NET_NS_FD) avoids a temporary name and a
    move, so a name clash in the pod fails cleanly before anything exists.
    The pod end cannot be created up: the kernel opens it before the two
    ends are linked (veth_open then fails with ENOTCONN).
    """
    msg = ifinfmsg()
    msg["flags"] = msg["change"] = IFF_UP
    peer_attrs = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd),
                  ("IFLA_MTU", mtu), ("IFLA_ADDRESS", peer_mac)]
    msg["attrs"] = [
        ("IFLA_IFNAME", host), ("IFLA_ADDRESS", host_mac), ("IFLA_MTU", mtu), ("IFLA_MASTER", master),
        ("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}),
        ]}),
    ]
    return Request(msg, RTM_NEWLINK, CREATE, f"create veth {host} <-> {peer}")


def set_hairpin(name: str) -> Request:
    """Let frames leave the bridge port they came in on, so a pod can reach
    itself through a service address that the node DNATs back to it."""
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": [
        ("IFLA_INFO_SLAVE_KIND", "bridge"),
        ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]}),
    ]})]
    return Request(msg, RTM_NEWLINK, 0, f"turn hairpin on for {name}")


def del_link(name: str) -> Request:
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", name)]
    return Request(msg, RTM_DELLINK, 0, f"delete link {name}", tolerate=frozenset({ENODEV}))


def new_address(index: int, address: str, prefixlen: int, version: int, *,
                exist_ok: bool = False, what: str = "") -> Request:
    """Add an address. DAD is skipped for IPv6: IPAM already guarantees the
    address is unique, and DAD would leave it unusable for about a second."""
    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = FAMILY[version], prefixlen, index
    msg["flags"] = IFA_F_NODAD if version == 6 else 0
    msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
    tolerate = frozenset({EEXIST}) if exist_ok else frozenset()
    return Request(msg, RTM_NEWADDR, CREATE, what or f"add address {address}/{prefixlen}", tolerate=tolerate)


def new_default_route(index: int, gateway: str, version: int) -> Request:
    msg = rtmsg()
    msg["family"], msg["dst_len"], msg["table"] = FAMILY[version], 0, RT_TABLE_MAIN
    msg["proto"], msg["scope"], msg["type"] = RTPROT_BOOT, 0, RTN_UNICAST
    msg["attrs"] = [("RTA_GATEWAY", gateway), ("RTA_OIF", index)]
    return Request(msg, RTM_NEWROUTE, CREATE, f"add default route via {gateway}")


def dump_links() -> Request:
    return Request(ifinfmsg(), RTM_GETLINK, NLM_F_DUMP, "list links")


def dump_addresses() -> Request:
    return Request(ifaddrmsg(), RTM_GETADDR, NLM_F_DUMP, "list addresses")


def dump_routes(version: int) -> Request:
    msg = rtmsg()
    msg["family"] = FAMILY[version]
    return Request(msg, RTM_GETROUTE, NLM_F_DUMP, f"list IPv{version} routes")


def link_index(raw: bytes) -> int:
    """ifi_index from a raw RTM_NEWLINK reply, without decoding the rest."""
    return struct.unpack_from("=i", raw, 16 + 4)[0]


def decode_link(raw: bytes) -> ifinfmsg:
    msg = ifinfmsg(raw)
    msg.decode()
    return msg


def decode_address(raw: bytes) -> ifaddrmsg:
    msg = ifaddrmsg(raw)
    msg.decode()
    return msg


def decode_route(raw: bytes) -> rtmsg:
    msg = rtmsg(raw)
    msg.decode()
    return msg


IFLA_ADDRESS = 1


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


def link_mac(raw: bytes) -> str:
    value = link_attr(raw, IFLA_ADDRESS) or b""
    return ":".join(f"{b:02x}" for b in value)
