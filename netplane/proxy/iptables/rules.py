"""One service port's iptables rules, with kube-proxy's semantics.

Theory of operation. A packet to a service goes through (nat table):

    NP-SERVICES    one jump per (service address, port): the cluster IP to the
                   internal policy chain, external IPs and node ports to EXT,
                   load-balancer IPs to FW (source ranges) or EXT
    NP-SVC-<h>     cluster policy: masquerade off-cluster sources, then pick an
                   endpoint (sticky with ClientIP affinity, else random)
    NP-SVL-<h>     local policy: the same over this node's endpoints only
    NP-EXT-<h>     external traffic: masquerade and go to SVC (policy Cluster),
                   or keep the client address and go to SVL (policy Local;
                   pods and the node itself still reach every endpoint)
    NP-FW-<h>      allowed source ranges go on to EXT; anything else falls
                   through and the filter table's NP-PROXY-FIREWALL drops it
    NP-SEP-<h>     one endpoint: masquerade hairpin traffic, then DNAT

The filter table says no: REJECT (at once, not a timeout) for a port with no
endpoints anywhere, DROP where the policy is Local and this node has none.
A port without usable endpoints gets no nat rules at all.

Two layouts. "kube-proxy" gives every endpoint its NP-SEP chain, as
kube-proxy does. "compact" (the default) keeps a SEP chain only where its
hairpin rule can ever match, and DNATs straight from the SVC chain
otherwise. A hairpin packet comes from the endpoint itself; traffic that
crosses this node's nat table comes from this node's pods or from outside
(every node's proxy DNATs its own pods' cluster-IP traffic, and external
traffic under the Cluster policy is masqueraded anyway). So an endpoint on
another node needs no hairpin rule, except behind an externalTrafficPolicy
Local port, whose pod short-circuit sends other nodes' pods into SVC
unmasqueraded. At 10k services with 10 endpoints on other nodes that is
10k chains instead of 110k, and 120k rules instead of 320k; the
kernel's restore time grows with both.

Everything is text in iptables-restore syntax, built from the port alone,
so a port's rules can be compiled, cached and compared on their own. The
chains a port owns are two strings: their declarations and their rules,
chain after chain, each line ending in a newline. A transaction is built
by joining whole ports, and a port changes as a whole, as a service does
in kube-proxy's partial syncs. ext/iptables_rules.pyx is the compiled twin
of port_rules(); it must give byte-identical PortRules.
"""
from dataclasses import dataclass
from typing import NamedTuple

from netplane.proxy.iptables import chains as c
from netplane.proxy.model import Endpoint
from netplane.proxy.policy import REJECT, PortPolicy

COMPACT, KUBE_PROXY = "compact", "kube-proxy"
LAYOUTS = (COMPACT, KUBE_PROXY)


@dataclass(frozen=True)
class Context:
    """What the rules need from the node, for one family."""
    family: int
    cluster_cidr: str = ""          # "" = unknown: off-cluster traffic cannot be told apart
    masquerade_all: bool = False
    nodeport_destinations: tuple[str, ...] = ()   # matches for "addressed to this node"
    masquerade_bit: int = 14                      # the packet mark bit meaning "masquerade me"
    layout: str = COMPACT
    localhost_nodeports: bool = False             # node ports answer on 127.0.0.1 (route_localnet; IPv4)

    @property
    def host_suffix(self) -> str:
        return "/32" if self.family == 4 else "/128"


class PortRules(NamedTuple):
    """A port's share of the top-level chains, and the nat chains it owns.
    Every value is restore text: whole lines, each ending in a newline.
    (A NamedTuple rather than a dataclass: the compiled twin makes 10k of
    them per full compile, and a tuple is made without running Python.)"""
    nat_services: str = ""
    nat_nodeports: str = ""
    filter_services: str = ""
    filter_external: str = ""
    filter_firewall: str = ""
    declarations: str = ""      # ":NAME - [0:0]" for each nat chain the port owns, in order
    rules: str = ""             # those chains' rules, chain after chain


def chain_names(declarations: str) -> list[str]:
    """The chains a PortRules.declarations text declares, in order."""
    return [line[1:line.index(" ")] for line in declarations.split("\n")[:-1]]


def port_rules(policy: PortPolicy, ctx: Context) -> PortRules:
    return _Builder(policy, ctx).build()


def rules_text(lines) -> str:
    """Rules as one text block: every line ends in a newline."""
    return "".join(line + "\n" for line in lines)


class _Builder:
    """Formats a PortPolicy; every decision in it was made by policy.py. What
    is decided here is only how to say it in iptables: the chains (SVC for
    the cluster-wide endpoints, SVL for the local ones) and, in the compact
    layout, which endpoints need no SEP chain (those that cannot see hairpin
    traffic here)."""

    def __init__(self, policy: PortPolicy, ctx: Context) -> None:
        self.p, self.pol, self.ctx = policy.port, policy, ctx
        self.key = f"{self.p.name}/{self.p.protocol}"
        self.proto = self.p.protocol.lower()
        self.match = f"-p {self.proto} -m {self.proto} --dport {self.p.port}"
        self.svc, self.svl = c.service_chain(c.SVC, self.key), c.service_chain(c.SVL, self.key)
        self.ext, self.fw = c.service_chain(c.EXT, self.key), c.service_chain(c.FW, self.key)
        self.has_svc, self.has_svl = bool(policy.cluster), bool(policy.local)
        # endpoint -> its SEP chain name (also the name of its affinity list), and its "ip:port"
        self.sep = {e: c.endpoint_chain(self.key, _endpoint_text(e)) for e in policy.reachable}
        # endpoints DNATed straight from SVC, without a SEP chain (see the layouts)
        self.inline = set(policy.reachable) - set(policy.hairpin) if ctx.layout == COMPACT else set()

    def comment(self, what: str) -> str:
        return f'-m comment --comment "{self.p.name}{what}"'

    def dst(self, ip) -> str:
        return f"-d {ip}{self.ctx.host_suffix}"

    def build(self) -> PortRules:
        chains = self.chains()
        return PortRules(rules_text(self.nat_services()), rules_text(self.nat_nodeports()), rules_text(self.filter_services()),
                         rules_text(self.filter_external()), rules_text(self.filter_firewall()),
                         "".join(f":{name} - [0:0]\n" for name, _ in chains),
                         "".join(rules_text(lines) for _, lines in chains))

    # -- top-level chains ------------------------------------------------------

    def nat_services(self) -> list[str]:
        lines = []
        if self.pol.internal:
            internal = self.svl if self.p.internal_local else self.svc
            lines += [f"-A {c.NAT_SERVICES} {self.dst(ip)} {self.match} {self.comment(' cluster IP')} -j {internal}"
                      for ip in self.p.cluster_ips]
        if self.pol.has_any:
            lines += [f"-A {c.NAT_SERVICES} {self.dst(ip)} {self.match} {self.comment(' external IP')} -j {self.ext}"
                      for ip in self.p.external_ips]
            lb_target = self.fw if self.pol.firewall else self.ext
            lines += [f"-A {c.NAT_SERVICES} {self.dst(ip)} {self.match} {self.comment(' loadbalancer IP')} -j {lb_target}"
                      for ip in self.p.load_balancer_ips]
        return lines

    def nat_nodeports(self) -> list[str]:
        if not (self.p.node_port and self.pol.has_any):
            return []
        return [f"-A {c.NAT_NODEPORTS} -p {self.proto} -m {self.proto} --dport {self.p.node_port} "
                f"{self.comment(' node port')} -j {self.ext}"]

    def _refusal(self) -> tuple[str, str]:
        return self.pol.refusal, " has no endpoints" if self.pol.refusal == REJECT else " has no local endpoints"

    def filter_services(self) -> list[str]:
        if self.pol.internal:
            return []
        target, why = self._refusal()
        return [f"-A {c.FILTER_SERVICES} {self.dst(ip)} {self.match} {self.comment(why)} -j {target}"
                for ip in self.p.cluster_ips]

    def filter_external(self) -> list[str]:
        if self.pol.external or not self.p.externally_accessible:
            return []
        target, why = self._refusal()
        lines = [f"-A {c.FILTER_EXTERNAL} {self.dst(ip)} {self.match} {self.comment(why)} -j {target}"
                 for ip in self.p.external_ips + self.p.load_balancer_ips]
        if self.p.node_port:
            lines += [f"-A {c.FILTER_EXTERNAL} {dest} -p {self.proto} -m {self.proto} --dport {self.p.node_port} "
                      f"{self.comment(why)} -j {target}" for dest in self.ctx.nodeport_destinations]
        return lines

    def filter_firewall(self) -> list[str]:
        if not self.pol.firewall:
            return []                   # without endpoints, everyone gets the REJECT
        return [f"-A {c.FILTER_FIREWALL} {self.dst(ip)} {self.match} "
                f"{self.comment(' traffic not accepted by ' + self.fw)} -j DROP"
                for ip in self.p.load_balancer_ips]

    # -- the port's own chains -------------------------------------------------

    def chains(self) -> list[tuple[str, list[str]]]:
        """(chain, its rules) for each nat chain the port owns."""
        out = []
        if self.has_svc:
            out.append((self.svc, self.masquerade(self.svc, not self.p.internal_local) + self.pick(self.svc, self.pol.cluster)))
        if self.has_svl:
            out.append((self.svl, self.masquerade(self.svl, self.p.internal_local) + self.pick(self.svl, self.pol.local)))
        if self.p.externally_accessible and self.pol.has_any:
            out.append((self.ext, self.external()))
        if self.pol.firewall:
            out.append((self.fw, [f"-A {self.fw} -s {r} {self.comment(' loadbalancer IP')} -j {self.ext}"
                                  for r in self.pol.firewall]))
        out += [(self.sep[e], self.endpoint(self.sep[e], e)) for e in self.pol.reachable if e not in self.inline]
        return out

    def masquerade(self, chain: str, serves_cluster_ip: bool) -> list[str]:
        """Traffic to the cluster IP from outside the pod network (the node
        itself, or another host) is masqueraded, so replies come back here."""
        if not serves_cluster_ip:
            return []
        if self.ctx.masquerade_all:
            source = ""
        elif self.ctx.cluster_cidr:
            source = f"! -s {self.ctx.cluster_cidr} "
        else:
            return []
        return [f"-A {chain} {self.dst(ip)} {self.match} {source}{self.comment(' cluster IP')} -j {c.MARK_MASQ}"
                for ip in self.p.cluster_ips]

    def pick(self, chain: str, endpoints: tuple[Endpoint, ...]) -> list[str]:
        lines = []
        if self.p.affinity_timeout:
            lines += [f"-A {chain} {self.via(e, f'-m recent --name {self.sep[e]} --rcheck --seconds {self.p.affinity_timeout} --reap ')}"
                      for e in endpoints]
        n = len(endpoints)
        for i, e in enumerate(endpoints):
            chance = f"-m statistic --mode random --probability {1.0 / (n - i):.10f} " if i < n - 1 else ""
            if e in self.inline:
                sticky = f"-m recent --name {self.sep[e]} --set " if self.p.affinity_timeout else ""
                lines.append(f"-A {chain} {self.dnat(e, chance + sticky)}")
            else:
                lines.append(f"-A {chain} {chance}-j {self.sep[e]}")
        return lines

    def via(self, e: Endpoint, matches: str) -> str:
        """A rule's tail that sends the packet on to endpoint e, after `matches`."""
        return self.dnat(e, matches) if e in self.inline else f"{matches}-j {self.sep[e]}"

    def dnat(self, e: Endpoint, matches: str) -> str:
        return f"-p {self.proto} -m {self.proto} {self.comment('')} {matches}-j DNAT --to-destination {_endpoint_text(e)}"

    def external(self) -> list[str]:
        if not self.p.external_local:
            lines = [f"-A {self.ext} {self.comment(' masquerade traffic for external destinations')} -j {c.MARK_MASQ}"]
            return lines + ([f"-A {self.ext} -j {self.svc}"] if self.has_svc else [])
        # Local policy: the client address is kept, so only this node's endpoints
        # may answer. Pods and the node itself are not external clients: they
        # short-circuit to the cluster-wide chain (masqueraded if from the node).
        everywhere = self.svc if self.has_svc else (self.svl if self.has_svl else "")
        lines = []
        if everywhere and self.ctx.cluster_cidr:
            lines.append(f"-A {self.ext} -s {self.ctx.cluster_cidr} "
                         f"{self.comment(' pod traffic for external destinations')} -j {everywhere}")
        lines.append(f"-A {self.ext} -m addrtype --src-type LOCAL "
                     f"{self.comment(' masquerade LOCAL traffic for external destinations')} -j {c.MARK_MASQ}")
        if everywhere:
            lines.append(f"-A {self.ext} -m addrtype --src-type LOCAL "
                         f"{self.comment(' route LOCAL traffic for external destinations')} -j {everywhere}")
        if self.has_svl:
            lines.append(f"-A {self.ext} -j {self.svl}")
        return lines

    def endpoint(self, chain: str, e: Endpoint) -> list[str]:
        sticky = f"-m recent --name {chain} --set " if self.p.affinity_timeout else ""
        return [f"-A {chain} -s {e.address}{self.ctx.host_suffix} {self.comment('')} -j {c.MARK_MASQ}",
                f"-A {chain} -p {self.proto} -m {self.proto} {sticky}{self.comment('')} -j DNAT --to-destination {_endpoint_text(e)}"]


def _endpoint_text(e: Endpoint) -> str:
    return f"[{e.address}]:{e.port}" if ":" in e.address else f"{e.address}:{e.port}"
