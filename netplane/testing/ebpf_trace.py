"""Map-level tracers for the eBPF mode, over the compiled map entries
(bytes, as the kernel holds them):

- SocketTracer: the lookup bpf/sock_lb.c makes at connect() or sendmsg(),
  for sockets on the node;
- PacketTracer: the one bpf/tc_lb.c makes for a new flow from another
  machine: the frontend (external scope, then a cluster IP, then a node
  port on a node-port address), the source ranges, the refusal, the
  backends the Maglev table (or, for a cluster IP, the slots) names, and
  which of them are reached with SNAT.

Each answers as the program does: every backend a pick may take, or the
refusal (count 0: ECONNREFUSED or an ICMP unreachable; DROP with the drop
flag), or "not a Service" (untouched). With ClientIP affinity, a client
the affinity map remembers gets its backend."""
import struct

import netaddr

from netplane.proxy.ebpf import entries as e
from netplane.testing.verdict import Verdict

PROTO = {"tcp": 6, "udp": 17}
NOT_A_SERVICE = Verdict(frozenset(), "ACCEPT", False)


def _text(addr: bytes, port: int) -> str:
    text = e.text(addr)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


class SocketTracer:
    def __init__(self, services: dict[bytes, bytes], backends: dict[bytes, bytes], nodeports: set[bytes]) -> None:
        self.services, self.backends, self.nodeports = services, backends, nodeports

    def connect(self, proto: str, dst: str, port: int, node_origin: bool, affinity_to: str | None = None) -> Verdict:
        if proto not in PROTO:
            return NOT_A_SERVICE
        addr = e.address(dst)
        key = (addr, port, PROTO[proto], 0)
        master = self.services.get(e.service_key(*key))
        if master is None and e.nodeport_key(addr) in self.nodeports:
            key = (e.ANY[e.family(addr)], port, PROTO[proto], e.SCOPE_NODEPORT)
            master = self.services.get(e.service_key(*key))
        if master is None:
            return NOT_A_SERVICE
        count, flags, affinity, _ = e.parse_value(master)
        if count == 0:
            return Verdict(frozenset(), "DROP" if flags & e.FLAG_DROP else "REJECT", False)
        endpoints = frozenset(_text(*self.backend(key, i)[:2]) for i in range(1, count + 1))
        if affinity and affinity_to in endpoints:
            endpoints = frozenset({affinity_to})
        # nothing is NATed: the backend sees the socket's own address, which is
        # the node's for the node's processes (as a masquerade would give it)
        return Verdict(endpoints, "ACCEPT", node_origin, endpoints if node_origin else frozenset())

    def backend(self, key: tuple, i: int) -> tuple[bytes, int, bool]:
        held = self.services[e.service_key(*key, i)]
        return e.parse_backend(self.backends[e.parse_value(held)[0].to_bytes(4, "little")])


class PacketTracer(SocketTracer):
    def __init__(self, services, backends, nodeports, ranges: dict[bytes, bytes], tables) -> None:
        super().__init__(services, backends, nodeports)
        self.ranges, self.tables = ranges, tables

    def arrive(self, src: str, proto: str, dst: str, port: int, affinity_to: str | None = None) -> Verdict:
        if proto not in PROTO:
            return NOT_A_SERVICE
        found = self._frontend(e.address(dst), port, PROTO[proto])
        if found is None:
            return NOT_A_SERVICE
        key, master = found
        count, flags, affinity, port_id = e.parse_value(master)
        if flags & e.FLAG_FIREWALL and not self._allowed(src, port_id):
            return Verdict(frozenset(), "DROP", False)
        if count == 0:
            return Verdict(frozenset(), "DROP" if flags & e.FLAG_DROP else "REJECT", False)
        ids = self._table_ids(port_id) if key[3] & e.SCOPE_EXTERNAL else \
            [e.parse_value(self.services[e.service_key(*key, i)])[0] for i in range(1, count + 1)]
        backends = {}
        for backend_id in ids:
            addr, bport, local = e.parse_backend(self.backends[backend_id.to_bytes(4, "little")])
            backends[_text(addr, bport)] = not (flags & e.FLAG_LOCAL) and not local     # SNATed?
        if affinity and affinity_to in backends:
            backends = {affinity_to: backends[affinity_to]}
        snat = frozenset(ep for ep, yes in backends.items() if yes)
        return Verdict(frozenset(backends), "ACCEPT", len(snat) == len(backends), snat)

    def _frontend(self, addr: bytes, port: int, proto: int):
        for key in ((addr, port, proto, e.SCOPE_EXTERNAL), (addr, port, proto, 0)):
            master = self.services.get(e.service_key(*key))
            if master is not None:
                return key, master
        if e.nodeport_key(addr) in self.nodeports:
            key = (e.ANY[e.family(addr)], port, proto, e.SCOPE_EXTERNAL | e.SCOPE_NODEPORT)
            master = self.services.get(e.service_key(*key))
            if master is not None:
                return key, master
        return None

    def _allowed(self, src: str, port_id: int) -> bool:
        ip = netaddr.IPAddress(src)
        for key in self.ranges:
            owner, addr, plen = e.parse_range_key(key)
            net = netaddr.IPNetwork((int.from_bytes(addr, "big"), plen), version=6)
            if owner == port_id and netaddr.IPAddress(ip.ipv6(ipv4_compatible=False)) in net:
                return True
        return False

    def _table_ids(self, port_id: int) -> set[int]:
        table = self.tables.of(port_id)
        assert table is not None, f"a master names port {port_id}, which has no Maglev table"
        return set(struct.unpack(f"={len(table) // 4}I", table))
