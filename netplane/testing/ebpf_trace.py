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
the affinity map remembers gets its backend. Verdict.branches adds each
backend's chance (its share of the slots, or of the Maglev table) and the
map entries looked up, for `netplane explain`."""
import struct

import netaddr

from netplane.proxy.ebpf import entries as e
from netplane.testing.verdict import Branch, Verdict

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
        steps = (_entry("services (socket lookup at connect)", key, count, flags),)
        if count == 0:
            return _refused(flags, steps)
        picks = [_text(*self.backend(key, i)[:2]) for i in range(1, count + 1)]
        if affinity and affinity_to in picks:
            picks = [affinity_to]
        endpoints = frozenset(picks)
        # nothing is NATed: the backend sees the socket's own address, which is
        # the node's for the node's processes (as a masquerade would give it)
        why = ("the socket is the node's own: the backend sees the node's address",) if node_origin else ()
        return Verdict(endpoints, "ACCEPT", node_origin, endpoints if node_origin else frozenset(),
                       _shares(picks, lambda ep: node_origin, steps + why))

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
        steps = (_entry("services (tc, a packet from another machine)", key, count, flags),)
        if flags & e.FLAG_FIREWALL and not self._allowed(src, port_id):
            return Verdict(frozenset(), "DROP", False, frozenset(),
                           (Branch("", "DROP", False, 1.0, steps + (f"source_ranges: no range of port {port_id} "
                                                                   f"holds {src}",)),))
        if count == 0:
            return _refused(flags, steps)
        maglev = key[3] & e.SCOPE_EXTERNAL
        ids = self._table_slots(port_id) if maglev else \
            [e.parse_value(self.services[e.service_key(*key, i)])[0] for i in range(1, count + 1)]
        backends, picks = {}, []
        for backend_id in ids:
            addr, bport, local = e.parse_backend(self.backends[backend_id.to_bytes(4, "little")])
            backends[_text(addr, bport)] = not (flags & e.FLAG_LOCAL) and not local     # SNATed?
            picks.append(_text(addr, bport))
        if affinity and affinity_to in backends:
            backends, picks = {affinity_to: backends[affinity_to]}, [affinity_to]
        snat = frozenset(ep for ep, yes in backends.items() if yes)
        steps += (f"maglev table of port {port_id}: {len(ids)} slots",) if maglev else ()
        return Verdict(frozenset(backends), "ACCEPT", len(snat) == len(backends), snat,
                       _shares(picks, backends.get, steps, "SNAT (masquerade): the backend is on another node, "
                                                           "under externalTrafficPolicy Cluster"))

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

    def _table_slots(self, port_id: int) -> list[int]:
        """The backend id in every slot of the port's Maglev table."""
        table = self.tables.of(port_id)
        assert table is not None, f"a master names port {port_id}, which has no Maglev table"
        return list(struct.unpack(f"={len(table) // 4}I", table))


def _entry(where: str, key: tuple, count: int, flags: int) -> str:
    addr, port, proto, scope = key
    names = [n for bit, n in ((e.FLAG_DROP, "drop"), (e.FLAG_LOCAL, "local"), (e.FLAG_FIREWALL, "firewall"))
             if flags & bit]
    scopes = [n for bit, n in ((e.SCOPE_EXTERNAL, "external"), (e.SCOPE_NODEPORT, "nodeport")) if scope & bit]
    proto_name = next((n for n, number in PROTO.items() if number == proto), str(proto))
    return (f"{where}: {_text(addr, port)}/{proto_name} scope {'+'.join(scopes) or 'cluster'}: "
            f"{count} backend(s), flags {','.join(names) or 'none'}")


def _refused(flags: int, steps: tuple) -> Verdict:
    verdict = "DROP" if flags & e.FLAG_DROP else "REJECT"
    return Verdict(frozenset(), verdict, False, frozenset(), (Branch("", verdict, False, 1.0, steps),))


def _shares(picks: list[str], snat, steps: tuple, why: str = "") -> tuple:
    """A branch per backend, its chance its share of the slots a pick is made from."""
    out = []
    for ep in dict.fromkeys(picks):
        masq = bool(snat(ep))
        out.append(Branch(ep, "ACCEPT", masq, picks.count(ep) / len(picks), steps + ((why,) if masq and why else ())))
    return tuple(out)
