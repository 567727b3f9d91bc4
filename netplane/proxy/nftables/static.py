"""The objects the nftables mode always holds: maps, sets, base chains and
the fixed chains between them. Written on full syncs only.

Hooks and priorities, as kube-proxy's nftables mode has them:
- nat prerouting (dstnat) and output (-100) send new connections to
  `services`, whose verdict maps pick the path chain; postrouting (srcnat)
  masquerades what was marked, and hairpin traffic.
- The load-balancer firewall runs before the DNAT (prerouting and output at
  -110), when the destination is still the load-balancer address.
- The refusals run after it, in input, forward and output: a packet the nat
  table did not translate still has its service address there.
"""
from netplane.proxy.nftables import names as n
from netplane.proxy.nftables.context import Context

# base chain -> (type, hook, priority)
BASE_CHAINS = {
    "nat-prerouting": ("nat", "prerouting", "dstnat"),
    "nat-output": ("nat", "output", "-100"),
    "nat-postrouting": ("nat", "postrouting", "srcnat"),
    "filter-prerouting-pre-dnat": ("filter", "prerouting", "-110"),
    "filter-output-pre-dnat": ("filter", "output", "-110"),
    "filter-input": ("filter", "input", "-10"),
    "filter-forward": ("filter", "forward", "-10"),
    "filter-output": ("filter", "output", "-10"),
}


def sets(ctx: Context) -> dict[str, str]:
    """map or set -> its declaration body (`type ...; flags ...;`)."""
    addr, ip = n.ADDR_TYPE[ctx.family], ctx.ip
    vip = f"{addr} . inet_proto . inet_service"
    out = {
        n.SERVICE_IPS: f"type {vip} : verdict;",
        n.SERVICE_NODEPORTS: "type inet_proto . inet_service : verdict;",
        n.NO_ENDPOINT_SERVICES: f"type {vip} : verdict;",
        n.NO_ENDPOINT_NODEPORTS: "type inet_proto . inet_service : verdict;",
        n.FIREWALL: f"type {vip} : verdict;",
        n.CLUSTER_IPS: f"type {addr};",
        n.HAIRPIN: f"type {addr} . {addr};",
    }
    for kind in n.BACKEND_KINDS:                      # see names.py: one per protocol
        for proto in n.PROTOCOLS:
            where = f"{proto} dport" if kind.startswith("nodeport") else f"{ip} daddr . {proto} dport"
            out[n.backends(kind, proto)] = f"typeof {where} . numgen random mod 1 : {ip} daddr . {proto} dport;"
    if ctx.nodeports is not None:
        out[n.NODEPORT_IPS] = f"type {addr};"
    return out


def static_elements(ctx: Context) -> dict[str, list[tuple]]:
    return {n.NODEPORT_IPS: [(a,) for a in ctx.nodeports]} if ctx.nodeports else {}


def chains(ctx: Context) -> dict[str, tuple[str, ...]]:
    """chain -> its rules, for the base chains and the fixed ones."""
    ip, mark = ctx.ip, ctx.mark
    if ctx.nodeports is None:
        to_node = f"fib daddr type local {ip} daddr != {n.LOOPBACK[ctx.family]}"
    else:
        to_node = f"{ip} daddr @{n.NODEPORT_IPS}"
    new = "ct state new"
    vip = f"{ip} daddr . meta l4proto . th dport"
    return {
        "nat-prerouting": (f"jump {n.SERVICES}",),
        "nat-output": (f"jump {n.SERVICES}",),
        "nat-postrouting": (f"jump {n.MASQUERADING}",),
        "filter-prerouting-pre-dnat": (f"{new} jump {n.FIREWALL_CHECK}",),
        "filter-output-pre-dnat": (f"{new} jump {n.FIREWALL_CHECK}",),
        "filter-input": (f"{new} jump {n.NODEPORT_CHECK}", f"{new} jump {n.SERVICE_CHECK}"),
        "filter-forward": (f"{new} jump {n.SERVICE_CHECK}", f"{new} jump {n.CLUSTER_IPS_CHECK}", f"jump {n.FORWARD}"),
        "filter-output": (f"{new} jump {n.SERVICE_CHECK}", f"{new} jump {n.CLUSTER_IPS_CHECK}"),
        n.SERVICES: (f"{vip} vmap @{n.SERVICE_IPS}",
                     f"{to_node} meta l4proto . th dport vmap @{n.SERVICE_NODEPORTS}"),
        n.MASQUERADING: (f"ct status dnat {ip} saddr . {ip} daddr @{n.HAIRPIN} masquerade fully-random",
                         f"meta mark & {mark} == 0 return",
                         f"meta mark set meta mark ^ {mark}",
                         "masquerade fully-random"),
        n.MARK_MASQ: (f"meta mark set meta mark | {mark}",),
        n.SERVICE_CHECK: (f"{vip} vmap @{n.NO_ENDPOINT_SERVICES}",),
        n.NODEPORT_CHECK: (f"{to_node} meta l4proto . th dport vmap @{n.NO_ENDPOINT_NODEPORTS}",),
        n.CLUSTER_IPS_CHECK: (f"{ip} daddr @{n.CLUSTER_IPS} reject",
                              *(f"{ip} daddr {c} drop" for c in ctx.service_cidrs)),
        n.FIREWALL_CHECK: (f"{vip} vmap @{n.FIREWALL}",),
        n.FORWARD: ("ct state invalid drop",),
        n.REJECT_CHAIN: ("reject",),
    }
