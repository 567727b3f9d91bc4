/* netplane's "no endpoints" answer for tc (SCHED_CLS) programs: turn the
 * packet in the skb into the ICMP destination unreachable (port
 * unreachable) a router would send back for it, and send that out the
 * device the packet came in on. A TCP client sees ECONNREFUSED at once, a
 * connected UDP one on its next call, as with kube-proxy's REJECT.
 *
 * Theory of operation.
 * 1. The original headers are read with bpf_skb_load_bytes (the skb may
 *    be non-linear) and checked: a full Ethernet and IP header (IPv4 with
 *    its options, ihl*4 bytes) or the packet is dropped.
 * 2. The quote is the original IP header plus the first 20 bytes after it
 *    (RFC 792 asks for 8, enough for the ports; RFC 1812 and 4443 allow
 *    more). 20 keep a TCP header's checksum field: a packet from a veth
 *    may still be CHECKSUM_PARTIAL, and the kernel refuses to trim it
 *    before the field its checksum goes into. A packet
 *    with fewer than that after its header is quoted whole. Bytes past
 *    the IP length (Ethernet padding) are never quoted.
 * 3. The quote is copied to the stack, zero-padded to a multiple of 4
 *    (bpf_csum_diff's unit; zeros add nothing to a one's complement sum),
 *    and summed there with the new ICMP header (and for ICMPv6, the
 *    pseudo-header), so the checksums are known before the skb changes.
 * 4. The skb is trimmed to Ethernet + quote (bpf_skb_change_tail), then
 *    room for the new IP and ICMP headers is opened right after Ethernet
 *    (bpf_skb_adjust_room, BPF_ADJ_ROOM_MAC): the quote is already in
 *    place, nothing is copied back.
 * 5. Ethernet (MACs swapped), the new IP header and ICMP header are
 *    written in one store, and the skb is redirected out its own device.
 *
 * Any failure drops the packet (TC_ACT_SHOT): the client then retries, as
 * if the packet was lost. The caller only passes unicast TCP/UDP/SCTP
 * packets to a Service (never an ICMP error, a broadcast or a later
 * fragment, which RFC 1122 forbids answering), on a device with Ethernet
 * framing. A packet whose L4 checksum the host still has to compute
 * (CHECKSUM_PARTIAL: sent by this host, not received) cannot be trimmed
 * below that checksum and is dropped too.
 */
#ifndef NETPLANE_ICMP_REPLY_H
#define NETPLANE_ICMP_REPLY_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

#define ICMP_REPLY_TTL 64
#define ICMP_REPLY_QUOTED_L4 20         /* bytes of the original datagram after its IP header */
#define ICMP4_QUOTE_MAX (60 + ICMP_REPLY_QUOTED_L4)
#define ICMP6_QUOTE_MAX (40 + ICMP_REPLY_QUOTED_L4)

/* ICMP and ICMPv6 errors share this layout: type, code, checksum, 4 unused bytes */
struct icmp_reply_err {
    __u8 type;
    __u8 code;
    __u16 checksum;
    __u32 unused;
};

/* everything before the quote, written in one bpf_skb_store_bytes */
struct icmp_reply4 {
    struct ethhdr eth;
    struct iphdr ip;
    struct icmp_reply_err icmp;
} __attribute__((packed));

struct icmp_reply6 {
    struct ethhdr eth;
    struct ipv6hdr ip;
    struct icmp_reply_err icmp;
} __attribute__((packed));

/* RFC 4443 2.3: what ICMPv6's checksum covers besides the message */
struct icmp_reply6_pseudo {
    struct in6_addr saddr;
    struct in6_addr daddr;
    __u32 len;                          /* network order */
    __u8 zero[3];
    __u8 nexthdr;
};

/* bpf_csum_diff's result (a 32-bit partial sum, already folded to 16 bits
 * by newer kernels) folded and complemented: the checksum, in network order */
static __always_inline __u16 icmp_reply_fold(__u32 s)
{
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__u16)~s;
}

/* Trim the skb to Ethernet + the quote, open `room` bytes after Ethernet
 * and write the new headers there: the quote is left where it was. */
static __always_inline int icmp_reply_rebuild(struct __sk_buff *skb, __u32 quote, __s32 room,
                                              void *headers, __u32 size)
{
    if (bpf_skb_change_tail(skb, ETH_HLEN + quote, 0))
        return TC_ACT_SHOT;
    if (bpf_skb_adjust_room(skb, room, BPF_ADJ_ROOM_MAC, 0))
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, 0, headers, size, 0))
        return TC_ACT_SHOT;
    return bpf_redirect(skb->ifindex, 0);
}

/* Copy `quote` bytes from after Ethernet to `buf` (zeroed) and add their
 * sum, padded to a multiple of 4, to *sum; 0 on failure. The bounds are
 * checked one at a time behind compiler barriers: clang would otherwise
 * merge them into one test on a copy, which the verifier cannot use. */
#define ICMP_REPLY_SUM_QUOTE(skb, buf, quote, min, sum) ({                              \
    __u64 _q = (quote);                                                                 \
    int _ok = 0;                                                                        \
    asm volatile("" : "+r"(_q));                                                        \
    if (_q <= sizeof(buf) - 4) {                                                        \
        asm volatile("" : "+r"(_q));                                                    \
        if (_q >= (min) && !bpf_skb_load_bytes(skb, ETH_HLEN, buf, _q)) {               \
            __u64 _padded = (_q + 3) & ~3ULL;                                           \
            asm volatile("" : "+r"(_padded));                                           \
            if (_padded <= sizeof(buf)) {                                               \
                *(sum) = bpf_csum_diff(0, 0, (void *)buf, _padded, *(sum));             \
                _ok = 1;                                                                \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    _ok;                                                                                \
})

static __always_inline int icmp_unreachable4(struct __sk_buff *skb)
{
    struct ethhdr eth;
    struct iphdr ip;
    if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) || bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
        return TC_ACT_SHOT;
    __u32 hlen = ip.ihl * 4, total = bpf_ntohs(ip.tot_len), len = skb->len;
    if (ip.version != 4 || hlen < sizeof(ip) || total < hlen || len < ETH_HLEN + hlen)
        return TC_ACT_SHOT;
    /* the L4 bytes there are: up to the IP length (not Ethernet padding), at most ICMP_REPLY_QUOTED_L4 */
    __u32 after = len - ETH_HLEN - hlen;
    if (after > total - hlen)
        after = total - hlen;
    if (after > ICMP_REPLY_QUOTED_L4)
        after = ICMP_REPLY_QUOTED_L4;
    __u32 quote = hlen + after;

    struct icmp_reply4 r = {};
    __builtin_memcpy(r.eth.h_dest, eth.h_source, ETH_ALEN);
    __builtin_memcpy(r.eth.h_source, eth.h_dest, ETH_ALEN);
    r.eth.h_proto = eth.h_proto;
    r.ip.version = 4;
    r.ip.ihl = 5;
    r.ip.tot_len = bpf_htons(sizeof(r.ip) + sizeof(r.icmp) + quote);
    r.ip.ttl = ICMP_REPLY_TTL;                  /* id 0, DF clear: as the kernel's own ICMP errors */
    r.ip.protocol = IPPROTO_ICMP;
    r.ip.saddr = ip.daddr;
    r.ip.daddr = ip.saddr;
    r.ip.check = icmp_reply_fold(bpf_csum_diff(0, 0, (void *)&r.ip, sizeof(r.ip), 0));

    r.icmp.type = 3;                            /* ICMP_DEST_UNREACH */
    r.icmp.code = 3;                            /* ICMP_PORT_UNREACH */
    __u8 buf[ICMP4_QUOTE_MAX + 4] = {};         /* + 4: the padding */
    __u32 sum = bpf_csum_diff(0, 0, (void *)&r.icmp, sizeof(r.icmp), 0);
    if (!ICMP_REPLY_SUM_QUOTE(skb, buf, quote, sizeof(struct iphdr), &sum))
        return TC_ACT_SHOT;
    r.icmp.checksum = icmp_reply_fold(sum);
    return icmp_reply_rebuild(skb, quote, sizeof(r.ip) + sizeof(r.icmp), &r, sizeof(r));
}

static __always_inline int icmp_unreachable6(struct __sk_buff *skb)
{
    struct ethhdr eth;
    struct ipv6hdr ip;
    if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) || bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
        return TC_ACT_SHOT;
    __u32 payload = bpf_ntohs(ip.payload_len), len = skb->len;
    if (ip.version != 6 || len < ETH_HLEN + sizeof(ip))
        return TC_ACT_SHOT;
    /* whatever follows the fixed header (L4 or an extension header), up to ICMP_REPLY_QUOTED_L4 bytes */
    __u32 after = len - ETH_HLEN - sizeof(ip);
    if (after > payload)
        after = payload;
    if (after > ICMP_REPLY_QUOTED_L4)
        after = ICMP_REPLY_QUOTED_L4;
    __u32 quote = sizeof(ip) + after;

    struct icmp_reply6 r = {};
    __builtin_memcpy(r.eth.h_dest, eth.h_source, ETH_ALEN);
    __builtin_memcpy(r.eth.h_source, eth.h_dest, ETH_ALEN);
    r.eth.h_proto = eth.h_proto;
    r.ip.version = 6;
    r.ip.payload_len = bpf_htons(sizeof(r.icmp) + quote);
    r.ip.nexthdr = IPPROTO_ICMPV6;
    r.ip.hop_limit = ICMP_REPLY_TTL;
    r.ip.saddr = ip.daddr;
    r.ip.daddr = ip.saddr;

    r.icmp.type = 1;                            /* ICMPV6_DEST_UNREACH */
    r.icmp.code = 4;                            /* ICMPV6_PORT_UNREACH */
    struct icmp_reply6_pseudo pseudo = {.saddr = ip.daddr, .daddr = ip.saddr,
                                        .len = bpf_htonl(sizeof(r.icmp) + quote), .nexthdr = IPPROTO_ICMPV6};
    __u8 buf[ICMP6_QUOTE_MAX + 4] = {};
    __u32 sum = bpf_csum_diff(0, 0, (void *)&pseudo, sizeof(pseudo), 0);
    sum = bpf_csum_diff(0, 0, (void *)&r.icmp, sizeof(r.icmp), sum);
    if (!ICMP_REPLY_SUM_QUOTE(skb, buf, quote, sizeof(struct ipv6hdr), &sum))
        return TC_ACT_SHOT;
    r.icmp.checksum = icmp_reply_fold(sum);
    return icmp_reply_rebuild(skb, quote, sizeof(r.ip) + sizeof(r.icmp), &r, sizeof(r));
}

#endif
