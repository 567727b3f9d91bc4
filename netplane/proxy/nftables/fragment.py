"""One service port's share of the nftables ruleset, with kube-proxy's semantics.

Theory of operation. A new connection to a service goes through:

    services            one lookup: `daddr . proto . port vmap @service-ips`,
                        and for node ports `proto . port vmap @service-nodeports`
    <path chain>        shared by every port of the same shape, named by it:
                          cluster-tcp-N    cluster IP: masquerade off-cluster sources
                          external-tcp-N   external traffic, policy Cluster: masquerade
                          local-tcp-N-M    external traffic, policy Local: keep the
                                           client address and use this node's N
                                           endpoints; pods and the node itself
                                           short-circuit to all M
                        (nodeport-tcp-N, nodeport-local-tcp-N-M: the same for node ports)
    the DNAT            `dnat to daddr . tcp dport . numgen random mod N map
                        @backends-tcp`: the port's endpoints sit in slots 0..N-1
                        of a map keyed by (address, port, slot), one map per
                        protocol (names.py says why)

So a port is map elements only: no object of its own, and a change is a
handful of element updates. Masquerading back to itself an endpoint that
reaches its own service (hairpin) is one set of (endpoint, endpoint) pairs
in postrouting. The filter side is maps too: the refusals (REJECT for a
port without endpoints, DROP under a Local policy with none here), the
cluster IPs (other ports are rejected), and the load-balancer firewall's
dispatch.

Two things get chains of the port's own, as kube-proxy shapes them:
- ClientIP affinity needs per-endpoint memory: chains (svc, ext, a pick
  chain per endpoint list, one per endpoint) and a dynamic set of recent
  clients per endpoint;
- loadBalancerSourceRanges: a `fw` chain dropping other sources (one set
  of ranges for two Services on one address would mix them, and the
  kernel refuses overlapping intervals).
Both are rare; everything else stays in maps.

Every decision was made in policy.py; this only says it in nft.
"""
from typing import NamedTuple

import netaddr

from netplane.proxy.model import Endpoint
from netplane.proxy.nftables import names as n
from netplane.proxy.nftables.context import Context
from netplane.proxy.policy import REJECT, PortPolicy

REFUSAL = {REJECT: n.REJECT_VERDICT}


class Fragment(NamedTuple):
    """A port's share: elements are (map or set, key tuple, value: a tuple,
    a verdict string, or None in a set); shapes are the shared path chains
    it jumps to; chains and sets are its own (affinity ports only)."""
    elements: tuple = ()
    shapes: tuple = ()          # e.g. ("cluster", 3), ("local", 1, 2), ("nodeport", 2)
    chains: tuple = ()          # (name, rules tuple)
    sets: tuple = ()            # (name, timeout seconds): dynamic sets of recent clients


def port_fragment(policy: PortPolicy, ctx: Context) -> Fragment:
    return _Builder(policy, ctx).build()


class _Builder:
    def __init__(self, policy: PortPolicy, ctx: Context) -> None:
        self.pol, self.p, self.ctx = policy, policy.port, ctx
        self.proto = self.p.protocol.lower()
        self.elements, self.shapes, self.chains, self.sets = [], [], [], []
        self.affinity = self.p.affinity_timeout > 0
        self.key = f"{self.p.name}/{self.p.protocol}"
        # the endpoints external traffic from pods and the node reaches under a Local policy
        self.everywhere = policy.cluster or policy.local

    def build(self) -> Fragment:
        if self.affinity:
            self.own_chains()
        self.cluster_ips()
        self.external_addresses()
        self.node_port()
        self.elements += [(n.HAIRPIN, (e.address, e.address), None) for e in self.pol.hairpin]
        return Fragment(tuple(self.elements), tuple(self.shapes), tuple(self.chains), tuple(self.sets))

    def refuse(self, map_name: str, key: tuple) -> None:
        self.elements.append((map_name, key, REFUSAL.get(self.pol.refusal, n.DROP_VERDICT)))

    def cluster_ips(self) -> None:
        for ip in self.p.cluster_ips:
            key = (str(ip), self.proto, self.p.port)
            self.elements.append((n.CLUSTER_IPS, (str(ip),), None))
            if not self.pol.internal:
                self.refuse(n.NO_ENDPOINT_SERVICES, key)
            elif self.affinity:
                self.elements.append((n.SERVICE_IPS, key, "goto " + n.port_chain("svc", self.key)))
            else:
                self.dispatch(n.SERVICE_IPS, key, ("cluster", self.proto, len(self.pol.internal)), "backends",
                              self.pol.internal)

    def external_addresses(self) -> None:
        external = self.p.external_ips + self.p.load_balancer_ips
        for ip in external:
            key = (str(ip), self.proto, self.p.port)
            if not self.pol.external:
                self.refuse(n.NO_ENDPOINT_SERVICES, key)
            if self.pol.has_any:
                self.external_path(n.SERVICE_IPS, key, "")
        if self.pol.firewall:
            self.firewall()

    def firewall(self) -> None:
        """The load-balancer IPs' allowed sources, in a chain of the port's own,
        so two Services on one address never mix their ranges (the address's
        dispatch and firewall both go to the first in name order). An LB IP
        that is also one of the port's external IPs is not guarded, as in
        iptables, where its external-IP rule matches first."""
        guarded = [ip for ip in self.p.load_balancer_ips if ip not in self.p.external_ips]
        if not guarded:
            return
        chain = n.port_chain("fw", self.key)
        # overlapping ranges would be refused in one set: merged first
        ranges = ", ".join(str(r) for r in netaddr.cidr_merge(self.pol.firewall))
        self.chains.append((chain, (f"{self.ctx.ip} saddr != {{ {ranges} }} drop",)))
        self.elements += [(n.FIREWALL, (str(ip), self.proto, self.p.port), f"goto {chain}") for ip in guarded]

    def node_port(self) -> None:
        if not self.p.node_port:
            return
        key = (self.proto, self.p.node_port)
        if not self.pol.external:
            self.refuse(n.NO_ENDPOINT_NODEPORTS, key)
        if self.pol.has_any:
            self.external_path(n.SERVICE_NODEPORTS, key, "nodeport")

    def external_path(self, dispatch: str, key: tuple, prefix: str) -> None:
        """External traffic to an address (prefix "") or a node port ("nodeport")."""
        if self.affinity:
            self.elements.append((dispatch, key, "goto " + n.port_chain("ext", self.key)))
            return
        maps = f"{prefix}-backends" if prefix else "backends"
        if not self.p.external_local:
            self.dispatch(dispatch, key, (prefix or "external", self.proto, len(self.pol.external)), maps,
                          self.pol.external)
        else:
            kind = f"{prefix}-local" if prefix else "local"
            self.dispatch(dispatch, key, (kind, self.proto, len(self.pol.local), len(self.everywhere)), maps,
                          self.pol.local)
            self.slots(f"{prefix}-shortcut-backends" if prefix else "shortcut-backends", key, self.everywhere)

    def dispatch(self, map_name: str, key: tuple, shape: tuple, kind: str, endpoints) -> None:
        self.elements.append((map_name, key, "goto " + shape_name(shape)))
        self.shapes.append(shape)
        self.slots(kind, key, endpoints)

    def slots(self, kind: str, key: tuple, endpoints) -> None:
        """The endpoints in slots 0..N-1 of the protocol's map of that kind (the
        dispatch key without its protocol: the map is the protocol's)."""
        backends = n.backends(kind, self.proto)
        slot_key = key[:-2] + key[-1:]          # (address, proto, port) -> (address, port); (proto, port) -> (port,)
        self.elements += [(backends, slot_key + (slot,), (e.address, e.port)) for slot, e in enumerate(endpoints)]

    # -- ClientIP affinity: the port's own chains ----------------------------------------

    def own_chains(self) -> None:
        timeout = self.p.affinity_timeout
        for e in self.pol.reachable:
            text = endpoint_text(e, self.ctx.family)
            recent = n.affinity_set(self.key, f"{text}/{timeout}")
            self.sets.append((recent, timeout))
            self.chains.append((n.endpoint_chain(self.key, text), (
                f"update @{recent} {{ {self.ctx.ip} saddr }}",
                f"meta l4proto {self.proto} dnat {self.ctx.ip} to {text}")))
        pick = {}
        for kind, endpoints in (("pick-c", self.pol.cluster), ("pick-l", self.pol.local)):
            if endpoints:
                pick[endpoints] = n.port_chain(kind, self.key)
                self.chains.append((pick[endpoints], self.pick(endpoints)))
        def finish(endpoints):
            return f"goto {pick[endpoints]}" if endpoints else ""
        if self.pol.internal:
            self.chains.append((n.port_chain("svc", self.key), path_rules("cluster", self.ctx, finish(self.pol.internal))))
        if self.pol.has_any and self.p.externally_accessible:
            kind = "local" if self.p.external_local else "external"
            self.chains.append((n.port_chain("ext", self.key), path_rules(
                kind, self.ctx, finish(self.pol.local if self.p.external_local else self.pol.external),
                finish(self.everywhere))))

    def pick(self, endpoints) -> tuple:
        chains = [n.endpoint_chain(self.key, endpoint_text(e, self.ctx.family)) for e in endpoints]
        recent = [n.affinity_set(self.key, f"{endpoint_text(e, self.ctx.family)}/{self.p.affinity_timeout}")
                  for e in endpoints]
        choices = ", ".join(f"{i} : goto {c}" for i, c in enumerate(chains))
        return tuple(f"{self.ctx.ip} saddr @{s} goto {c}" for s, c in zip(recent, chains)) + (
            f"numgen random mod {len(chains)} vmap {{ {choices} }}",)


def endpoint_text(e: Endpoint, family: int) -> str:
    return f"{e.address}:{e.port}" if family == 4 else f"[{e.address}]:{e.port}"


def shape_name(shape: tuple) -> str:
    return "-".join(str(x) for x in shape)


def shape_rules(shape: tuple, ctx: Context) -> tuple[str, ...]:
    """The rules of a shared path chain: the path's decisions, then the DNAT
    through the protocol's backends maps (for node ports, keyed without the
    address)."""
    kind, proto, counts = shape[0], shape[1], shape[2:]
    nodeport = kind.startswith("nodeport")
    key = f"{proto} dport" if nodeport else f"{ctx.ip} daddr . {proto} dport"
    default = n.backends("nodeport-backends" if nodeport else "backends", proto)
    shortcut = n.backends("nodeport-shortcut-backends" if nodeport else "shortcut-backends", proto)

    def finish(count: int, backends: str) -> str:
        return f"dnat {ctx.ip} to {key} . numgen random mod {count} map @{backends}" if count else ""
    path = {"cluster": "cluster", "external": "external", "nodeport": "external"}.get(kind, "local")
    return path_rules(path, ctx, finish(counts[0], default), finish(counts[1], shortcut) if len(counts) > 1 else "")


def path_rules(path: str, ctx: Context, finish: str, shortcut: str = "") -> tuple[str, ...]:
    """A path's rules, ending in `finish` (the DNAT, or a goto to the
    affinity pick chain); `shortcut` is the same over every endpoint, for
    pods and the node under a Local policy."""
    mark = f"jump {n.MARK_MASQ}"
    if path == "cluster":
        return tuple(r for r in (_masquerade_off_cluster(ctx), finish) if r)
    if path == "external":
        return (mark, finish)
    rules = []
    if shortcut and ctx.cluster_cidr:
        rules.append(f"{ctx.ip} saddr {ctx.cluster_cidr} {shortcut}")
    rules.append(f"fib saddr type local {mark}")
    if shortcut:
        rules.append(f"fib saddr type local {shortcut}")
    if finish:
        rules.append(finish)
    return tuple(rules)


def _masquerade_off_cluster(ctx: Context) -> str:
    """Traffic to a cluster IP from outside the pod network (the node itself,
    or another host) is masqueraded, so replies come back through here."""
    if ctx.masquerade_all:
        return f"jump {n.MARK_MASQ}"
    if ctx.cluster_cidr:
        return f"{ctx.ip} saddr != {ctx.cluster_cidr} jump {n.MARK_MASQ}"
    return ""
