/* netplane's socket-level load balancer: cgroup sock_addr programs that
 * translate a Service address once, when a socket connects (or sends an
 * unconnected datagram), so no packet is ever NATed.
 *
 * Theory of operation.
 * 1. connect4/6 and sendmsg4/6 look the destination up in `services`,
 *    keyed by (address, port, protocol, slot). Slot 0 is the Service's
 *    master entry: how many backends it has, its flags and its affinity
 *    timeout; slots 1..count name one backend each (by id, in `backends`).
 *    One entry per slot, as Cilium does: a Service's size is not bounded
 *    by a value's size (only by the map's: SERVICES_MAX entries in all), and one backend change is
 *    one entry written.
 * 2. A destination that is one of the node-port addresses (`nodeports`,
 *    loopback included) is looked up again with the address zeroed (but
 *    for IPv4's ::ffff: prefix) and the node-port flag: node ports answer
 *    on every such address, localhost too (no route_localnet needed:
 *    nothing is routed).
 * 3. count == 0 means "no endpoint anywhere": the call fails at once with
 *    ECONNREFUSED (bpf_set_retval, kernel >= 5.18); the DROP flag (a Local
 *    policy with no endpoint here) fails it with EPERM.
 * 4. The backend is picked at random, or, with ClientIP affinity, the one
 *    this client (its network namespace: a pod, or the node) used last,
 *    if within the timeout.
 * 5. The original address is remembered per socket cookie in `revnat`
 *    (LRU), so recvmsg4/6 and getpeername4/6 show the Service address to
 *    the application, as if it had talked to the Service.
 *
 * Every map is pinned, so a restarted proxy finds them (and the programs)
 * again, and traffic never stops meanwhile.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/in.h>
#include <uapi/linux/errno.h>

#ifndef SERVICES_MAX
#define SERVICES_MAX 65536
#endif
#ifndef BACKENDS_MAX
#define BACKENDS_MAX 65536
#endif
#ifndef AFFINITY_MAX
#define AFFINITY_MAX 65536
#endif
#ifndef REVNAT_MAX
#define REVNAT_MAX 262144
#endif
#ifndef PIN
#define PIN "/sys/fs/bpf/netplane"
#endif

#define FLAG_NODEPORT 1       /* in keys: the address is zero, any node-port address matches */
#define FLAG_DROP 1           /* in values: refuse with EPERM (endpoints exist, none here) */

struct svc_key {
    __u32 addr[4];            /* IPv4 as ::ffff:a.b.c.d */
    __u16 port;               /* network order */
    __u8 proto;
    __u8 scope;               /* FLAG_NODEPORT or 0 */
    __u32 slot;               /* 0: the master entry */
};

struct svc_value {
    __u32 count;              /* master: backends in slots 1..count; slot: its backend id */
    __u32 flags;
    __u32 affinity;           /* master: ClientIP affinity timeout in seconds, 0 = none */
    __u32 id;                 /* master: the Service port's id (affinity key) */
};

struct backend {
    __u32 addr[4];
    __u16 port;               /* network order */
    __u16 pad;
};

struct affinity_key {
    __u64 client;             /* the client's network namespace cookie */
    __u32 id;                 /* the Service port */
    __u32 pad;
};

struct affinity_value {
    __u64 used;               /* bpf_ktime_get_ns() of the last connect */
    __u32 backend;
    __u32 pad;
};

struct revnat_value {
    __u32 addr[4];            /* what the application dialled */
    __u16 port;
    __u16 pad;
    __u32 backend[4];         /* what it was translated to */
    __u16 backend_port;
    __u16 pad2;
};

/* hash maps sized for 65,536 ports take memory only as entries come (no preallocation) */
BPF_TABLE_PINNED("hash", struct svc_key, struct svc_value, services, SERVICES_MAX, PIN "/services",
                 BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", __u32, struct backend, backends, BACKENDS_MAX, PIN "/backends", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct svc_key, __u32, nodeports, 256, PIN "/nodeports");
BPF_TABLE_PINNED("lru_hash", struct affinity_key, struct affinity_value, affinity, AFFINITY_MAX, PIN "/affinity");
BPF_TABLE_PINNED("lru_hash", __u64, struct revnat_value, revnat, REVNAT_MAX, PIN "/revnat");

static __always_inline struct svc_value *find(struct svc_key *key)
{
    struct svc_value *svc = services.lookup(key);
    if (svc)
        return svc;
    /* a node port: the address is one of this node's (nodeports holds them, with port 0) */
    struct svc_key where = {};
    __builtin_memcpy(where.addr, key->addr, sizeof(where.addr));
    if (!nodeports.lookup(&where))
        return 0;
    /* the node-port key of the address's family: ::ffff:0.0.0.0 for IPv4, :: for IPv6
     * (the maps serve both families' proxies, whose entries must not meet) */
    if (key->addr[0] == 0 && key->addr[1] == 0 && key->addr[2] == bpf_htonl(0xffff))
        key->addr[3] = 0;
    else
        __builtin_memset(key->addr, 0, sizeof(key->addr));
    key->scope = FLAG_NODEPORT;
    return services.lookup(key);
}

static __always_inline __u32 pick(void *ctx, struct svc_value *svc)
{
    __u32 slot = bpf_get_prandom_u32() % svc->count + 1;
    if (!svc->affinity)
        return slot;
    /* ClientIP affinity: the client is its network namespace (a pod, or the node) */
    struct affinity_key key = {.client = bpf_get_netns_cookie(ctx), .id = svc->id};
    struct affinity_value *last = affinity.lookup(&key);
    __u64 now = bpf_ktime_get_ns();
    if (last && now - last->used < (__u64)svc->affinity * 1000000000ULL)
        return last->backend | 0x80000000;          /* a backend id, not a slot */
    return slot;
}

/* Translate *addr / *port if they name a Service; 1 to let the call go on, 0 to fail it. */
static __always_inline int translate(void *ctx, __u32 *addr, __u32 *port, __u8 proto, __u64 cookie)
{
    struct svc_key key = {.port = (__u16)*port, .proto = proto};
    __builtin_memcpy(key.addr, addr, sizeof(key.addr));
    struct svc_value *svc = find(&key);
    if (!svc)
        return 1;
    if (svc->count == 0) {
        bpf_set_retval(svc->flags & FLAG_DROP ? -EPERM : -ECONNREFUSED);
        return 0;
    }
    __u32 chosen = pick(ctx, svc), id;
    if (chosen & 0x80000000) {
        id = chosen & 0x7fffffff;
    } else {
        key.slot = chosen;
        struct svc_value *slot = services.lookup(&key);
        if (!slot)
            return 1;                  /* a slot being rewritten: leave the call alone */
        id = slot->count;
    }
    struct backend *be = backends.lookup(&id);
    if (!be)
        return 1;
    if (svc->affinity) {
        struct affinity_key akey = {.client = bpf_get_netns_cookie(ctx), .id = svc->id};
        struct affinity_value used = {.used = bpf_ktime_get_ns(), .backend = id};
        affinity.update(&akey, &used);
    }
    struct revnat_value orig = {.port = (__u16)*port, .backend_port = be->port};
    __builtin_memcpy(orig.addr, addr, sizeof(orig.addr));
    __builtin_memcpy(orig.backend, be->addr, sizeof(orig.backend));
    revnat.update(&cookie, &orig);
    __builtin_memcpy(addr, be->addr, sizeof(be->addr));
    *port = be->port;
    return 1;
}

/* Put the Service address back where the application will read the peer. */
static __always_inline void restore(__u32 *addr, __u32 *port, __u64 cookie)
{
    struct revnat_value *orig = revnat.lookup(&cookie);
    if (!orig || orig->backend_port != (__u16)*port)
        return;
    if (orig->backend[0] != addr[0] || orig->backend[1] != addr[1] || orig->backend[2] != addr[2] ||
        orig->backend[3] != addr[3])
        return;
    __builtin_memcpy(addr, orig->addr, sizeof(orig->addr));
    *port = orig->port;
}

static __always_inline int supported(__u32 proto)
{
    return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

/* The call's address and port: translated (connect, sendmsg; 0 fails the
 * call), or the Service's put back (recvmsg, getpeername: `reverse`). */
static __always_inline int resolve(struct bpf_sock_addr *ctx, __u32 *addr, __u32 *port, int reverse)
{
    __u64 cookie = bpf_get_socket_cookie(ctx);
    if (reverse) {
        restore(addr, port, cookie);
        return 1;
    }
    return translate(ctx, addr, port, ctx->protocol, cookie);
}

/* IPv4: the maps hold ::ffff:a.b.c.d */
static __always_inline int v4(struct bpf_sock_addr *ctx, int reverse)
{
    if (!reverse && !supported(ctx->protocol))
        return 1;
    __u32 addr[4] = {0, 0, bpf_htonl(0xffff), ctx->user_ip4};
    __u32 port = ctx->user_port;
    if (!resolve(ctx, addr, &port, reverse))
        return 0;
    ctx->user_ip4 = addr[3];
    ctx->user_port = port;
    return 1;
}

static __always_inline int v6(struct bpf_sock_addr *ctx, int reverse)
{
    if (!reverse && !supported(ctx->protocol))
        return 1;
    __u32 addr[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
    __u32 port = ctx->user_port;
    if (!resolve(ctx, addr, &port, reverse))
        return 0;
    ctx->user_ip6[0] = addr[0];
    ctx->user_ip6[1] = addr[1];
    ctx->user_ip6[2] = addr[2];
    ctx->user_ip6[3] = addr[3];
    ctx->user_port = port;
    return 1;
}

int connect4(struct bpf_sock_addr *ctx) { return v4(ctx, 0); }
int sendmsg4(struct bpf_sock_addr *ctx) { return v4(ctx, 0); }
int recvmsg4(struct bpf_sock_addr *ctx) { return v4(ctx, 1); }
int getpeername4(struct bpf_sock_addr *ctx) { return v4(ctx, 1); }
int connect6(struct bpf_sock_addr *ctx) { return v6(ctx, 0); }
int sendmsg6(struct bpf_sock_addr *ctx) { return v6(ctx, 0); }
int recvmsg6(struct bpf_sock_addr *ctx) { return v6(ctx, 1); }
int getpeername6(struct bpf_sock_addr *ctx) { return v6(ctx, 1); }
