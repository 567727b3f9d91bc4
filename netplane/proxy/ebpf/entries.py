"""The BPF maps' keys and values as bytes, laid out as bpf/sock_lb.c declares
them (native byte order for counters, network order for ports; IPv4
addresses as ::ffff:a.b.c.d, so one map serves both families).

    services   (address, port, protocol, scope, slot) -> slot 0: (count, flags, affinity, id)
                                                      slot i: (backend id, 0, 0, 0)
    backends   id -> (address, port)
    nodeports  (address, 0, 0, 0, 0) -> 0: the addresses node ports answer on
"""
import struct

import netaddr

SCOPE_NODEPORT = 1           # a key whose address is the family's zero: any node-port address
FLAG_DROP = 1                # refuse with EPERM: endpoints exist, none here (else ECONNREFUSED)
V4_PREFIX = bytes(10) + b"\xff\xff"

_KEY = struct.Struct("=16s2sBBI")
_VALUE = struct.Struct("=IIII")
_BACKEND = struct.Struct("=16s2sH")
ANY = {4: V4_PREFIX + bytes(4), 6: bytes(16)}    # a node-port key's address, per family


def family(addr: bytes) -> int:
    """Both families' proxies share the maps: each keeps to its own keys."""
    return 4 if addr[:12] == V4_PREFIX else 6


def address(ip) -> bytes:
    """16 bytes: IPv6 as it is, IPv4 mapped (::ffff:a.b.c.d)."""
    ip = netaddr.IPAddress(ip)
    return (ip.ipv6() if ip.version == 4 else ip).packed


def service_key(addr: bytes, port: int, proto: int, scope: int = 0, slot: int = 0) -> bytes:
    return _KEY.pack(addr, port.to_bytes(2, "big"), proto, scope, slot)


def master(count: int, flags: int, affinity: int, port_id: int) -> bytes:
    return _VALUE.pack(count, flags, affinity, port_id)


def slot(backend_id: int) -> bytes:
    return _VALUE.pack(backend_id, 0, 0, 0)


def backend(addr: bytes, port: int) -> bytes:
    return _BACKEND.pack(addr, port.to_bytes(2, "big"), 0)


def nodeport_key(addr: bytes) -> bytes:
    return _KEY.pack(addr, b"\0\0", 0, 0, 0)


def parse_key(key: bytes) -> tuple[bytes, int, int, int, int]:
    addr, port, proto, scope, slot_ = _KEY.unpack(key)
    return addr, int.from_bytes(port, "big"), proto, scope, slot_


def parse_value(value: bytes) -> tuple[int, int, int, int]:
    return _VALUE.unpack(value)


def parse_backend(value: bytes) -> tuple[bytes, int]:
    addr, port, _ = _BACKEND.unpack(value)
    return addr, int.from_bytes(port, "big")


def text(addr: bytes) -> str:
    """The address as the kernel's peer would show it (IPv4 unmapped)."""
    ip = netaddr.IPAddress(int.from_bytes(addr, "big"), 6)
    return str(ip.ipv4()) if ip.is_ipv4_mapped() else str(ip)
