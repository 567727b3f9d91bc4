"""Netlink attribute encoding for the hot path, byte-identical to pyroute2.

pyroute2's generic encoder walks class metadata for every field and costs
about 1 ms per CNI ADD, more than the kernel work it describes. The few
message shapes a pod ADD and DEL send are encoded here with plain struct
calls instead. tests/unit/test_netlink_wire.py checks every builder against
pyroute2's own encoding of the same message, byte for byte, so pyroute2
stays the reference. Decoding (CHECK, dumps) still goes through pyroute2.

The constants are Linux UAPI values (linux/rtnetlink.h, if_link.h,
if_addr.h, veth.h) and never change.
"""
import socket
import struct

# ifinfomsg attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_GROUP = 12, 18, 28, 27
IFLA_LINK = 5
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4
# ifaddrmsg and rtmsg attributes
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_OIF, RTA_GATEWAY = 4, 5

IFINFOMSG = struct.Struct("=BxHiII")     # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")      # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")      # family, dst_len, src_len, tos, table, protocol, scope, type, flags
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def nest(kind: int, *attrs: bytes) -> bytes:
    return attr(kind, b"".join(attrs))


def u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def s32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=i", value))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def mac(kind: int, value: str) -> bytes:
    return attr(kind, bytes.fromhex(value.replace(":", "")))


def ip(kind: int, address: str, version: int) -> bytes:
    return attr(kind, socket.inet_pton(FAMILY[version], address))


def ifinfomsg(family: int = 0, index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return IFINFOMSG.pack(family, 0, index, flags, change)
