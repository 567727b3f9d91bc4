"""A packet tracer over the IPVS mode's fake kernel: the nftables rules
around IPVS (the nftables tracer walks them) and IPVS's own lookup, where
the kernel runs it:
- a packet from another host crosses prerouting; if its destination is
  local (a node address, or one on np-ipvs0) it crosses input, then IPVS
  (LOCAL_IN, after the filter) translates it to a real server and sends it
  on through postrouting; otherwise it is forwarded;
- the node's own packet crosses output, then IPVS (LOCAL_OUT, after the
  mangle chains), then postrouting, and input when it stays local.
IPVS looks a firewall mark up first, then (protocol, address, port). A
virtual server with no real server of weight > 0 answers ICMP port
unreachable (REJECT). Persistence (ClientIP affinity) sends a remembered
client to the real server it remembers.
"""
from dataclasses import replace

from netplane.proxy.ipvs.plan import FWMARK, Key, endpoint
from netplane.testing.nftables_trace import REFUSED, Tracer, _dnat


class IpvsTracer(Tracer):
    def __init__(self, table: dict, local_addresses, ipvs, affinity_to: str | None = None) -> None:
        super().__init__(table, local_addresses)
        self.ipvs, self.affinity_to = ipvs, affinity_to

    def _path(self, p):
        from_node = p.src in self.local
        for q, verdict in self._hooks(["output" if from_node else "prerouting"], p):
            if verdict in REFUSED:
                yield q, verdict
            elif from_node:
                yield from self._ipvs(q, lambda r: self._hooks(
                    ["postrouting"] + (["input"] if r.dst in self.local else []), r))
            elif q.dst in self.local:
                for r, v in self._hooks(["input"], q):
                    yield from [(r, v)] if v in REFUSED else self._ipvs(r, lambda s: [(s, "accept")])
            else:
                yield from self._hooks(["forward", "postrouting"], q)

    def _ipvs(self, p, otherwise):
        key = self._lookup_server(p)
        if key is None:
            yield from otherwise(p)
            return
        weights = {d: weight for d, (weight, *_) in self.ipvs.real[key].items() if weight > 0}
        server = self.ipvs.services[key]
        if server.timeout and self.affinity_to:
            weights = {d: w for d, w in weights.items() if endpoint(*d) == self.affinity_to} or weights
        looked = f"IPVS virtual server {_server(key)} (scheduler {server.scheduler}" + \
            (f", persistent {server.timeout}s)" if server.timeout else ")")
        if not weights:
            # ip_vs_leave: ICMP port unreachable
            yield replace(p, trail=p.trail + (f"{looked}: no real server of weight > 0",)), "reject"
        total = sum(weights.values())
        for dest, weight in weights.items():
            # the share a weighted round robin gives it (other schedulers follow the weights over time)
            q = replace(p, weight=p.weight * weight / total,
                        trail=p.trail + (f"{looked}: real server {endpoint(*dest)} weight {weight}",))
            yield from self._hooks(["postrouting"], _dnat(q, dest))

    def _lookup_server(self, p) -> Key | None:
        if p.mark and Key(FWMARK, "", p.mark) in self.ipvs.services:
            return Key(FWMARK, "", p.mark)
        key = Key(p.proto.upper(), str(p.dst), p.dport)
        return key if key in self.ipvs.services else None


def _server(key: Key) -> str:
    return f"fwmark {key.port}" if key.protocol == FWMARK else f"{key.protocol} {endpoint(key.address, key.port)}"
