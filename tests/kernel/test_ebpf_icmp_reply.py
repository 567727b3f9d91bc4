"""bpf/icmp_reply.h on crafted packets: a tiny tc program that answers every
IPv4/IPv6 packet with an ICMP port unreachable, run by BPF_PROG_TEST_RUN
(testrun.py). Nothing is attached and no packet leaves: the kernel hands
the program an skb made of our bytes and returns what it made of them."""
import ctypes
import os
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import checksum

from netplane.proxy.ebpf import mode, testrun

BPF_DIR = Path(mode.__file__).parent / "bpf"
TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
CLIENT_MAC, NODE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"

PROGRAM = """
#include "icmp_reply.h"

static __always_inline int answer(struct __sk_buff *skb)
{
    if (skb->protocol == bpf_htons(ETH_P_IP))
        return icmp_unreachable4(skb);
    if (skb->protocol == bpf_htons(ETH_P_IPV6))
        return icmp_unreachable6(skb);
    return TC_ACT_OK;
}

int reply(struct __sk_buff *skb) { return answer(skb); }

int pass(struct __sk_buff *skb) { return TC_ACT_OK; }

/* BPF_PROG_TEST_RUN refuses an IP packet shorter than an IP header (Linux
 * 6.18.y and later): such a packet is made by cutting a longer one to cut[0] bytes */
BPF_ARRAY(cut, u32, 1);

int cut_then_reply(struct __sk_buff *skb)
{
    int zero = 0;
    u32 *len = cut.lookup(&zero);
    if (!len || bpf_skb_change_tail(skb, *len, 0))
        return -1;
    return answer(skb);
}
"""


@pytest.fixture(scope="module")
def prog():
    reason = mode.unavailable()
    if reason:
        pytest.skip(reason)
    import bcc
    headers = mode._bootstrap_headers()
    if headers:
        os.environ.setdefault("BCC_KERNEL_SOURCE", headers)
    b = bcc.BPF(text=PROGRAM.encode(), cflags=[f"-I{BPF_DIR}"])
    try:
        names = ("reply", "pass", "cut_then_reply")
        yield {**{name: b.load_func(name.encode(), bcc.BPF.SCHED_CLS).fd for name in names}, "cut": b[b"cut"]}
    finally:
        b.cleanup()


def eth():
    return Ether(src=CLIENT_MAC, dst=NODE_MAC)


def v4(l4, **ip):
    return eth() / IP(src="192.0.2.7", dst="10.96.0.10", id=4242, flags="DF", ttl=61, **ip) / l4


def v6(l4):
    return eth() / IPv6(src="2001:db8::7", dst="fd00:96::10", hlim=61) / l4


QUOTED_L4 = 20                  # bytes after the IP header (icmp_reply.h's ICMP_REPLY_QUOTED_L4)


def quoted(packet: Ether) -> bytes:
    """What the answer must quote: the IP header (with options) and the first
    20 bytes after it (a TCP header's checksum field included), within the IP length."""
    ip = bytes(packet.payload)
    if packet.type == 0x0800:
        hlen, total = (ip[0] & 0xF) * 4, int.from_bytes(ip[2:4], "big")
    else:
        hlen, total = 40, 40 + int.from_bytes(ip[4:6], "big")
    return ip[:min(hlen + QUOTED_L4, total)]


def answer(prog, packet) -> Ether:
    wire = bytes(packet)
    result = testrun.run(prog["reply"], wire)
    assert result.retval == TC_ACT_REDIRECT
    out = Ether(result.data)
    assert (out.src, out.dst, out.type) == (NODE_MAC, CLIENT_MAC, Ether(wire).type)
    return out


def check_v4(prog, packet):
    out = answer(prog, packet)
    ip = out[IP]
    orig = Ether(bytes(packet))[IP]
    quote = quoted(Ether(bytes(packet)))
    assert (ip.src, ip.dst, ip.ttl, ip.proto, ip.ihl, ip.id, int(ip.flags), ip.frag) == \
        (orig.dst, orig.src, 64, 1, 5, 0, 0, 0)
    assert ip.len == 20 + 8 + len(quote) and len(out) == 14 + ip.len        # nothing trails
    assert checksum(bytes(out)[14:34]) == 0                                 # the header sums to 0: valid
    icmp = bytes(out)[34:]
    assert (ip[ICMP].type, ip[ICMP].code, icmp[4:8]) == (3, 3, bytes(4))
    assert icmp[8:] == quote
    assert checksum(icmp) == 0
    # as the receiving stack sees it: scapy's own checksums agree with ours
    again = IP(bytes(out)[14:])
    ours = (again.chksum, again[ICMP].chksum)
    del again.chksum, again[ICMP].chksum
    rebuilt = IP(bytes(again))
    assert ours == (rebuilt.chksum, rebuilt[ICMP].chksum)
    return out


def check_v6(prog, packet):
    out = answer(prog, packet)
    ip = out[IPv6]
    orig = Ether(bytes(packet))[IPv6]
    quote = quoted(Ether(bytes(packet)))
    assert (ip.src, ip.dst, ip.hlim, ip.nh, ip.tc, ip.fl) == (orig.dst, orig.src, 64, 58, 0, 0)
    assert ip.plen == 8 + len(quote) and len(out) == 14 + 40 + ip.plen
    icmp = bytes(out)[54:]
    assert isinstance(ip.payload, ICMPv6DestUnreach)
    assert (ip[ICMPv6DestUnreach].code, icmp[4:8]) == (4, bytes(4))
    assert icmp[8:] == quote
    again = IPv6(bytes(out)[14:])
    ours = again[ICMPv6DestUnreach].cksum
    del again[ICMPv6DestUnreach].cksum
    assert ours == IPv6(bytes(again))[ICMPv6DestUnreach].cksum              # with the pseudo-header
    return out


def ports_and_seq(quote: bytes, hlen: int) -> tuple[int, int, int]:
    l4 = quote[hlen:]
    return int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big"), int.from_bytes(l4[4:8], "big")


def test_tcp_syn_over_ipv4(prog):
    out = check_v4(prog, v4(TCP(sport=40000, dport=80, flags="S", seq=1234567)))
    assert ports_and_seq(bytes(out[ICMP].payload), 20) == (40000, 80, 1234567)


@pytest.mark.parametrize("options, ihl", [
    ([IPOption_Router_Alert()], 6),
    ([Raw(b"\x07\x27\x04" + bytes(36)), Raw(b"\x00")], 15),      # a record route filling all 40 bytes
], ids=["ihl6", "ihl15"])
def test_tcp_syn_over_ipv4_with_options(prog, options, ihl):
    packet = v4(TCP(sport=40001, dport=443, flags="S"), options=options)
    assert Ether(bytes(packet))[IP].ihl == ihl
    out = check_v4(prog, packet)
    assert ports_and_seq(bytes(out[ICMP].payload), ihl * 4)[:2] == (40001, 443)


def test_udp_over_ipv4_quotes_20_bytes_of_the_payload(prog):
    out = check_v4(prog, v4(UDP(sport=5353, dport=53) / (b"x" * 300)))
    assert len(bytes(out[ICMP].payload)) == 20 + QUOTED_L4


def test_tcp_syn_over_ipv6(prog):
    out = check_v6(prog, v6(TCP(sport=40000, dport=80, flags="S", seq=7)))
    assert ports_and_seq(bytes(out[ICMPv6DestUnreach].payload), 40) == (40000, 80, 7)


def test_udp_over_ipv6(prog):
    out = check_v6(prog, v6(UDP(sport=5353, dport=53) / (b"y" * 1000)))
    assert len(bytes(out[ICMPv6DestUnreach].payload)) == 40 + QUOTED_L4


def test_fewer_than_8_bytes_after_the_header_are_quoted_whole(prog):
    out = check_v4(prog, v4(Raw(b"abc"), proto=253))
    assert bytes(out[ICMP].payload)[20:] == b"abc"
    out = check_v6(prog, v6(Raw(b"abcde")))
    assert bytes(out[ICMPv6DestUnreach].payload)[40:] == b"abcde"


def test_ethernet_padding_is_not_quoted(prog):
    wire = bytes(v4(TCP(sport=1, dport=2, flags="S"))) + b"\xee" * 30       # a 40-byte datagram in a longer frame
    out = check_v4(prog, Ether(wire))
    assert b"\xee" not in bytes(out)


@pytest.mark.parametrize("wire, cut", [
    (bytes(eth() / IP(dst="10.96.0.10") / TCP()), 14 + 10),                  # half an IPv4 header
    (bytes(v4(TCP(), options=[IPOption_Router_Alert()])), 14 + 22),          # the options cut off
    (bytes(eth() / IPv6() / UDP()), 14 + 39),                                # an IPv6 header short by 1
    (bytes(eth() / IP() / UDP()), 14),                                       # Ethernet alone
    (bytes(eth() / IP(ihl=4) / UDP()), None),                                # a header length below 20
    (bytes(eth() / IP(len=10) / UDP()), None),                               # an IP length below the header's
    (bytes(eth() / IP(version=6) / UDP()), None),                            # not the version of its ethertype
], ids=["ipv4", "ipv4-options", "ipv6", "ethernet", "ihl4", "ip-len", "version"])
def test_short_or_malformed_packets_are_dropped(prog, wire, cut):
    if cut is None:
        assert testrun.run(prog["reply"], wire).retval == TC_ACT_SHOT
        return
    prog["cut"][ctypes.c_int(0)] = ctypes.c_uint32(len(wire))            # uncut, the same packet is answered
    assert testrun.run(prog["cut_then_reply"], wire).retval == TC_ACT_REDIRECT
    prog["cut"][ctypes.c_int(0)] = ctypes.c_uint32(cut)
    assert testrun.run(prog["cut_then_reply"], wire).retval == TC_ACT_SHOT


def test_other_protocols_are_left_alone(prog):
    wire = bytes(Ether(src=CLIENT_MAC, dst=NODE_MAC, type=0x0806) / Raw(bytes(28)))
    assert testrun.run(prog["reply"], wire)[:2] == (TC_ACT_OK, wire)


def test_testrun_repeats_and_reports_errors(prog):
    wire = bytes(v4(UDP()))
    result = testrun.run(prog["pass"], wire, repeat=100)
    assert (result.retval, result.data) == (TC_ACT_OK, wire) and result.duration_ns >= 0
    with pytest.raises(OSError) as err:
        testrun.run(prog["reply"], bytes(v4(UDP() / (b"z" * 100))), out_size=16)    # the answer does not fit
    assert err.value.errno == 28                                                     # ENOSPC
    with pytest.raises(OSError):
        testrun.run(-1, wire)
