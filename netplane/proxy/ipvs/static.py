"""The constant rules around IPVS, in the table `netplane-ipvs` (names.py).

IPVS alone has one virtual server per address and port, NATs only the
destination, and answers nothing for a port without real servers. These
rules, over sets that the compile fills, add the rest:
- Masquerading. A new connection is marked in its conntrack entry (ct
  mark, so that the packet mark stays free for the firewall-mark virtual
  servers) before IPVS sees it, in prerouting and output at mangle
  priority; postrouting masquerades what is marked, after IPVS's DNAT.
  Marked are off-cluster sources to cluster IPs, everything to an external
  address or node port under the Cluster policy, and the node itself.
  An endpoint reaching itself through its Service (hairpin) is
  masqueraded by a set of (endpoint, endpoint) pairs.
- externalTrafficPolicy Local. The address's own virtual server has this
  node's endpoints only, and external clients keep their address. Pods and
  the node get a packet mark naming a firewall-mark virtual server over
  every endpoint; IPVS looks firewall marks up first.
- Refusals, in input at filter priority, before IPVS (LOCAL_IN, 98-99):
  a port without endpoints is rejected at once (REJECT, which kube-proxy's
  IPVS mode cannot do), or dropped under a Local policy with endpoints
  only elsewhere; any other TCP, UDP or SCTP port on an np-ipvs0 address
  is rejected, so the node's own listeners are not reachable on Service
  addresses.
- loadBalancerSourceRanges: other sources to a guarded load-balancer IP
  are dropped before IPVS, by one set of (address, port, source range).
"""
from netplane.proxy.ipvs import names as n
from netplane.proxy.ipvs.context import Context
from netplane.proxy.nftables.names import ADDR_TYPE

BASE_CHAINS = {
    n.PREROUTING: ("filter", "prerouting", "mangle"),
    n.OUTPUT: ("filter", "output", "mangle"),
    n.INPUT: ("filter", "input", "filter"),
    n.POSTROUTING: ("nat", "postrouting", "srcnat"),
}


def sets(ctx: Context) -> dict[str, str]:
    addr = ADDR_TYPE[ctx.family]
    vip = f"{addr} . inet_proto . inet_service"
    return {
        n.CLUSTER_VIPS: f"type {vip};",
        n.EXTERNAL_VIPS: f"type {vip};",
        n.SHORTCUT: f"type {vip} : mark;",
        n.SERVED: f"type {vip};",
        n.NODEPORT_SERVERS: f"type {vip};",
        n.NO_ENDPOINTS: f"type {vip} : verdict;",
        n.FIREWALL: f"type {vip};",
        n.FIREWALL_ALLOW: f"type {vip} . {addr}; flags interval;",
        n.HAIRPIN: f"type {addr} . {addr};",
        n.ADDRESSES: f"type {addr};",
    }


def chains(ctx: Context) -> dict[str, tuple[str, ...]]:
    ip, masq = ctx.ip, ctx.mark
    vip = f"{ip} daddr . meta l4proto . th dport"
    mark = f"ct mark set ct mark | {masq}"
    new = "ct state new"
    before_ipvs = (f"{new} {vip} @{n.FIREWALL} {vip} . {ip} saddr != @{n.FIREWALL_ALLOW} drop",
                   f"{new} jump {n.MARK}")
    return {
        n.PREROUTING: before_ipvs,
        n.OUTPUT: before_ipvs,
        n.MARK: (*_cluster_masquerade(ctx, vip, mark),
                 f"{vip} @{n.EXTERNAL_VIPS} {mark}",
                 *((f"{ip} saddr {ctx.cluster_cidr} meta mark set {vip} map @{n.SHORTCUT}",) if ctx.cluster_cidr else ()),
                 # (Debian 12's 6.1 refuses a map looked up as a set: the mark it set tells instead)
                 f"fib saddr type local meta mark set {vip} map @{n.SHORTCUT}",
                 f"fib saddr type local meta mark & {n.MARK_MASK:#x} == {n.MARK_TAG:#x} {mark}"),
        n.INPUT: (f"{new} meta mark & {n.MARK_MASK:#x} == {n.MARK_TAG:#x} accept",
                  f"{new} {vip} vmap @{n.NO_ENDPOINTS}",
                  f"{new} {ip} daddr @{n.ADDRESSES} meta l4proto {{ tcp, udp, sctp }} {vip} != @{n.SERVED} reject"),
        n.POSTROUTING: (f"ct mark & {masq} == {masq} masquerade fully-random",
                        f"{ip} saddr . {ip} daddr @{n.HAIRPIN} masquerade fully-random"),
        n.REJECT_CHAIN: ("reject",),
    }


def _cluster_masquerade(ctx: Context, vip: str, mark: str) -> tuple[str, ...]:
    """Cluster IPs: sources outside the pod network (the node, other hosts)
    are masqueraded, so that replies come back through this node."""
    if ctx.masquerade_all:
        return (f"{vip} @{n.CLUSTER_VIPS} {mark}",)
    if ctx.cluster_cidr:
        return (f"{vip} @{n.CLUSTER_VIPS} {ctx.ip} saddr != {ctx.cluster_cidr} {mark}",)
    return ()
