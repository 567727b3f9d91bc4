"""IPVS generic-netlink messages: encoded fast, decoded by a plain TLV walk.

A full sync at scale is ~110k messages (10k virtual servers x 10 real
servers); pyroute2's generic encoder costs ~100 us a message, which would
be 11 s of encoding alone. The messages have only a handful of shapes, so
each is written here from precompiled struct.Struct objects and constant
byte templates: the constant attribute headers are bytes built once, and
the identifying attributes of a virtual server (its part of every real
server's message) are cached per key. tests/unit/test_ipvs_netlink.py
checks every shape against pyroute2's encoding of the same request, byte
for byte, so pyroute2 stays the reference.

Encoded as the kernel reads it (net/netfilter/ipvs/ip_vs_ctl.c):
- a new or changed virtual server must carry the scheduler, flags, timeout
  and netmask (else EINVAL); the netmask is a raw u32 that is an IPv4 mask
  for IPv4 and a prefix length (128) for IPv6, as ipvsadm sends it;
- a real server's add/set must carry the forwarding method, weight and both
  thresholds; a delete needs only the address and port;
- flags go with the mask ~0, like ipvsadm: the message says what every
  flag is, so an edit also clears what it does not set (persistence).

The family is 4 or 6 here, as elsewhere in netplane; the messages carry
AF_INET / AF_INET6. Nothing here touches a socket (kernel.py does).
"""
import socket
import struct
from functools import lru_cache

from netplane.proxy.ipvs.plan import FWMARK, MASQ, Dest, Key, VirtualServer

# commands and attributes (linux/ip_vs.h), the generic netlink controller (linux/genetlink.h)
NEW_SERVICE, SET_SERVICE, DEL_SERVICE, GET_SERVICE = 1, 2, 3, 4
NEW_DEST, SET_DEST, DEL_DEST, GET_DEST = 5, 6, 7, 8
GENL_NAME, GENL_VERSION = "IPVS", 1
CMD_ATTR_SERVICE, CMD_ATTR_DEST = 1, 2
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK = 1, 2, 3, 4, 5
SVC_SCHED_NAME, SVC_FLAGS, SVC_TIMEOUT, SVC_NETMASK = 6, 7, 8, 9
DEST_ADDR, DEST_PORT, DEST_FWD_METHOD, DEST_WEIGHT, DEST_U_THRESH, DEST_L_THRESH = 1, 2, 3, 4, 5, 6
DEST_ACTIVE_CONNS, DEST_INACT_CONNS, DEST_ADDR_FAMILY = 7, 8, 11
GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 0x10, 3, 1, 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4

F_PERSISTENT = 0x0001
F_HASHED = 0x0002           # the kernel's own bookkeeping, set on every hashed service
# sh and mh: SCHED1 is "fallback" (a real server that is unavailable, such as
# one at weight 0 while it drains, hands its new flows to the next one in the
# table instead of dropping them). SCHED2 ("port": hash the source port too)
# stays off: the hash on the client address alone is what keeps a client on
# one real server, the point of choosing sh or mh for ClientIP affinity.
F_SCHED1, F_SCHED2 = 0x0008, 0x0010
FALLBACK_SCHEDULERS = frozenset({"sh", "mh"})
FLAGS_MASK = 0xFFFFFFFF

PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}
AF = {4: socket.AF_INET, 6: socket.AF_INET6}
VERSION = {socket.AF_INET: 4, socket.AF_INET6: 6}
# an IPv4 mask, an IPv6 prefix length: both a raw native-endian u32 (see above)
NETMASK = {4: 0xFFFFFFFF, 6: 128}

HEADER = struct.Struct("=IHHIIBBH")   # nlmsghdr (length, type, flags, seq, pid), genlmsghdr (cmd, version)
GENL = struct.Struct("=BBH")
ATTR = struct.Struct("=HH")
U16 = struct.Struct("=HHH2x")         # a whole u16 attribute: length 6, padded to 8
U32 = struct.Struct("=HHI")
FLAGS = struct.Struct("=HHII")        # struct ip_vs_flags: flags, mask
HEAD_SIZE = HEADER.size
# A real server's nest: its address family first (pyroute2 reads the
# address's type from it; IPVS_DEST_ATTR_ADDR_FAMILY is read since 4.x), the
# address, then the port, forwarding method, weight and thresholds 0.
_ADDR_SIZE = {4: 4, 6: 16}
_DEST_MID = struct.Struct("=HHH2xHHIHHI")
_DEST_TAIL = U32.pack(8, DEST_U_THRESH, 0) + U32.pack(8, DEST_L_THRESH, 0)
# the nest header, the family attribute and the address attribute's header
_DEST_HEAD = {family: ATTR.pack(4 + 8 + 4 + size + 8 + 8 + 8 + len(_DEST_TAIL), CMD_ATTR_DEST)
              + U16.pack(6, DEST_ADDR_FAMILY, AF[family]) + ATTR.pack(4 + size, DEST_ADDR)
              for family, size in _ADDR_SIZE.items()}
_DEL_HEAD = {family: ATTR.pack(4 + 8 + 4 + size + 8, CMD_ATTR_DEST)
             + U16.pack(6, DEST_ADDR_FAMILY, AF[family]) + ATTR.pack(4 + size, DEST_ADDR)
             for family, size in _ADDR_SIZE.items()}
_DEL_PORT = struct.Struct("=HHH2x")
_htons = socket.htons
_pton = socket.inet_pton


def service_message(genl_id: int, cmd: int, family: int, key: Key, server: VirtualServer | None,
                    seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    """NEW_SERVICE / SET_SERVICE (server given) or DEL_SERVICE (server None)."""
    body = _service_key(family, key)
    if server is not None:
        body += _service_settings(family, server)
    body = ATTR.pack(4 + len(body), CMD_ATTR_SERVICE) + body
    return HEADER.pack(HEAD_SIZE + len(body), genl_id, flags, seq, 0, cmd, GENL_VERSION, 0) + body


def dest_message(genl_id: int, cmd: int, family: int, key: Key, dest: Dest, weight: int,
                 seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    """NEW_DEST / SET_DEST (masquerading, the given weight) or DEL_DEST (weight unused)."""
    service = service_nest(family, key)
    address = _pton(AF[family], dest[0])
    if cmd == DEL_DEST:
        tail = _DEL_HEAD[family] + address + _DEL_PORT.pack(6, DEST_PORT, _htons(dest[1]))
    else:
        tail = (_DEST_HEAD[family] + address
                + _DEST_MID.pack(6, DEST_PORT, _htons(dest[1]), 8, DEST_FWD_METHOD, MASQ, 8, DEST_WEIGHT, weight)
                + _DEST_TAIL)
    return (HEADER.pack(HEAD_SIZE + len(service) + len(tail), genl_id, flags, seq, 0, cmd, GENL_VERSION, 0)
            + service + tail)


DEST_COMMANDS = {"add": NEW_DEST, "set": SET_DEST, "delete": DEL_DEST}


def messages(genl_id: int, family: int, seq: int, add_servers, edit_servers, dests, delete_servers):
    """Every operation's message, in the order they are applied, numbered
    from seq: what a sync sends (and what the host benchmark encodes)."""
    service, dest = service_message, dest_message
    for cmd, servers in ((NEW_SERVICE, add_servers), (SET_SERVICE, edit_servers)):
        for key, server in servers:
            yield service(genl_id, cmd, family, key, server, seq)
            seq += 1
    for op, key, real, weight in dests:
        yield dest(genl_id, DEST_COMMANDS[op], family, key, real, weight, seq)
        seq += 1
    for key in delete_servers:
        yield service(genl_id, DEL_SERVICE, family, key, None, seq)
        seq += 1


def with_ack(message: bytes) -> bytes:
    """The same message asking for an ack (the flags are the u16 at offset 6)."""
    flags = struct.unpack_from("=H", message, 6)[0]
    return message[:6] + struct.pack("=H", flags | NLM_F_ACK) + message[8:]


@lru_cache(maxsize=1 << 16)
def _service_key(family: int, key: Key) -> bytes:
    """The attributes that name a virtual server, its part of every message about it."""
    af = U16.pack(6, SVC_AF, AF[family])
    if key.protocol == FWMARK:
        return af + U32.pack(8, SVC_FWMARK, key.port)
    address = _pton(AF[family], key.address)
    return (af + U16.pack(6, SVC_PROTOCOL, PROTOCOLS[key.protocol])
            + ATTR.pack(4 + len(address), SVC_ADDR) + address + U16.pack(6, SVC_PORT, _htons(key.port)))


@lru_cache(maxsize=1 << 16)
def service_nest(family: int, key: Key) -> bytes:
    body = _service_key(family, key)
    return ATTR.pack(4 + len(body), CMD_ATTR_SERVICE) + body


def _service_settings(family: int, server: VirtualServer) -> bytes:
    return (_asciiz(SVC_SCHED_NAME, server.scheduler) + FLAGS.pack(12, SVC_FLAGS, service_flags(server), FLAGS_MASK)
            + U32.pack(8, SVC_TIMEOUT, max(server.timeout, 0)) + U32.pack(8, SVC_NETMASK, NETMASK[family]))


def service_flags(server: VirtualServer) -> int:
    flags = F_PERSISTENT if server.timeout > 0 else 0
    if server.scheduler in FALLBACK_SCHEDULERS:
        flags |= F_SCHED1
    return flags


def _asciiz(kind: int, text: str) -> bytes:
    data = text.encode() + b"\0"
    return ATTR.pack(4 + len(data), kind) + data + b"\0" * (-len(data) % 4)


# --- requests for kernel.py's channel (bodies: the channel adds the netlink header)

def get_family_body() -> bytes:
    return GENL.pack(CTRL_CMD_GETFAMILY, 1, 0) + _asciiz(CTRL_ATTR_FAMILY_NAME, GENL_NAME)


def dump_services_body() -> bytes:
    return GENL.pack(GET_SERVICE, GENL_VERSION, 0)


def get_service_body(family: int, key: Key) -> bytes:
    return GENL.pack(GET_SERVICE, GENL_VERSION, 0) + service_nest(family, key)


def dump_dests_body(family: int, key: Key) -> bytes:
    return GENL.pack(GET_DEST, GENL_VERSION, 0) + service_nest(family, key)


# --- replies: whole netlink messages, as the channel returns them

def family_id(raw: bytes) -> int | None:
    value = _attrs(raw, HEAD_SIZE).get(CTRL_ATTR_FAMILY_ID)
    return struct.unpack_from("=H", value)[0] if value else None


def parse_service(raw: bytes) -> tuple[int, Key, VirtualServer]:
    """(family 4 or 6, key, settings) of one GET_SERVICE reply.

    Persistence reads back as its timeout only when the persistent flag is
    set; the kernel reports a timeout in seconds either way.
    """
    a = _attrs(_attrs(raw, HEAD_SIZE)[CMD_ATTR_SERVICE])
    family = VERSION[_u16(a[SVC_AF])]
    if SVC_FWMARK in a:
        key = Key(FWMARK, "", _u32(a[SVC_FWMARK]))
    else:
        key = Key(PROTOCOL_NAMES.get(_u16(a[SVC_PROTOCOL]), str(_u16(a[SVC_PROTOCOL]))),
                  _ntop(family, a[SVC_ADDR]), struct.unpack(">H", a[SVC_PORT][:2])[0])
    flags = struct.unpack_from("=I", a[SVC_FLAGS])[0] if SVC_FLAGS in a else 0
    timeout = _u32(a[SVC_TIMEOUT]) if flags & F_PERSISTENT and SVC_TIMEOUT in a else 0
    return family, key, VirtualServer(a[SVC_SCHED_NAME].rstrip(b"\0").decode(), timeout)


def parse_dest(raw: bytes, family: int) -> tuple[Dest, tuple[int, int, int]]:
    """((address, port), (weight, active, inactive)) of one GET_DEST reply."""
    a = _attrs(_attrs(raw, HEAD_SIZE)[CMD_ATTR_DEST])
    if DEST_ADDR_FAMILY in a:
        family = VERSION[_u16(a[DEST_ADDR_FAMILY])]
    dest = (_ntop(family, a[DEST_ADDR]), struct.unpack(">H", a[DEST_PORT][:2])[0])
    return dest, (_u32(a[DEST_WEIGHT]), _u32(a.get(DEST_ACTIVE_CONNS, b"\0" * 4)),
                  _u32(a.get(DEST_INACT_CONNS, b"\0" * 4)))


def _attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attribute type -> payload, one level (the nested flag masked off)."""
    out = {}
    end = len(data)
    while offset + 4 <= end:
        length, kind = ATTR.unpack_from(data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4: offset + length]
        offset += (length + 3) & ~3
    return out


def _u16(data: bytes) -> int:
    return struct.unpack_from("=H", data)[0]


def _u32(data: bytes) -> int:
    return struct.unpack_from("=I", data)[0]


def _ntop(family: int, data: bytes) -> str:
    # the kernel sends a union nf_inet_addr (16 bytes) whatever the family
    return socket.inet_ntop(AF[family], data[:_ADDR_SIZE[family]])
