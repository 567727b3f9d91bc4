"""The BPF maps' keys and values as bytes, laid out as bpf/sock_lb.c declares
them (native byte order for counters, network order for ports; IPv4
addresses as ::ffff:a.b.c.d, so one map serves both families).

    services   (address, port, protocol, scope, slot) -> slot 0: (count, flags, affinity, id)
                                                      slot i: (backend id, 0, 0, 0)
    backends   id -> (address, port, local)
    nodeports  (address, 0, 0, 0, 0) -> 0: the addresses node ports answer on
    source_ranges  (prefix length, port id, address) -> 1 (an LPM trie: loadBalancerSourceRanges)
    maglev_digests port id -> (digest, size class): which Maglev table the kernel holds

A key's scope says who looks it up: 0 and SCOPE_NODEPORT the socket
programs (and tc_lb.c for a cluster IP routed to the node), SCOPE_EXTERNAL
(| SCOPE_NODEPORT) the tc programs, for traffic from other machines.

group_entries() packs one lookup key's master and slots at once;
ext/ebpf_entries.pyx builds the same bytes, faster (netplane.fastpath).
"""
import socket
import struct

import netaddr

SCOPE_NODEPORT = 1           # a key whose address is the family's zero: any node-port address
SCOPE_EXTERNAL = 2           # what traffic from other machines reaches (tc_lb.c)
FLAG_DROP = 1                # refuse with EPERM: endpoints exist, none here (else ECONNREFUSED)
FLAG_LOCAL = 2               # externalTrafficPolicy Local: no SNAT, the client's address is kept
FLAG_FIREWALL = 4            # sources are checked against source_ranges
LUT_SHIFT = 8                # flags bits 8..15: the Maglev table's size class
BACKEND_LOCAL = 1            # a backend on this node: reached without SNAT
V4_PREFIX = bytes(10) + b"\xff\xff"

_KEY = struct.Struct("=16s2sBBI")
_VALUE = struct.Struct("=IIII")
_BACKEND = struct.Struct("=16s2sH")
_HEAD = struct.Struct("!16sHBB")        # a key's first 20 bytes: _KEY's address, port, protocol, scope
_SLOT_NO = struct.Struct("=I")          # and its last 4: the slot
ANY = {4: V4_PREFIX + bytes(4), 6: bytes(16)}    # a node-port key's address, per family


def family(addr: bytes) -> int:
    """Both families' proxies share the maps: each keeps to its own keys."""
    return 4 if addr[:12] == V4_PREFIX else 6


def address(ip) -> bytes:
    """16 bytes: IPv6 as it is, IPv4 mapped (::ffff:a.b.c.d). From the text,
    through inet_pton: parsing a netaddr address cost 1.5 s of a 10k compile."""
    text = str(ip)
    if ":" in text:
        return socket.inet_pton(socket.AF_INET6, text)
    return V4_PREFIX + socket.inet_pton(socket.AF_INET, text)


def service_key(addr: bytes, port: int, proto: int, scope: int = 0, slot: int = 0) -> bytes:
    return _KEY.pack(addr, port.to_bytes(2, "big"), proto, scope, slot)


def master(count: int, flags: int, affinity: int, port_id: int) -> bytes:
    return _VALUE.pack(count, flags, affinity, port_id)


def slot(backend_id: int) -> bytes:
    return _VALUE.pack(backend_id, 0, 0, 0)


def group_entries(addr: bytes, port: int, proto: int, scope: int, backend_ids: list[int], flags: int,
                  affinity: int, port_id: int) -> dict[bytes, bytes]:
    """One lookup key's entries: {slot i's key: slot(backend_ids[i - 1]) for
    i = 1..N, then the master's key (slot 0): master(N, flags, affinity,
    port_id)}, the bytes service_key(), slot() and master() give.

    Any invalid input raises struct.error, as in the compiled twin: an
    address that is not bytes (or bytearray) of exactly 16 (where
    service_key() would pad or cut it), a port outside 0..65535, a protocol
    or scope outside 0..255, a backend id, flag, affinity or port id
    outside 0..2**32-1, a number that is not an integer."""
    if not isinstance(addr, (bytes, bytearray)) or len(addr) != 16:
        raise struct.error("the address must be 16 bytes")
    head = _HEAD.pack(addr, port, proto, scope)
    entries = {head + _SLOT_NO.pack(i): _VALUE.pack(backend_id, 0, 0, 0)
               for i, backend_id in enumerate(backend_ids, 1)}
    entries[head + _SLOT_NO.pack(0)] = _VALUE.pack(len(backend_ids), flags, affinity, port_id)
    return entries


def backend(addr: bytes, port: int, local: bool = False) -> bytes:
    return _BACKEND.pack(addr, port.to_bytes(2, "big"), BACKEND_LOCAL if local else 0)


def nodeport_key(addr: bytes) -> bytes:
    return _KEY.pack(addr, b"\0\0", 0, 0, 0)


def parse_key(key: bytes) -> tuple[bytes, int, int, int, int]:
    addr, port, proto, scope, slot_ = _KEY.unpack(key)
    return addr, int.from_bytes(port, "big"), proto, scope, slot_


def parse_value(value: bytes) -> tuple[int, int, int, int]:
    return _VALUE.unpack(value)


def parse_backend(value: bytes) -> tuple[bytes, int, bool]:
    """(address, port, local): the endpoint tuple the compile keys ids by."""
    addr, port, flags = _BACKEND.unpack(value)
    return addr, int.from_bytes(port, "big"), bool(flags & BACKEND_LOCAL)


_RANGE = struct.Struct("=II16s")
_DIGEST = struct.Struct("=QII")


def range_key(port_id: int, network) -> bytes:
    """An LPM trie key: the port id always matches whole, then the network's
    prefix of the 16-byte address (an IPv4 one behind the 96 bits of ::ffff:)."""
    plen = network.prefixlen + (96 if network.version == 4 else 0)
    return _RANGE.pack(32 + plen, port_id, address(network.network))


def parse_range_key(key: bytes) -> tuple[int, bytes, int]:
    """(port id, address, prefix length in the 16-byte address)."""
    plen, port_id, addr = _RANGE.unpack(key)
    return port_id, addr, plen - 32


def nat_key(ifindex: int, family: int) -> bytes:
    """nat_addresses' key: the device and family whose SNAT address it holds."""
    return struct.pack("=II", ifindex, family)


def digest_value(digest: int, size_class: int) -> bytes:
    return _DIGEST.pack(digest, size_class, 0)


def parse_digest(value: bytes) -> tuple[int, int]:
    digest, size_class, _ = _DIGEST.unpack(value)
    return digest, size_class


_REVNAT = struct.Struct("=16s2sH16s2sH")


def revnat_value(value: bytes) -> tuple[bytes, int, tuple[bytes, int]]:
    """What a translated socket dialled (address, port), and the backend it
    was sent to (struct revnat_value)."""
    orig, orig_port, _, addr, port, _ = _REVNAT.unpack(value)
    return orig, int.from_bytes(orig_port, "big"), (addr, int.from_bytes(port, "big"))


def text(addr: bytes) -> str:
    """The address as the kernel's peer would show it (IPv4 unmapped)."""
    ip = netaddr.IPAddress(int.from_bytes(addr, "big"), 6)
    return str(ip.ipv4()) if ip.is_ipv4_mapped() else str(ip)
