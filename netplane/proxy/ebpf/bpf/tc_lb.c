/* netplane's packet-level load balancer: tc programs on the node's devices
 * for traffic from other machines (node ports, external and load-balancer
 * IPs, cluster IPs routed to the node), which the socket programs never
 * see. Compiled after sock_lb.c (its maps and structs) and icmp_reply.h.
 *
 * Theory of operation. A flow is translated in four places, each a lookup
 * of `ct` by the packet's own tuple and a direction:
 *
 *   client C:c -> frontend F:f   ingress, CT_IN:        DNAT to backend B:b
 *   C:c -> B:b (SNAT flows)      egress,  CT_OUT:       SNAT to N:n (N the device's address)
 *   B:b -> N:n (SNAT flows)      ingress, CT_REPLY_IN:  back to C:c
 *   B:b -> C:c                   egress,  CT_REPLY_OUT: source back to F:f
 *
 * Between ingress and egress the kernel forwards the packet as it would
 * any other: routing, netfilter, MTU checks (its ICMP errors are translated
 * at egress, so path-MTU discovery works). Rewriting both addresses at
 * ingress would hand the stack a packet whose source is the node's own
 * address, which it drops as martian.
 *
 * 1. A new flow's frontend is looked up in `services`: the external scope
 *    (node ports on a node-port address, external and LB IPs: the endpoints
 *    external traffic may use), then the cluster scope (a cluster IP routed
 *    here). The firewall (loadBalancerSourceRanges) is an LPM trie keyed by
 *    (Service port, source). No endpoint at all: an ICMP port unreachable
 *    at once; endpoints elsewhere only (a Local policy): drop.
 * 2. The backend: ClientIP affinity if fresh, else the Service's Maglev
 *    table (a map of maps, one size class per table size) at the flow's
 *    hash, so every node picks the same backend for a flow; a cluster IP
 *    from outside picks a random slot, as the socket programs do.
 * 3. SNAT only when the backend is on another node and the policy is
 *    Cluster: a local backend's reply comes back through this node anyway,
 *    and Local keeps the client's address by definition. The SNAT port is
 *    taken from NAT_PORT_MIN..NAT_PORT_MAX (outside the kernel's ephemeral
 *    range) by inserting the reply key with BPF_NOEXIST: a port is never
 *    handed to two flows to the same backend. The first try is a hash of
 *    the client's address and port (a reopened flow gets its old port
 *    back), the others NAT_TRIES - 1 random strides away.
 * 4. Entries expire per protocol and TCP state (CT_* timeouts); a flow
 *    whose backend is gone is picked again, and a UDP flow whose Maglev
 *    slot moved follows it, so UDP clients move to a live backend.
 * 5. A non-first IP fragment has no ports: the first fragment's are kept
 *    in `frags` by (source, destination, id), so the fragments of a
 *    translated datagram follow it. Fragments that arrive before the
 *    first are not translated (and so are dropped on the way).
 */
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/pkt_cls.h>

#ifndef CT_MAX
#define CT_MAX 262144
#endif
#ifndef FRAGS_MAX
#define FRAGS_MAX 8192
#endif
#ifndef RANGES_MAX
#define RANGES_MAX 65536
#endif
#ifndef NAT_PORT_MIN
#define NAT_PORT_MIN 61000
#endif
#ifndef NAT_PORT_MAX
#define NAT_PORT_MAX 65535
#endif
#ifndef MAGLEV_SEED
#define MAGLEV_SEED 0
#endif
#ifndef CT_TCP_SYN
#define CT_TCP_SYN 60
#endif
#ifndef CT_TCP
#define CT_TCP 21600
#endif
#ifndef CT_TCP_CLOSE
#define CT_TCP_CLOSE 10
#endif
#ifndef CT_OTHER
#define CT_OTHER 60
#endif
#define NAT_TRIES 32
#define SEC 1000000000ULL

#define SCOPE_EXTERNAL 2      /* in keys: what traffic from other machines may reach */
#define FLAG_LOCAL 2          /* in values: externalTrafficPolicy Local, keep the client's address */
#define FLAG_FIREWALL 4       /* in values: sources checked in `source_ranges` */
#define LUT_SHIFT 8           /* in values, bits 8..15: the Maglev table's size class */
#define BACKEND_LOCAL 1       /* in struct backend's pad: the endpoint runs on this node */

enum { CT_IN = 1, CT_OUT, CT_REPLY_IN, CT_REPLY_OUT };
enum { ST_SYN = 1, ST_ESTABLISHED = 2, ST_CLOSING = 4 };

struct flow {
    __u32 src[4];
    __u32 dst[4];
    __u16 sport;              /* network order */
    __u16 dport;
    __u8 proto;
    __u8 dir;                 /* CT_* */
    __u16 pad;
};

struct ct_entry {
    __u32 client[4];
    __u32 frontend[4];
    __u32 backend[4];
    __u32 nat[4];
    __u16 cport, fport, bport, natport;     /* network order; natport 0: not taken yet */
    __u64 expires;            /* bpf_ktime_get_ns() */
    __u32 backend_id;
    __u32 port_id;
    __u8 proto;
    __u8 state;               /* ST_* */
    __u8 snat;
    __u8 maglev;              /* picked from the Maglev table (a UDP flow follows its slot) */
    __u32 pad;
};

struct frag_key {
    __u32 src[4];
    __u32 dst[4];
    __u32 id;
    __u8 proto;
    __u8 pad[3];
};

struct frag_ports {
    __u16 sport, dport;
};

struct range_key {
    __u32 prefixlen;          /* 32 (the port) + the address bits */
    __u32 id;
    __u32 addr[4];
};

struct ext_affinity_key {
    __u32 client[4];
    __u32 id;
};

struct nat_key {
    __u32 ifindex;
    __u32 family;
};

BPF_TABLE_PINNED("lru_hash", struct flow, struct ct_entry, ct, CT_MAX, PIN "/ct");
BPF_TABLE_PINNED("lru_hash", struct frag_key, struct frag_ports, frags, FRAGS_MAX, PIN "/frags");
BPF_TABLE_PINNED("lru_hash", struct ext_affinity_key, struct affinity_value, ext_affinity, AFFINITY_MAX,
                 PIN "/ext_affinity");
BPF_TABLE_PINNED("lpm_trie", struct range_key, __u8, source_ranges, RANGES_MAX, PIN "/source_ranges",
                 BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct nat_key, struct backend, nat_addresses, 256, PIN "/nat_addresses");

struct lut_digest {
    __u64 digest;             /* of the table's inputs (compile.digest): a full sync skips a table that holds */
    __u32 size_class;
    __u32 pad;
};

BPF_TABLE_PINNED("hash", __u32, struct lut_digest, maglev_digests, TABLES_MAX, PIN "/maglev_digests",
                 BPF_F_NO_PREALLOC);

/* Maglev tables (maglev_<M> and maglev_pick(id, size class, hash)) are
 * declared by the loader from maglev.SIZES, before this file: per size class
 * an outer map, Service port id -> an array map of one element, the whole
 * table (so a table is written in one go, and replaced by swapping the
 * outer entry). bcc cannot expand map calls in a macro, hence the text. */

struct pkt {
    __u32 src[4];
    __u32 dst[4];
    __u16 sport, dport;       /* network order */
    __u8 proto;
    __u8 family;              /* 4 or 6 */
    __u8 ports;               /* the L4 header is here (not a non-first fragment) */
    __u8 frag;                /* part of a fragmented datagram */
    __u8 tcp_flags;
    __u8 icmp_error;          /* an ICMP error: its quoted packet is at inner_off */
    __u16 pad;
    __u32 l4_off;
    __u32 inner_off;
    __u32 frag_id;
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_FRAG6 44

static __always_inline void v4mapped(__u32 *a, __u32 v4)
{
    a[0] = 0;
    a[1] = 0;
    a[2] = bpf_htonl(0xffff);
    a[3] = v4;
}

static __always_inline int same(__u32 *a, __u32 *b)
{
    return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline void copy(__u32 *to, __u32 *from)
{
    to[0] = from[0];
    to[1] = from[1];
    to[2] = from[2];
    to[3] = from[3];
}

/* The ports (and TCP flags, ICMP type) of the L4 header at `off`. */
static __always_inline int parse_l4(struct __sk_buff *skb, struct pkt *p, __u32 off)
{
    __u16 ports[2];
    if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
        if (bpf_skb_load_bytes(skb, off, ports, 4) < 0)
            return -1;
        p->sport = ports[0];
        p->dport = ports[1];
        if (p->proto == IPPROTO_TCP && bpf_skb_load_bytes(skb, off + 13, &p->tcp_flags, 1) < 0)
            return -1;
        return 0;
    }
    __u8 type;
    if (bpf_skb_load_bytes(skb, off, &type, 1) < 0)
        return -1;
    if (p->proto == IPPROTO_ICMP)
        p->icmp_error = type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
    else if (p->proto == IPPROTO_ICMPV6_)
        p->icmp_error = type >= 1 && type <= 4;
    p->inner_off = off + 8;
    return 0;
}

/* An IP header at `off` (IPv4 or IPv6 by `family`); the L4 header offset in
 * *l4. Only a fragment header directly after the fixed IPv6 header is
 * understood: other extension headers leave the packet untranslated. */
static __always_inline int parse_ip(struct __sk_buff *skb, struct pkt *p, __u32 off, int family)
{
    p->family = family;
    if (family == 4) {
        struct iphdr ip;
        if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
            return -1;
        v4mapped(p->src, ip.saddr);
        v4mapped(p->dst, ip.daddr);
        p->proto = ip.protocol;
        p->l4_off = off + ip.ihl * 4;
        __u16 frag = bpf_ntohs(ip.frag_off);
        p->frag = (frag & 0x3fff) != 0;            /* more fragments, or an offset */
        p->ports = (frag & 0x1fff) == 0;
        p->frag_id = ip.id;
        return 0;
    }
    struct ipv6hdr ip6;
    if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
        return -1;
    __builtin_memcpy(p->src, &ip6.saddr, 16);
    __builtin_memcpy(p->dst, &ip6.daddr, 16);
    p->proto = ip6.nexthdr;
    p->l4_off = off + sizeof(ip6);
    p->ports = 1;
    if (p->proto == IPPROTO_FRAG6) {
        struct { __u8 next, reserved; __be16 off; __be32 id; } fh;
        if (bpf_skb_load_bytes(skb, p->l4_off, &fh, sizeof(fh)) < 0)
            return -1;
        p->proto = fh.next;
        p->frag = 1;
        p->ports = (bpf_ntohs(fh.off) & 0xfff8) == 0;
        p->frag_id = fh.id;
        p->l4_off += sizeof(fh);
    }
    return 0;
}

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
    __builtin_memset(p, 0, sizeof(*p));
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        if (parse_ip(skb, p, ETH_HLEN, 4) < 0)
            return -1;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        if (parse_ip(skb, p, ETH_HLEN, 6) < 0)
            return -1;
    } else {
        return -1;
    }
    if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP && p->proto != IPPROTO_ICMP &&
        p->proto != IPPROTO_ICMPV6_)
        return -1;
    if (p->ports)
        return parse_l4(skb, p, p->l4_off);
    return 0;
}

/* A non-first fragment takes the ports its datagram's first fragment had;
 * the first fragment leaves them for the rest. 0 if the packet has ports now. */
static __always_inline int fragment_ports(struct pkt *p)
{
    if (!p->frag)
        return 0;
    struct frag_key key = {.id = p->frag_id, .proto = p->proto};
    copy(key.src, p->src);
    copy(key.dst, p->dst);
    if (p->ports) {
        struct frag_ports ports = {.sport = p->sport, .dport = p->dport};
        frags.update(&key, &ports);
        return 0;
    }
    struct frag_ports *seen = frags.lookup(&key);
    if (!seen)
        return -1;
    p->sport = seen->sport;
    p->dport = seen->dport;
    return 0;
}

static __always_inline void key_of(struct flow *k, __u32 *src, __u32 *dst, __u16 sport, __u16 dport,
                                   __u8 proto, __u8 dir)
{
    __builtin_memset(k, 0, sizeof(*k));
    copy(k->src, src);
    copy(k->dst, dst);
    k->sport = sport;
    k->dport = dport;
    k->proto = proto;
    k->dir = dir;
}

/* ---- rewriting, with every checksum kept right ------------------------- */

static __always_inline __u32 l4_csum_off(struct pkt *p)
{
    if (p->proto == IPPROTO_TCP)
        return p->l4_off + 16;
    if (p->proto == IPPROTO_UDP)
        return p->l4_off + 6;
    return p->l4_off + 2;     /* ICMP, ICMPv6 */
}

static __always_inline __u64 l4_pseudo_flags(struct pkt *p)
{
    __u64 flags = BPF_F_PSEUDO_HDR;
    if (p->proto == IPPROTO_UDP)
        flags |= BPF_F_MARK_MANGLED_0;     /* an IPv4 UDP checksum of 0 means none */
    return flags;
}

/* Replace the 16-byte address at `off` (an IPv4 one is its last 4 bytes),
 * fixing the IPv4 header checksum at `ip_csum` (0: none to fix) and the
 * checksum at `csum` (0: none), which covers the address through the
 * pseudo-header when `pseudo`. */
static __always_inline int put_addr(struct __sk_buff *skb, int family, __u32 off, __u32 ip_csum, __u32 csum,
                                    __u64 csum_flags, __u32 *old, __u32 *new)
{
    if (family == 4) {
        if (ip_csum && bpf_l3_csum_replace(skb, ip_csum, old[3], new[3], 4) < 0)
            return -1;
        if (csum && bpf_l4_csum_replace(skb, csum, old[3], new[3], csum_flags | 4) < 0)
            return -1;
        return bpf_skb_store_bytes(skb, off, &new[3], 4, 0);
    }
    if (csum) {
        __u32 from[4], to[4];
        copy(from, old);
        copy(to, new);
        __s64 diff = bpf_csum_diff(from, 16, to, 16, 0);
        if (bpf_l4_csum_replace(skb, csum, 0, diff, csum_flags) < 0)
            return -1;
    }
    return bpf_skb_store_bytes(skb, off, new, 16, 0);
}

static __always_inline int put_port(struct __sk_buff *skb, __u32 off, __u32 csum, __u64 csum_flags, __u16 old,
                                    __u16 new)
{
    if (old == new)
        return 0;
    if (csum && bpf_l4_csum_replace(skb, csum, old, new, (csum_flags & BPF_F_MARK_MANGLED_0) | 2) < 0)
        return -1;
    return bpf_skb_store_bytes(skb, off, &new, 2, 0);
}

static __always_inline __u32 addr_off(struct pkt *p, int dst)
{
    if (p->family == 4)
        return ETH_HLEN + (dst ? 16 : 12);
    return ETH_HLEN + (dst ? 24 : 8);
}

/* Rewrite the packet's source (dst = 0) or destination to addr:port. */
static __always_inline int rewrite(struct __sk_buff *skb, struct pkt *p, int dst, __u32 *addr, __u16 port)
{
    __u32 csum = p->ports && (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) ? l4_csum_off(p) : 0;
    __u64 flags = l4_pseudo_flags(p);
    __u32 *old = dst ? p->dst : p->src;
    if (!same(old, addr)) {
        if (put_addr(skb, p->family, addr_off(p, dst), p->family == 4 ? ETH_HLEN + 10 : 0, csum, flags, old, addr) < 0)
            return -1;
        copy(old, addr);
    }
    if (!p->ports)
        return 0;
    __u16 *oldport = dst ? &p->dport : &p->sport;
    if (put_port(skb, p->l4_off + (dst ? 2 : 0), csum, flags, *oldport, port) < 0)
        return -1;
    *oldport = port;
    return 0;
}

/* ---- connection tracking ------------------------------------------------ */

static __always_inline __u64 lifetime(__u8 proto, __u8 state)
{
    if (proto != IPPROTO_TCP)
        return CT_OTHER * SEC;
    if (state & ST_CLOSING)
        return CT_TCP_CLOSE * SEC;
    return state & ST_ESTABLISHED ? CT_TCP * SEC : CT_TCP_SYN * SEC;
}

/* A packet of the flow went by: its entry lives on, by the TCP state the packet shows. */
static __always_inline void seen(struct ct_entry *e, struct pkt *p, int from_client)
{
    if (p->proto == IPPROTO_TCP) {
        if (p->tcp_flags & (TCP_FIN | TCP_RST))
            e->state |= ST_CLOSING;
        else if (from_client && (p->tcp_flags & TCP_ACK))
            e->state |= ST_ESTABLISHED;
    }
    e->expires = bpf_ktime_get_ns() + lifetime(p->proto, e->state);
}

/* A FIN or RST seen on a reply also closes the client's entry (the one new connections check). */
static __always_inline void closing(struct ct_entry *e, struct pkt *p)
{
    if (p->proto != IPPROTO_TCP || !(p->tcp_flags & (TCP_FIN | TCP_RST)))
        return;
    struct flow k;
    key_of(&k, e->client, e->frontend, e->cport, e->fport, e->proto, CT_IN);
    struct ct_entry *in = ct.lookup(&k);
    if (in) {
        in->state |= ST_CLOSING;
        in->expires = bpf_ktime_get_ns() + CT_TCP_CLOSE * SEC;
    }
}

static __always_inline int alive(struct ct_entry *e)
{
    return e->expires > bpf_ktime_get_ns();
}

/* ---- choosing a backend -------------------------------------------------- */

static __always_inline __u32 mix(__u32 h, __u32 k)
{
    k *= 0xcc9e2d51;
    k = (k << 15) | (k >> 17);
    k *= 0x1b873593;
    h ^= k;
    h = (h << 13) | (h >> 19);
    return h * 5 + 0xe6546b64;
}

/* The flow's hash: every node computes the same for a flow, so with the
 * same table it picks the same backend. A node port's address differs per
 * node, so it is left out. */
static __always_inline __u32 flow_hash(struct pkt *p, int nodeport)
{
    __u32 h = (__u32)MAGLEV_SEED;
    for (int i = 0; i < 4; i++)
        h = mix(h, p->src[i]);
    if (!nodeport)
        for (int i = 0; i < 4; i++)
            h = mix(h, p->dst[i]);
    h = mix(h, ((__u32)p->sport << 16) | p->dport);
    h = mix(h, p->proto);
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    return h ^ (h >> 16);
}

struct frontend {
    struct svc_key key;
    struct svc_value *svc;
    int external;
    int nodeport;
};

/* The Service the packet is addressed to, as traffic from another machine sees it. */
static __always_inline int find_frontend(struct pkt *p, struct frontend *f)
{
    struct svc_key *key = &f->key;
    __builtin_memset(key, 0, sizeof(*key));
    copy(key->addr, p->dst);
    key->port = p->dport;
    key->proto = p->proto;
    key->scope = SCOPE_EXTERNAL;
    f->external = 1;
    f->nodeport = 0;
    f->svc = services.lookup(key);
    if (f->svc)
        return 1;
    key->scope = 0;
    f->external = 0;
    f->svc = services.lookup(key);          /* a cluster IP, routed to this node */
    if (f->svc)
        return 1;
    struct svc_key where = {};
    copy(where.addr, p->dst);
    if (!nodeports.lookup(&where))
        return 0;
    if (p->family == 4)
        key->addr[3] = 0;
    else
        __builtin_memset(key->addr, 0, sizeof(key->addr));
    key->scope = SCOPE_EXTERNAL | FLAG_NODEPORT;
    f->external = 1;
    f->nodeport = 1;
    f->svc = services.lookup(key);
    return f->svc != 0;
}

static __always_inline int allowed(struct pkt *p, struct svc_value *svc)
{
    if (!(svc->flags & FLAG_FIREWALL))
        return 1;
    struct range_key key = {.prefixlen = 32 + 128, .id = svc->id};
    copy(key.addr, p->src);
    return source_ranges.lookup(&key) != 0;
}

/* The backend id for a new flow: affinity, the Maglev table, or a random slot. */
static __always_inline __u32 choose(struct pkt *p, struct frontend *f, int *maglev)
{
    struct svc_value *svc = f->svc;
    *maglev = 0;
    if (svc->affinity) {
        struct ext_affinity_key akey = {.id = svc->id};
        copy(akey.client, p->src);
        struct affinity_value *last = ext_affinity.lookup(&akey);
        if (last && bpf_ktime_get_ns() - last->used < (__u64)svc->affinity * SEC)
            return last->backend;
    }
    if (f->external) {
        *maglev = 1;
        return maglev_pick(svc->id, (svc->flags >> LUT_SHIFT) & 0xff, flow_hash(p, f->nodeport));
    }
    struct svc_key key = f->key;
    key.slot = bpf_get_prandom_u32() % svc->count + 1;
    struct svc_value *slot = services.lookup(&key);
    return slot ? slot->count : 0;
}

static __always_inline void remember_affinity(struct pkt *p, struct svc_value *svc, __u32 backend_id)
{
    if (!svc->affinity)
        return;
    struct ext_affinity_key akey = {.id = svc->id};
    copy(akey.client, p->src);
    struct affinity_value used = {.used = bpf_ktime_get_ns(), .backend = backend_id};
    ext_affinity.update(&akey, &used);
}

/* Is the flow's backend still the one its id names (ids are reused once freed)? */
static __always_inline int backend_holds(struct ct_entry *e)
{
    struct backend *be = backends.lookup(&e->backend_id);
    return be && same(be->addr, e->backend) && be->port == e->bport;
}

/* A flow the client opens (again): not for a TCP SYN on a closing entry, nor a
 * gone backend, nor (UDP) a Maglev slot that now names another backend. */
static __always_inline int still_valid(struct ct_entry *e, struct pkt *p, struct frontend *f, int have_frontend)
{
    if (!alive(e) || !backend_holds(e))
        return 0;
    if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN && (e->state & ST_CLOSING))
        return 0;
    if (p->proto == IPPROTO_UDP && e->maglev && have_frontend && f->svc && !f->svc->affinity) {
        int maglev;
        if (choose(p, f, &maglev) != e->backend_id)
            return 0;
    }
    return 1;
}

static __always_inline int new_flow(struct __sk_buff *skb, struct pkt *p, struct frontend *f)
{
    struct svc_value *svc = f->svc;
    if (!allowed(p, svc))
        return TC_ACT_SHOT;
    if (svc->count == 0) {
        if ((svc->flags & FLAG_DROP) || !p->ports)
            return TC_ACT_SHOT;
        return p->family == 4 ? icmp_unreachable4(skb) : icmp_unreachable6(skb);
    }
    int maglev;
    __u32 id = choose(p, f, &maglev);
    struct backend *be = backends.lookup(&id);
    if (!be)
        return TC_ACT_OK;             /* a table being rewritten: leave the packet alone */
    remember_affinity(p, svc, id);

    struct ct_entry e = {.cport = p->sport, .fport = p->dport, .bport = be->port, .backend_id = id,
                         .port_id = svc->id, .proto = p->proto, .maglev = maglev};
    copy(e.client, p->src);
    copy(e.frontend, p->dst);
    copy(e.backend, be->addr);
    e.snat = !(svc->flags & FLAG_LOCAL) && !(be->pad & BACKEND_LOCAL);
    e.state = p->proto == IPPROTO_TCP ? ST_SYN : 0;
    e.expires = bpf_ktime_get_ns() + lifetime(p->proto, e.state);

    struct flow k;
    key_of(&k, e.client, e.frontend, e.cport, e.fport, e.proto, CT_IN);
    ct.update(&k, &e);
    key_of(&k, e.backend, e.client, e.bport, e.cport, e.proto, CT_REPLY_OUT);
    ct.update(&k, &e);
    if (e.snat) {
        key_of(&k, e.client, e.backend, e.cport, e.bport, e.proto, CT_OUT);
        ct.update(&k, &e);
    }
    return rewrite(skb, p, 1, e.backend, e.bport) < 0 ? TC_ACT_SHOT : TC_ACT_OK;
}

/* ---- SNAT port allocation ------------------------------------------------ */

/* The flow's first candidate port: a hash of the client's address and port,
 * so that a client's retries land on the same port (nat.py has its twin). */
static __always_inline __u32 nat_start(struct ct_entry *e)
{
    __u32 h = 0;
    for (int i = 0; i < 4; i++)
        h = mix(h, e->client[i]);
    return mix(h, e->cport);
}

/* The entry is this client's earlier flow through the same frontend (the
 * same tuple, opened again after a close): its port is the flow's again,
 * as conntrack would keep it, instead of one more port per reuse. */
static __always_inline int predecessor(struct ct_entry *held, struct ct_entry *e)
{
    return same(held->client, e->client) && held->cport == e->cport && same(held->frontend, e->frontend) &&
           held->fport == e->fport;
}

/* Take a free port on `nat` for the flow: the reply key inserted only if
 * absent (or expired, or the flow's own predecessor's), so two live flows
 * to one backend never share a port. */
static __always_inline int take_port(struct ct_entry *e, __u32 *nat)
{
    struct flow r;
    __u32 start = nat_start(e), range = NAT_PORT_MAX - NAT_PORT_MIN + 1;
    copy(e->nat, nat);
    /* the client's own start first (where its earlier flow's port is), then
     * strides of a random size: consecutive ports would pile up behind busy runs */
    __u32 stride = bpf_get_prandom_u32() | 1;
    for (int i = 0; i < NAT_TRIES; i++) {
        __u16 port = bpf_htons(NAT_PORT_MIN + (start + i * stride) % range);
        e->natport = port;
        key_of(&r, e->backend, nat, e->bport, port, e->proto, CT_REPLY_IN);
        if (ct.insert(&r, e) == 0)
            return 0;
        struct ct_entry *held = ct.lookup(&r);
        if (held && (!alive(held) || predecessor(held, e))) {
            ct.update(&r, e);
            return 0;
        }
    }
    e->natport = 0;
    return -1;
}

static __always_inline __u32 *nat_address(struct __sk_buff *skb, int family)
{
    struct nat_key key = {.ifindex = skb->ifindex, .family = family};
    struct backend *addr = nat_addresses.lookup(&key);
    return addr ? addr->addr : 0;
}

/* ---- ICMP errors of translated flows ------------------------------------- */

/* Translate an ICMP error about one of our flows: its outer address (which)
 * and the quoted packet's (source or destination, as `inner_dst`). */
static __always_inline int icmp_rewrite(struct __sk_buff *skb, struct pkt *p, struct pkt *in, int outer_dst,
                                        __u32 *outer_addr, int inner_dst, __u32 *addr, __u16 port)
{
    __u32 icmp_csum = p->l4_off + 2;
    __u64 outer_flags = p->family == 6 ? BPF_F_PSEUDO_HDR : 0;   /* ICMPv4 has no pseudo-header */
    __u32 *old = outer_dst ? p->dst : p->src;
    if (outer_addr && !same(old, outer_addr)) {
        if (put_addr(skb, p->family, addr_off(p, outer_dst), p->family == 4 ? ETH_HLEN + 10 : 0,
                     p->family == 6 ? icmp_csum : 0, outer_flags, old, outer_addr) < 0)
            return TC_ACT_SHOT;
    }
    /* The quoted header: for IPv4 its own checksum moves with its address, so
     * the ICMP checksum sees no change; ICMPv6 sums the address itself. */
    __u32 ip_off = p->inner_off;
    __u32 off = p->family == 4 ? ip_off + (inner_dst ? 16 : 12) : ip_off + (inner_dst ? 24 : 8);
    __u32 *was = inner_dst ? in->dst : in->src;
    if (!same(was, addr)) {
        if (put_addr(skb, p->family, off, p->family == 4 ? ip_off + 10 : 0, p->family == 6 ? icmp_csum : 0, 0,
                     was, addr) < 0)
            return TC_ACT_SHOT;
    }
    __u16 oldport = inner_dst ? in->dport : in->sport;
    if (put_port(skb, in->l4_off + (inner_dst ? 2 : 0), icmp_csum, 0, oldport, port) < 0)
        return TC_ACT_SHOT;
    return TC_ACT_OK;
}

/* The quoted packet's tuple (it went the other way). */
static __always_inline int parse_inner(struct __sk_buff *skb, struct pkt *p, struct pkt *in)
{
    __builtin_memset(in, 0, sizeof(*in));
    if (parse_ip(skb, in, p->inner_off, p->family) < 0 || !in->ports)
        return -1;
    if (in->proto != IPPROTO_TCP && in->proto != IPPROTO_UDP)
        return -1;
    return parse_l4(skb, in, in->l4_off);
}

static __always_inline int icmp_error(struct __sk_buff *skb, struct pkt *p, int ingress)
{
    struct pkt in;
    if (parse_inner(skb, p, &in) < 0)
        return TC_ACT_OK;
    struct flow k;
    struct ct_entry *e;
    if (ingress) {
        /* about a packet we sent to a backend from nat:natport */
        key_of(&k, in.dst, in.src, in.dport, in.sport, in.proto, CT_REPLY_IN);
        e = ct.lookup(&k);
        if (e)
            return icmp_rewrite(skb, p, &in, 1, e->client, 0, e->client, e->cport);
        /* about a reply we sent the client from the frontend */
        key_of(&k, in.dst, in.src, in.dport, in.sport, in.proto, CT_IN);
        e = ct.lookup(&k);
        if (e)
            return icmp_rewrite(skb, p, &in, 1, e->backend, 0, e->backend, e->bport);
        return TC_ACT_OK;
    }
    /* about the client's packet to the backend (e.g. the node's "fragmentation needed") */
    key_of(&k, in.dst, in.src, in.dport, in.sport, in.proto, CT_REPLY_OUT);
    e = ct.lookup(&k);
    if (e)
        return icmp_rewrite(skb, p, &in, 0, same(p->src, e->backend) ? e->frontend : 0, 1, e->frontend, e->fport);
    /* about the backend's reply, on its way back to the backend through SNAT */
    key_of(&k, in.dst, in.src, in.dport, in.sport, in.proto, CT_OUT);
    e = ct.lookup(&k);
    if (e && e->natport)
        return icmp_rewrite(skb, p, &in, 0, same(p->src, e->client) ? e->nat : 0, 1, e->nat, e->natport);
    return TC_ACT_OK;
}

/* ---- the programs ---------------------------------------------------------- */

int tc_ingress(struct __sk_buff *skb)
{
    struct pkt p;
    if (parse(skb, &p) < 0)
        return TC_ACT_OK;
    if (p.icmp_error)
        return icmp_error(skb, &p, 1);
    if (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP)
        return TC_ACT_OK;
    if (fragment_ports(&p) < 0)
        return TC_ACT_OK;
    struct flow k;
    key_of(&k, p.src, p.dst, p.sport, p.dport, p.proto, CT_REPLY_IN);
    struct ct_entry *e = ct.lookup(&k);
    if (e) {                              /* a backend's reply to our SNAT address */
        seen(e, &p, 0);
        closing(e, &p);
        return rewrite(skb, &p, 1, e->client, e->cport) < 0 ? TC_ACT_SHOT : TC_ACT_OK;
    }
    k.dir = CT_IN;
    e = ct.lookup(&k);
    struct frontend f = {};
    int have = 0;
    if (e && e->maglev && p.proto == IPPROTO_UDP)
        have = find_frontend(&p, &f);
    if (e && still_valid(e, &p, &f, have)) {
        seen(e, &p, 1);
        return rewrite(skb, &p, 1, e->backend, e->bport) < 0 ? TC_ACT_SHOT : TC_ACT_OK;
    }
    if (!p.ports)                         /* a non-first fragment of an untracked datagram */
        return TC_ACT_OK;
    if (!have && !find_frontend(&p, &f))
        return TC_ACT_OK;
    return new_flow(skb, &p, &f);
}

int tc_egress(struct __sk_buff *skb)
{
    struct pkt p;
    if (parse(skb, &p) < 0)
        return TC_ACT_OK;
    if (p.icmp_error)
        return icmp_error(skb, &p, 0);
    if (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP)
        return TC_ACT_OK;
    if (fragment_ports(&p) < 0)
        return TC_ACT_OK;
    struct flow k;
    key_of(&k, p.src, p.dst, p.sport, p.dport, p.proto, CT_REPLY_OUT);
    struct ct_entry *e = ct.lookup(&k);
    if (e) {                              /* a backend's reply: from the frontend, as the client expects */
        seen(e, &p, 0);
        closing(e, &p);
        return rewrite(skb, &p, 0, e->frontend, e->fport) < 0 ? TC_ACT_SHOT : TC_ACT_OK;
    }
    k.dir = CT_OUT;
    e = ct.lookup(&k);
    if (!e)
        return TC_ACT_OK;
    if (!e->natport || !alive(e)) {       /* the flow's first packet out: take a port */
        __u32 *nat = nat_address(skb, p.family);
        if (!nat || take_port(e, nat) < 0)
            return TC_ACT_SHOT;
    }
    seen(e, &p, 1);
    /* the port stays taken while the client sends, replies or not */
    key_of(&k, e->backend, e->nat, e->bport, e->natport, e->proto, CT_REPLY_IN);
    struct ct_entry *reply = ct.lookup(&k);
    if (reply)
        reply->expires = e->expires;
    return rewrite(skb, &p, 0, e->nat, e->natport) < 0 ? TC_ACT_SHOT : TC_ACT_OK;
}
