"""The tc datapath (bpf/tc_lb.c) on crafted packets, run by BPF_PROG_TEST_RUN:
the helper of tests/kernel/test_ebpf_datapath.py, which runs it as

    unshare -m sh -c 'mount -t bpf bpf DIR && exec python ebpf_datapath_scenarios.py DIR'

(its maps are pinned, so it needs a bpffs, mounted in a private mount
namespace: nothing is mounted on the host). It compiles the program text
the proxy loads (loader.program_text()) twice, with the default SNAT port
range and with one of 8 ports (and a 2 s timeout for unanswered SYNs, so
a port can be seen freed), fills the maps with the byte layouts of
entries.py as the proxy would, plays each scenario and prints one JSON
object: per scenario the packets in, the verdicts and the packets out, in
hex. It asserts nothing: the test module judges what came out. Nothing is
attached anywhere; a test run's packet never leaves the kernel.

The node N has two node-port addresses (192.168.200.11, fd00:200::11),
also its SNAT address on the test run's device (the loopback: a test-run
skb's ifindex, probed first). Its Services (port ids in brackets):

    30080/TCP, /UDP  a remote backend (SNAT)            [1, 2] IPv4, [11, 12] IPv6
    30081/TCP        a backend on this node (no SNAT)   [3] IPv4, [13] IPv6
    30082/TCP        no endpoint at all (reject)        [4] IPv4, [14] IPv6
    LB:80/TCP        loadBalancerSourceRanges 203.0.113.0/24          [5]
    30083/TCP        two local backends, its table swapped mid-test   [6]
    30084/TCP        a Local policy, no endpoint here (DROP flag)     [7]
    30085/TCP        another remote backend (its own SNAT ports)      [8]
    10.96.0.10:80    a cluster IP routed to the node (cluster scope)  [9]

Every Maglev table holds one backend, so the pick is known in advance.
"""
import ctypes
import json
import os
import socket
import sys
import time
import traceback

import netaddr
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6PacketTooBig, IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether
from scapy.utils import checksum

from netplane.proxy.ebpf import entries, loader, maglev, testrun

NODE4, NODE6 = "192.168.200.11", "fd00:200::11"
CLIENT4, CLIENT6 = "192.0.2.50", "2001:db8::50"
REMOTE4, REMOTE6 = "10.244.2.5", "fd00:244:2::5"       # a backend on another node: SNAT
LOCAL4, LOCAL6 = "10.244.1.5", "fd00:244:1::5"         # a backend on this node: no SNAT
STATE_A, STATE_B = "10.244.1.6", "10.244.1.7"          # 30083's backends, before and after the swap
REMOTE_B = "10.244.3.5"                                # 30085's backend, remote: a SNAT port space of its own
CLUSTER_IP = "10.96.0.10"
LB_IP = "198.51.100.10"
ALLOWED = "203.0.113.0/24"
BACKEND_PORT = 8080
NODEPORT_REMOTE, NODEPORT_LOCAL, NODEPORT_REJECT, NODEPORT_STATE = 30080, 30081, 30082, 30083
NODEPORT_DROP, NODEPORT_EXPIRY = 30084, 30085
NAT_SMALL = (61000, 61007)
SYN_TIMEOUT = 2                      # CT_TCP_SYN of the small range's compile, in seconds
TCP_P, UDP_P = 6, 17
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

# backend id -> (address, local)
BACKENDS = {1: (REMOTE4, False), 2: (LOCAL4, True), 3: (STATE_A, True), 4: (STATE_B, True), 5: (REMOTE_B, False),
            11: (REMOTE6, False), 12: (LOCAL6, True)}
TABLE_SIZES = (251, 509)             # Maglev sizes used: size classes 0 and 1
SIZES = {"services": 1024, "backends": 1024, "affinity": 1024, "revnat": 1024, "ct": 65536}

PROBE = "\nint probe_ifindex(struct __sk_buff *skb) { return skb->ifindex; }\n"


def program_text() -> str:
    """The proxy's program text, with the Maglev table sizes used here
    only where the loader can leave the others out (clang takes ~0.6 s a size)."""
    try:
        return loader.program_text(TABLE_SIZES)
    except TypeError:
        return loader.program_text()


class Datapath:
    """One compile of the proxy's program text, its maps pinned under `pin`."""

    def __init__(self, pin: str, settings: dict[str, int]) -> None:
        import bcc
        os.makedirs(pin)
        cflags = [f'-DPIN="{pin}"'] + [f"-D{name.upper()}_MAX={n}" for name, n in SIZES.items()]
        cflags += [f"-D{name}={value}" for name, value in settings.items()] + ["-DTABLES_MAX=64"]
        self.bcc = bcc
        self.bpf = bcc.BPF(text=program_text() + PROBE, cflags=cflags)
        self.fds = {hook: self.bpf.load_func(name, bcc.BPF.SCHED_CLS).fd
                    for hook, name in (("ingress", "tc_ingress"), ("egress", "tc_egress"),
                                       ("probe", "probe_ifindex"))}

    def put(self, name: str, key: bytes, value: bytes) -> None:
        table = self.bpf[name]
        table[table.Key.from_buffer_copy(key)] = table.Leaf.from_buffer_copy(value)

    def write_table(self, size: int, port_id: int, backend_id: int) -> None:
        """A Maglev table of one backend, as loader.Loaded.write_tables writes them."""
        addr, _ = BACKENDS[backend_id]
        lut = maglev.table([maglev.name(entries.address(addr), BACKEND_PORT)], [backend_id], size, 0)
        lib = self.bcc.libbcc.lib
        fd = lib.bcc_create_map(loader.BPF_MAP_TYPE_ARRAY, b"np_lut", 4, 4 * size, 1, 0)
        if fd < 0:
            raise OSError(-fd, "bcc_create_map")
        try:
            zero = ctypes.c_uint32(0)
            if lib.bpf_update_elem(fd, ctypes.byref(zero), ctypes.c_char_p(lut), 0) != 0:
                raise OSError(ctypes.get_errno(), "bpf_update_elem")
            outer = self.bpf[f"maglev_{size}"]
            outer[outer.Key(port_id)] = outer.Leaf(fd)
        finally:
            os.close(fd)

    def service(self, addr: bytes, port: int, proto: int, scope: int, backend_ids: list[int], flags: int,
                port_id: int, size: int | None = None) -> None:
        if size is not None:
            flags |= maglev.size_class(size) << entries.LUT_SHIFT
            self.write_table(size, port_id, backend_ids[0])
        for key, value in entries.group_entries(addr, port, proto, scope, backend_ids, flags, 0, port_id).items():
            self.put("services", key, value)

    def setup(self, ifindex: int) -> None:
        a = entries.address
        ext_np = entries.SCOPE_EXTERNAL | entries.SCOPE_NODEPORT
        for backend_id, (addr, local) in BACKENDS.items():
            self.put("backends", backend_id.to_bytes(4, sys.byteorder), entries.backend(a(addr), BACKEND_PORT, local))
        for node in (NODE4, NODE6):
            self.put("nodeports", entries.nodeport_key(a(node)), bytes(4))
        self.put("nat_addresses", entries.nat_key(ifindex, 4), entries.backend(a(NODE4), 0))
        self.put("nat_addresses", entries.nat_key(ifindex, 6), entries.backend(a(NODE6), 0))
        for fam, base, remote, local in ((4, 0, 1, 2), (6, 10, 11, 12)):
            any_ = entries.ANY[fam]
            self.service(any_, NODEPORT_REMOTE, TCP_P, ext_np, [remote], 0, base + 1, 251)
            self.service(any_, NODEPORT_REMOTE, UDP_P, ext_np, [remote], 0, base + 2, 251)
            self.service(any_, NODEPORT_LOCAL, TCP_P, ext_np, [local], 0, base + 3, 509)   # size class 1
            self.service(any_, NODEPORT_REJECT, TCP_P, ext_np, [], 0, base + 4)
        self.service(a(LB_IP), 80, TCP_P, entries.SCOPE_EXTERNAL, [1], entries.FLAG_FIREWALL, 5, 251)
        self.put("source_ranges", entries.range_key(5, netaddr.IPNetwork(ALLOWED)), b"\x01")
        self.service(entries.ANY[4], NODEPORT_STATE, TCP_P, ext_np, [3], 0, 6, 251)
        # a Local policy's node port with endpoints on other nodes only
        self.service(entries.ANY[4], NODEPORT_DROP, TCP_P, ext_np, [], entries.FLAG_DROP, 7)
        self.service(entries.ANY[4], NODEPORT_EXPIRY, TCP_P, ext_np, [5], 0, 8, 251)
        # a cluster IP routed to this node: the cluster scope, a random slot
        self.service(a(CLUSTER_IP), 80, TCP_P, 0, [2], 0, 9)

    def run(self, hook: str, packet) -> testrun.Result:
        return testrun.run(self.fds[hook], bytes(packet))


class Recorder:
    """The steps of one scenario: what went in, the verdict, what came out."""

    def __init__(self, dp: Datapath) -> None:
        self.dp, self.steps = dp, []

    def __call__(self, label: str, hook: str, packet) -> Ether:
        wire = bytes(packet)
        result = self.dp.run(hook, wire)
        self.steps.append({"label": label, "hook": hook, "in": wire.hex(), "retval": result.retval,
                           "out": result.data.hex()})
        return Ether(result.data)


def eth():
    return Ether(**MACS)


def ip(src: str, dst: str, **kw):
    return IPv6(src=src, dst=dst, **kw) if ":" in src else IP(src=src, dst=dst, **kw)


def tcp(src, sport, dst, dport, flags="S", **kw):
    return eth() / ip(src, dst) / TCP(sport=sport, dport=dport, flags=flags, seq=1000, **kw) / b"hello"


def l3(pkt):
    return pkt[IPv6] if IPv6 in pkt else pkt[IP]


def round_trip(rec: Recorder, client: str, node: str, nodeport: int, cport: int) -> None:
    """A client's SYN through ingress and egress, the backend's SYN-ACK back
    through both, the client's ACK and its egress again (the SNAT port kept)."""
    dnat = rec("syn", "ingress", tcp(client, cport, node, nodeport))
    out = rec("syn-egress", "egress", dnat)
    natted = l3(out)
    backend = l3(dnat).dst
    reply = rec("synack", "ingress", tcp(backend, BACKEND_PORT, natted.src, out[TCP].sport, "SA", ack=1006))
    rec("synack-egress", "egress", reply)
    ack = rec("ack", "ingress", tcp(client, cport, node, nodeport, "A", ack=1))
    rec("ack-egress", "egress", ack)


def local_flow(rec: Recorder, client: str, node: str, backend: str) -> None:
    dnat = rec("syn", "ingress", tcp(client, 40001, node, NODEPORT_LOCAL))
    rec("syn-egress", "egress", dnat)
    rec("synack-egress", "egress", tcp(backend, BACKEND_PORT, client, 40001, "SA", ack=1006))


def frag_needed(rec: Recorder, label: str, hook: str, src: str, dst: str, about: Ether) -> Ether:
    """An ICMP "fragmentation needed" (ICMPv6 packet too big) from src to
    dst, quoting the packet `about` as it was sent."""
    quoted = bytes(l3(about))
    if ":" in src:
        err = eth() / IPv6(src=src, dst=dst) / ICMPv6PacketTooBig(mtu=1280) / quoted
    else:
        err = eth() / IP(src=src, dst=dst) / ICMP(type=3, code=4, nexthopmtu=1400) / quoted
    return rec(label, hook, err)


def port_unreachable(rec: Recorder, label: str, hook: str, src: str, dst: str, about: Ether) -> Ether:
    quoted = bytes(l3(about))
    if ":" in src:
        err = eth() / IPv6(src=src, dst=dst) / ICMPv6DestUnreach(code=4) / quoted
    else:
        err = eth() / IP(src=src, dst=dst) / ICMP(type=3, code=3) / quoted
    return rec(label, hook, err)


def out(rec: Recorder, label: str) -> Ether:
    return Ether(bytes.fromhex(next(s["out"] for s in rec.steps if s["label"] == label)))


def nat_ports(rec: Recorder, clients: list[str], label: str) -> None:
    """Each client's SYN through ingress and egress (its SNAT port taken), then its ACK (the same port)."""
    for i, client in enumerate(clients):
        dnat = rec(f"{label}{i}-syn", "ingress", tcp(client, 50000 + i, NODE4, NODEPORT_REMOTE))
        rec(f"{label}{i}-syn-egress", "egress", dnat)
    for i, client in enumerate(clients):
        dnat = rec(f"{label}{i}-ack", "ingress", tcp(client, 50000 + i, NODE4, NODEPORT_REMOTE, "A", ack=1))
        rec(f"{label}{i}-ack-egress", "egress", dnat)


def udp4_summed(pkt) -> bytes:
    """What an IPv4 UDP checksum sums: the pseudo-header, then the datagram."""
    udp = bytes(pkt[UDP])
    return (socket.inet_aton(pkt[IP].src) + socket.inet_aton(pkt[IP].dst) + bytes([0, UDP_P])
            + len(udp).to_bytes(2, "big") + udp)


def scenarios(dp: Datapath, small: Datapath) -> dict:
    plays = {}

    def play(name, dp_=dp):
        def wrap(fn):
            rec = Recorder(dp_)
            try:
                fn(rec)
                plays[name] = {"steps": rec.steps, "error": None}
            except Exception:
                plays[name] = {"steps": rec.steps, "error": traceback.format_exc()}
            return fn
        return wrap

    for fam, client, node, local, router, client_router in (
            (4, CLIENT4, NODE4, LOCAL4, "10.244.2.1", "192.0.2.1"),
            (6, CLIENT6, NODE6, LOCAL6, "fd00:244:2::1", "2001:db8::1")):
        # ICMP errors about a flow's packets, each through the hooks it passes on this node
        @play(f"round_trip{fam}")
        def _(rec, client=client, node=node, router=router, client_router=client_router):
            round_trip(rec, client, node, NODEPORT_REMOTE, 40000)
            # this node, about the client's packet it forwards (after DNAT), to the client
            frag_needed(rec, "frag-needed", "egress", node, client, out(rec, "syn"))
            # a router on the backend's side, about the SNATed packet, to the SNAT address
            err = frag_needed(rec, "frag-needed-in", "ingress", router, node, out(rec, "syn-egress"))
            rec("frag-needed-in-egress", "egress", err)
            # a router on the client's side, about the reply (from the node port), to N
            err = frag_needed(rec, "reply-frag-needed", "ingress", client_router, node, out(rec, "synack-egress"))
            rec("reply-frag-needed-egress", "egress", err)
            # the client itself, about the reply
            err = port_unreachable(rec, "client-unreachable", "ingress", client, node, out(rec, "synack-egress"))
            rec("client-unreachable-egress", "egress", err)

        @play(f"local{fam}")
        def _(rec, client=client, node=node, local=local, client_router=client_router):
            local_flow(rec, client, node, local)
            frag_needed(rec, "frag-needed", "egress", node, client, out(rec, "syn"))
            # the backend pod itself refuses the client's packet
            port_unreachable(rec, "backend-unreachable", "egress", local, client, out(rec, "syn"))
            err = frag_needed(rec, "reply-frag-needed", "ingress", client_router, node, out(rec, "synack-egress"))
            rec("reply-frag-needed-egress", "egress", err)

    @play("nat_ports")
    def _(rec):
        nat_ports(rec, [f"198.18.{i // 200}.{i % 200 + 1}" for i in range(64)], "c")
        # one client address, many source ports
        for i in range(64):
            dnat = rec(f"p{i}-syn", "ingress", tcp("198.19.0.1", 20000 + i, NODE4, NODEPORT_REMOTE))
            rec(f"p{i}-syn-egress", "egress", dnat)

    @play("exhaustion", small)
    def _(rec):
        nat_ports(rec, [f"198.18.1.{i + 1}" for i in range(8)], "c")
        dnat = rec("ninth-syn", "ingress", tcp("198.18.1.9", 50008, NODE4, NODEPORT_REMOTE))
        rec("ninth-syn-egress", "egress", dnat)
        rec("ninth-retry-egress", "egress", dnat)

    @play("reject4")
    def _(rec):
        rec("syn", "ingress", tcp(CLIENT4, 40002, NODE4, NODEPORT_REJECT))

    @play("reject6")
    def _(rec):
        rec("syn", "ingress", tcp(CLIENT6, 40002, NODE6, NODEPORT_REJECT))

    @play("source_ranges")
    def _(rec):
        rec("allowed", "ingress", tcp("203.0.113.7", 40003, LB_IP, 80))
        rec("denied", "ingress", tcp("192.0.2.99", 40003, LB_IP, 80))
        rec("denied-neighbour", "ingress", tcp("203.0.114.7", 40003, LB_IP, 80))

    @play("fragments")
    def _(rec):
        datagram = IP(src="192.0.2.60", dst=NODE4, id=777) / UDP(sport=5000, dport=NODEPORT_REMOTE) \
            / (bytes(range(256)) * 10)
        for i, frag in enumerate(fragment(datagram, fragsize=1024)):
            dnat = rec(f"frag{i}", "ingress", eth() / frag)
            rec(f"frag{i}-egress", "egress", dnat)
        # a later fragment alone: its first fragment never came
        lone = fragment(IP(src="192.0.2.61", dst=NODE4, id=778) / UDP(sport=5000, dport=NODEPORT_REMOTE)
                        / bytes(2000), fragsize=1024)[1]
        rec("lone", "ingress", eth() / lone)

    @play("fragments6")
    def _(rec):
        datagram = IPv6(src="2001:db8::60", dst=NODE6) / IPv6ExtHdrFragment(id=0x777) \
            / UDP(sport=5000, dport=NODEPORT_REMOTE) / (bytes(range(256)) * 10)
        for i, frag in enumerate(fragment6(datagram, 1280)):
            dnat = rec(f"frag{i}", "ingress", eth() / frag)
            rec(f"frag{i}-egress", "egress", dnat)
        lone = fragment6(IPv6(src="2001:db8::61", dst=NODE6) / IPv6ExtHdrFragment(id=0x778)
                         / UDP(sport=5000, dport=NODEPORT_REMOTE) / bytes(2000), 1280)[1]
        rec("lone", "ingress", eth() / lone)

    @play("udp_checksum_ffff")
    def _(rec):
        # two payload bytes chosen so the DNATed datagram's checksum computes to
        # 0, which UDP over IPv4 sends as 0xffff (0 means "no checksum")
        def datagram(dst, dport, tail):
            return IP(src="192.0.2.63", dst=dst) / UDP(sport=5002, dport=dport) / (b"abcd" + tail)
        dnatted = datagram(REMOTE4, BACKEND_PORT, b"\0\0")
        dnatted[UDP].chksum = 0
        tail = checksum(udp4_summed(dnatted)).to_bytes(2, "big")
        rec("datagram", "ingress", eth() / datagram(NODE4, NODEPORT_REMOTE, tail))

    @play("udp_no_checksum")
    def _(rec):
        rec("datagram", "ingress", eth() / IP(src="192.0.2.62", dst=NODE4) / UDP(sport=5001, dport=NODEPORT_REMOTE,
                                                                                   chksum=0) / b"no checksum")

    @play("tcp_state")
    def _(rec):
        flow = ("192.0.2.70", 40010, NODE4, NODEPORT_STATE)
        rec("syn", "ingress", tcp(*flow))
        dp.write_table(251, 6, 4)        # the Service's table now names the other backend
        rec("syn-again", "ingress", tcp(*flow))
        rec("rst", "ingress", tcp(*flow, flags="R"))
        rec("syn-after-rst", "ingress", tcp(*flow))
        # the backend's RST (its reply, at egress) closes the client's entry too
        flow = ("192.0.2.71", 40011, NODE4, NODEPORT_STATE)
        rec("b-syn", "ingress", tcp(*flow))
        dp.write_table(251, 6, 3)
        rec("b-rst", "egress", tcp(STATE_B, BACKEND_PORT, flow[0], flow[1], "RA", ack=1006))
        rec("b-syn-after-rst", "ingress", tcp(*flow))

    @play("drop")
    def _(rec):
        rec("syn", "ingress", tcp(CLIENT4, 40004, NODE4, NODEPORT_DROP))

    @play("cluster_ip")
    def _(rec):
        rec("syn", "ingress", tcp(CLIENT4, 40005, CLUSTER_IP, 80))

    @play("expiry", small)
    def _(rec):
        for i in range(8):
            dnat = rec(f"c{i}-syn", "ingress", tcp(f"198.18.2.{i + 1}", 50000, NODE4, NODEPORT_EXPIRY))
            rec(f"c{i}-syn-egress", "egress", dnat)
        ninth = rec("ninth-syn", "ingress", tcp("198.18.2.9", 50000, NODE4, NODEPORT_EXPIRY))
        rec("ninth-syn-egress", "egress", ninth)
        time.sleep(SYN_TIMEOUT + 0.5)     # the 8 flows, never answered, time out
        rec("ninth-retry-egress", "egress", ninth)

    return plays


def main(bpffs: str) -> None:
    dp = Datapath(os.path.join(bpffs, "default"), {"NAT_PORT_MIN": 61000, "NAT_PORT_MAX": 65535})
    ifindex = dp.run("probe", eth() / IP(src=CLIENT4, dst=NODE4) / UDP()).retval
    dp.setup(ifindex)
    small = Datapath(os.path.join(bpffs, "small"), {"NAT_PORT_MIN": NAT_SMALL[0], "NAT_PORT_MAX": NAT_SMALL[1],
                                                    "CT_TCP_SYN": SYN_TIMEOUT})
    small.setup(ifindex)
    json.dump({"ifindex": ifindex, "nat_small": NAT_SMALL, "syn_timeout": SYN_TIMEOUT, "scenarios": scenarios(dp, small)}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
