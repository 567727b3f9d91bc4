"""A map-level tracer for the eBPF mode's socket programs: the lookup
bpf/sock_lb.c makes at connect() or sendmsg(), run over the compiled map
entries (bytes, as the kernel holds them).

For a destination it finds the master entry (exact, then as a node port
when the address is one of the node-port addresses), and answers as the
program does: every backend its slots name (a random pick may take any),
or the refusal (count 0: ECONNREFUSED, or EPERM with the drop flag), or
"not a Service" (the call goes on untouched). With ClientIP affinity, a
client the affinity map remembers gets its backend."""
from netplane.proxy.ebpf import entries as e
from netplane.testing.verdict import Verdict

PROTO = {"tcp": 6, "udp": 17}


class SocketTracer:
    def __init__(self, services: dict[bytes, bytes], backends: dict[bytes, bytes], nodeports: set[bytes]) -> None:
        self.services, self.backends, self.nodeports = services, backends, nodeports

    def connect(self, proto: str, dst: str, port: int, node_origin: bool, affinity_to: str | None = None) -> Verdict | None:
        """None when the programs leave the call alone (not a Service, or a protocol they do not handle)."""
        if proto not in PROTO:
            return None
        addr = e.address(dst)
        key = (addr, port, PROTO[proto], 0)
        master = self.services.get(e.service_key(*key))
        if master is None and e.nodeport_key(addr) in self.nodeports:
            key = (e.ANY[e.family(addr)], port, PROTO[proto], e.SCOPE_NODEPORT)
            master = self.services.get(e.service_key(*key))
        if master is None:
            return None
        count, flags, affinity, _ = e.parse_value(master)
        if count == 0:
            return Verdict(frozenset(), "DROP" if flags & e.FLAG_DROP else "REJECT", False)
        endpoints = frozenset(self._slot(key, i) for i in range(1, count + 1))
        if affinity and affinity_to in endpoints:
            endpoints = frozenset({affinity_to})
        # nothing is NATed: the backend sees the socket's own address, which is
        # the node's for the node's processes (as a masquerade would give it)
        return Verdict(endpoints, "ACCEPT", node_origin, endpoints if node_origin else frozenset())

    def _slot(self, key: tuple, i: int) -> str:
        held = self.services[e.service_key(*key, i)]
        addr, port = e.parse_backend(self.backends[e.parse_value(held)[0].to_bytes(4, "little")])
        text = e.text(addr)
        return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"
