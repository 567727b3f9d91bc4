"""The IPVS encoder must send exactly what pyroute2 would, and read what the kernel sends.

The reference messages are built the way pyroute2's IPVS class builds them
(an ipvsmsg whose IPVS_CMD_ATTR_SERVICE / _DEST come from IPVSService /
IPVSDest), with the attributes listed in our order (the kernel does not
care about the order; pyroute2's own follows its request processor).

Where pyroute2 and the kernel part ways, the reference follows the kernel,
deliberately:
- pyroute2 sets no netmask for an IPv6 service, and types the attribute as
  an IPv4 address; the kernel requires it on every add/set (EINVAL without)
  and reads a raw u32 prefix length, 128. The reference passes the address
  whose bytes are that u32 (NATIVE_128, "128.0.0.0" on little-endian).
- pyroute2's IPVSDest always adds the tunnel attributes (type, port,
  flags), meaningful only for tunnel forwarding (and pyroute2 writes the
  port native-endian where the kernel reads big-endian); we send none, so
  the reference drops them.
- pyroute2's flags mask is 0xffff; we send ~0 as ipvsadm does (the same
  effect: every flag the kernel keeps is in the low 16 bits).
- pyroute2 sends every attribute of a dest on delete; the kernel reads only
  the address and port (and family), which is all we send.
"""
import socket
import struct
import time

import pytest
from pyroute2.ipvs import IPVSDest, IPVSService
from pyroute2.netlink.generic.ipvs import ipvsmsg

from netplane.netlink import wire as w
from netplane.proxy.ipvs import netlink as nl
from netplane.proxy.ipvs.plan import FWMARK, MASQ, Key, VirtualServer

GENL_ID = 0x23
NATIVE_128 = socket.inet_ntoa(struct.pack("=I", 128))
SERVICE_ORDER = ("af", "protocol", "addr", "port", "fwmark", "sched_name", "flags", "timeout", "netmask")
DEST_ORDER = ("addr_family", "addr", "port", "fwd_method", "weight", "u_thresh", "l_thresh")
KEY_FIELDS = ("af", "protocol", "addr", "port", "fwmark")
FLAGS = nl.NLM_F_REQUEST | nl.NLM_F_ACK


def reference(cmd: int, seq: int, flags: int, service: IPVSService, service_fields, dest: IPVSDest | None = None,
              dest_fields=()) -> bytes:
    msg = ipvsmsg()
    msg["cmd"] = cmd
    msg["version"] = 1
    msg["attrs"] = [("IPVS_CMD_ATTR_SERVICE", service.dump_nla(items=_ordered(service, service_fields)))]
    if dest is not None:
        msg["attrs"].append(("IPVS_CMD_ATTR_DEST", dest.dump_nla(items=_ordered(dest, dest_fields))))
    msg["header"]["type"] = GENL_ID
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


def _ordered(record, fields):
    record.dump_nla()  # runs pyroute2's field filters (the address family, the IPv4 netmask)
    return [(name, record[name]) for name in fields if name in record]


def pyroute2_service(family: int, key: Key, server: VirtualServer | None) -> IPVSService:
    af = nl.AF[family]
    if key.protocol == FWMARK:
        svc = IPVSService(af=af, fwmark=key.port)
    else:
        svc = IPVSService(af=af, protocol=nl.PROTOCOLS[key.protocol], addr=key.address, port=key.port)
    if server is not None:
        svc["sched_name"] = server.scheduler
        svc["flags"] = {"flags": nl.service_flags(server), "mask": 0xFFFFFFFF}
        svc["timeout"] = server.timeout
        svc["netmask"] = "255.255.255.255" if family == 4 else NATIVE_128
    return svc


KEYS = {
    "tcp4": (4, Key("TCP", "10.96.0.10", 80)),
    "udp4": (4, Key("UDP", "10.96.0.53", 53)),
    "sctp4": (4, Key("SCTP", "192.168.1.1", 36412)),
    "fwmark4": (4, Key(FWMARK, "", 0x4001)),
    "tcp6": (6, Key("TCP", "fd00:10:96::a", 443)),
    "udp6": (6, Key("UDP", "fd00:10:96::35", 53)),
    "sctp6": (6, Key("SCTP", "2001:db8::1", 9)),
    "fwmark6": (6, Key(FWMARK, "", 7)),
}
SERVERS = {
    "rr": VirtualServer("rr", 0),
    "persistent": VirtualServer("rr", 10800),
    "mh": VirtualServer("mh", 0),
    "sh-persistent": VirtualServer("sh", 60),
    "wlc": VirtualServer("wlc", 0),
}


@pytest.mark.parametrize("name", KEYS)
@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize("cmd", [nl.NEW_SERVICE, nl.SET_SERVICE])
def test_service_messages_match_pyroute2(name, server_name, cmd):
    family, key = KEYS[name]
    server = SERVERS[server_name]
    ours = nl.service_message(GENL_ID, cmd, family, key, server, 42, FLAGS)
    assert ours == reference(cmd, 42, FLAGS, pyroute2_service(family, key, server), SERVICE_ORDER)


@pytest.mark.parametrize("name", KEYS)
def test_delete_service_carries_the_key_only(name):
    family, key = KEYS[name]
    ours = nl.service_message(GENL_ID, nl.DEL_SERVICE, family, key, None, 7, nl.NLM_F_REQUEST)
    assert ours == reference(nl.DEL_SERVICE, 7, nl.NLM_F_REQUEST, pyroute2_service(family, key, None), KEY_FIELDS)


DESTS = {4: ("10.244.1.5", 8080), 6: ("fd00:10:244:1::5", 8443)}


@pytest.mark.parametrize("name", KEYS)
@pytest.mark.parametrize("cmd,weight", [(nl.NEW_DEST, 1), (nl.SET_DEST, 0), (nl.SET_DEST, 65535)])
def test_dest_messages_match_pyroute2(name, cmd, weight):
    family, key = KEYS[name]
    address, port = DESTS[family]
    ours = nl.dest_message(GENL_ID, cmd, family, key, (address, port), weight, 99, FLAGS)
    dest = IPVSDest(addr=address, port=port, fwd_method=MASQ, weight=weight)
    expected = reference(cmd, 99, FLAGS, pyroute2_service(family, key, None), KEY_FIELDS, dest, DEST_ORDER)
    assert ours == expected
    assert dest["fwd_method"] == 0 and dest["u_thresh"] == dest["l_thresh"] == 0


@pytest.mark.parametrize("name", KEYS)
def test_delete_dest_carries_address_and_port(name):
    family, key = KEYS[name]
    address, port = DESTS[family]
    ours = nl.dest_message(GENL_ID, nl.DEL_DEST, family, key, (address, port), 0, 3)
    dest = IPVSDest(addr=address, port=port)
    expected = reference(nl.DEL_DEST, 3, nl.NLM_F_REQUEST, pyroute2_service(family, key, None), KEY_FIELDS,
                         dest, ("addr_family", "addr", "port"))
    assert ours == expected


def test_flags():
    assert nl.service_flags(VirtualServer("rr", 0)) == 0
    assert nl.service_flags(VirtualServer("rr", 30)) == nl.F_PERSISTENT
    assert nl.service_flags(VirtualServer("mh", 0)) == nl.F_SCHED1          # mh-fallback, not mh-port
    assert nl.service_flags(VirtualServer("mh", 30)) == nl.F_SCHED1 | nl.F_PERSISTENT


def test_with_ack_sets_only_the_ack_flag():
    family, key = KEYS["tcp4"]
    plain = nl.dest_message(GENL_ID, nl.NEW_DEST, family, key, DESTS[4], 1, 5)
    acked = nl.dest_message(GENL_ID, nl.NEW_DEST, family, key, DESTS[4], 1, 5, nl.NLM_F_REQUEST | nl.NLM_F_ACK)
    assert nl.with_ack(plain) == acked


def test_family_request_matches_pyroute2():
    from pyroute2.netlink import ctrlmsg
    msg = ctrlmsg()
    msg["cmd"] = nl.CTRL_CMD_GETFAMILY
    msg["version"] = 1
    msg["attrs"] = [("CTRL_ATTR_FAMILY_NAME", "IPVS")]
    msg.encode()
    assert nl.get_family_body() == bytes(msg.data)[16:]


def _reply(cmd: int, nest: bytes) -> bytes:
    body = nl.GENL.pack(cmd, 1, 0) + nest
    return struct.pack("=IHHII", 16 + len(body), GENL_ID, 2, 1, 0) + body


def _kernel_service(family, key, scheduler, flags, timeout):
    """A GET_SERVICE reply as ip_vs_genl_fill_service writes it: 16-byte
    address, flags with the kernel's own HASHED bit, stats nested."""
    af = nl.AF[family]
    attrs = [w.attr(nl.SVC_AF, struct.pack("=H", af))]
    if key.protocol == FWMARK:
        attrs.append(w.u32(nl.SVC_FWMARK, key.port))
    else:
        address = socket.inet_pton(af, key.address).ljust(16, b"\0")
        attrs += [w.attr(nl.SVC_PROTOCOL, struct.pack("=H", nl.PROTOCOLS[key.protocol])),
                  w.attr(nl.SVC_ADDR, address), w.attr(nl.SVC_PORT, struct.pack(">H", key.port))]
    attrs += [w.string(nl.SVC_SCHED_NAME, scheduler), w.attr(nl.SVC_FLAGS, struct.pack("=II", flags, 0xFFFFFFFF)),
              w.u32(nl.SVC_TIMEOUT, timeout), w.u32(nl.SVC_NETMASK, nl.NETMASK[family]),
              w.nest(10 | 0x8000, w.u32(1, 5), w.u32(2, 9))]
    return _reply(nl.NEW_SERVICE, w.nest(nl.CMD_ATTR_SERVICE | 0x8000, *attrs))


@pytest.mark.parametrize("name", KEYS)
def test_parse_service(name):
    family, key = KEYS[name]
    raw = _kernel_service(family, key, "mh", nl.F_HASHED | nl.F_PERSISTENT | nl.F_SCHED1, 10800)
    assert nl.parse_service(raw) == (family, key, VirtualServer("mh", 10800))
    # not persistent: whatever timeout the kernel reports is not affinity
    raw = _kernel_service(family, key, "rr", nl.F_HASHED, 300)
    assert nl.parse_service(raw) == (family, key, VirtualServer("rr", 0))


@pytest.mark.parametrize("family", [4, 6])
def test_parse_dest(family):
    address, port = DESTS[family]
    attrs = [w.attr(nl.DEST_ADDR, socket.inet_pton(nl.AF[family], address).ljust(16, b"\0")),
             w.attr(nl.DEST_PORT, struct.pack(">H", port)), w.u32(nl.DEST_FWD_METHOD, 0),
             w.u32(nl.DEST_WEIGHT, 3), w.u32(nl.DEST_U_THRESH, 0), w.u32(nl.DEST_L_THRESH, 0),
             w.u32(nl.DEST_ACTIVE_CONNS, 4), w.u32(nl.DEST_INACT_CONNS, 5), w.u32(9, 0),
             w.attr(nl.DEST_ADDR_FAMILY, struct.pack("=H", nl.AF[family]))]
    raw = _reply(nl.NEW_DEST, w.nest(nl.CMD_ATTR_DEST | 0x8000, *attrs))
    assert nl.parse_dest(raw, family) == ((address, port), (3, 4, 5))


def test_family_id():
    raw = _reply(1, w.attr(nl.CTRL_ATTR_FAMILY_ID, struct.pack("=H", 0x1F)) + w.string(2, "IPVS"))
    assert nl.family_id(raw) == 0x1F


def test_encoding_a_thousand_dest_messages():
    """Encodes; prints the cost (speed goals are reported, not asserted)."""
    keys = [Key("TCP", f"10.96.{i >> 8}.{i & 255}", 80) for i in range(100)]
    dests = [(f"10.244.{i >> 8}.{i & 255}", 8080) for i in range(10)]
    start = time.perf_counter()
    out = [nl.dest_message(GENL_ID, nl.NEW_DEST, 4, key, dest, 1, seq)
           for seq, (key, dest) in enumerate((k, d) for k in keys for d in dests)]
    elapsed = time.perf_counter() - start
    assert len(out) == 1000 and len({len(m) for m in out}) == 1
    print(f"\n1000 dest messages: {elapsed * 1e3:.2f} ms ({elapsed * 1e3:.2f} us each)")


def test_operations_in_words():
    from netplane.proxy.ipvs.kernel import describe_operation
    v4, v6, mark = Key("TCP", "10.96.0.10", 80), Key("UDP", "fd00::a", 53), Key(FWMARK, "", 0x4001)
    ops = ([(v4, VirtualServer("rr", 0))], [(v6, VirtualServer("mh", 30))],
           [("add", v4, ("10.244.1.5", 8080), 1), ("set", v6, ("fd00::5", 53), 0), ("delete", mark, ("10.1.1.1", 80), 0)],
           [mark])
    assert [describe_operation(i, *ops) for i in range(6)] == [
        "adding virtual server TCP 10.96.0.10:80 (rr)",
        "changing virtual server UDP [fd00::a]:53 to mh, persistence 30 s",
        "adding real server 10.244.1.5:8080 to TCP 10.96.0.10:80",
        "setting real server [fd00::5]:53 of UDP [fd00::a]:53 to weight 0",
        "deleting real server 10.1.1.1:80 from firewall mark 0x4001",
        "deleting virtual server firewall mark 0x4001",
    ]
