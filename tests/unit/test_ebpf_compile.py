"""The eBPF compile (netplane/proxy/ebpf/compile.py), without a kernel:
updates applied in their order never leave a lookup a dangling slot or
backend, partial compiles end where a full one does (ids aside), a freed
backend id waits a sync before it is reused, and a full compile over what
the maps already hold rewrites only the difference, keeping port ids."""
import random

import pytest

from netplane.proxy import build as b
from netplane.proxy.ebpf import compile as ec
from netplane.proxy.ebpf import entries as e
from netplane.proxy.ebpf import maglev
from netplane.proxy.ebpf import view
from netplane.proxy.ebpf.context import Context
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.state import snapshot
from netplane.testing.ebpf import DictMap, FakeTables

CTX = Context(4, nodeports=("192.168.200.11", "127.0.0.1"))
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]


class Maps:
    """The kernel's maps, written step by step in the appliers' order
    (Updates.steps), each step checked as a concurrent lookup would see it:
    no dangling slot or backend, no external master without its table."""

    def __init__(self):
        self.services, self.backends, self.nodeports = DictMap(), DictMap(), DictMap()
        self.source_ranges, self.digests, self.tables = DictMap(), DictMap(), FakeTables()

    def apply(self, u: ec.Updates):
        for name, op, entries in u.steps():
            if name == "tables":
                for port_id, table in entries.items():
                    if op == "update":
                        self.tables.write_tables(table.size, [(port_id, bytes(4 * table.size))])
                    else:
                        self.tables.delete_tables(table, [port_id])
            else:
                getattr(getattr(self, name), op)(entries)
            assert view.consistent(self.services, self.backends) is None
            assert self.missing_table() is None

    def missing_table(self):
        for key, value in self.services.items():
            _, _, _, scope, slot = e.parse_key(key)
            count, flags, _, port_id = e.parse_value(value)
            if scope & e.SCOPE_EXTERNAL and not slot and count:
                size = maglev.SIZES[(flags >> e.LUT_SHIFT) & 0xFF]
                if (size, port_id) not in self.tables:
                    return f"port {port_id} has no table of {size} slots"
        return None

    def installed(self):
        return {"services": dict(self.services), "backends": dict(self.backends),
                "source_ranges": dict(self.source_ranges)}


def svc(i, **spec):
    kind = spec.pop("type", "ClusterIP")
    port = {"name": "http", "port": 80, "protocol": "TCP"}
    if kind != "ClusterIP":
        port["nodePort"] = 30000 + i
    return b.service(f"s{i}", f"10.96.0.{i + 1}", [port], type=kind, **spec)


def eps(i, count, base=0):
    return b.endpoint_slice(f"s{i}", [b.endpoint(f"10.244.{1 + k % 2}.{10 + base + k}", f"n{1 + k % 2}")
                                      for k in range(count)], EP_PORTS)


def policies(services, slices):
    return family_policies(snapshot(services, slices).ports, 4, Node("n1"))


VARIANTS = [{}, {"sessionAffinity": "ClientIP"}, {"type": "NodePort", "externalTrafficPolicy": "Local"},
            {"internalTrafficPolicy": "Local"}, {"externalIPs": ["192.0.2.20"]}]


@pytest.mark.parametrize("seed", range(8))
def test_partial_compiles_end_where_a_full_one_does_and_lookups_never_dangle(seed):
    rnd = random.Random(seed)
    services = {i: svc(i, **rnd.choice(VARIANTS)) for i in range(5)}
    slices = {i: eps(i, rnd.randint(0, 4)) for i in range(5)}
    pol = policies(services.values(), slices.values())
    maps = Maps()
    plan = ec.compile_family(pol, CTX)
    maps.apply(plan.updates)
    for _ in range(30):
        i = rnd.randrange(7)
        if rnd.random() < 0.6:
            slices[i] = eps(i, rnd.randint(0, 5), base=rnd.randrange(4))
        elif rnd.random() < 0.7:
            services[i] = svc(i, **rnd.choice(VARIANTS))
        else:
            services.pop(i, None)
        new = policies(services.values(), slices.values())
        plan = ec.compile_family(new, CTX, plan, {n for n in set(pol) | set(new) if pol.get(n) != new.get(n)})
        maps.apply(plan.updates)
        fresh = ec.compile_family(new, CTX)
        assert view.resolved(maps.services, maps.backends) == view.resolved(fresh.services, fresh.backends)
        assert maps.services == plan.services and maps.backends == plan.backends
        pol = new


def test_no_endpoints_refuses_and_a_local_policy_without_local_endpoints_drops():
    pol = policies([svc(0), svc(1, internalTrafficPolicy="Local")], [eps(1, 1)])     # s1's endpoint is on n2? k=0 -> n1
    plan = ec.compile_family(pol, CTX)
    got = view.resolved(plan.services, plan.backends)
    assert got[("10.96.0.1", 80, 6, 0)] == (0, 0, 0, ())                    # REJECT: ECONNREFUSED
    remote = policies([svc(1, internalTrafficPolicy="Local")],
                      [b.endpoint_slice("s1", [b.endpoint("10.244.2.5", "n2")], EP_PORTS)])
    got = view.resolved(*_maps(ec.compile_family(remote, CTX)))
    assert got[("10.96.0.2", 80, 6, 0)] == (0, 1, 0, ())                    # DROP: EPERM


def _maps(plan):
    return plan.services, plan.backends


def test_node_ports_are_keyed_without_an_address_and_use_every_endpoint_from_inside():
    pol = policies([svc(3, type="NodePort", externalTrafficPolicy="Local")],
                   [b.endpoint_slice("s3", [b.endpoint("10.244.2.5", "n2")], EP_PORTS)])
    got = view.resolved(*_maps(ec.compile_family(pol, CTX)))
    assert got[("0.0.0.0", 30003, 6, 1)] == (1, 0, 0, ("10.244.2.5:8080",))   # pods and the node short-circuit


def test_a_freed_backend_id_waits_one_sync_before_reuse():
    a = policies([svc(0)], [eps(0, 1)])
    plan = ec.compile_family(a, CTX)
    (old_id,) = plan.backend_ids.values()
    moved = policies([svc(0)], [eps(0, 1, base=5)])
    plan = ec.compile_family(moved, CTX, plan, set(moved))
    assert old_id not in plan.backend_ids.values() and old_id in plan.freed
    again = policies([svc(0)], [eps(0, 1, base=9)])
    plan = ec.compile_family(again, CTX, plan, set(again))
    assert old_id in plan.backend_ids.values()                              # free again one sync later


def test_a_full_compile_over_the_maps_rewrites_only_the_difference_and_keeps_port_ids():
    pol = policies([svc(0, sessionAffinity="ClientIP"), svc(1)], [eps(0, 2), eps(1, 3)])
    maps = Maps()
    first = ec.compile_family(pol, CTX)
    maps.apply(first.updates)
    again = ec.compile_family(pol, CTX, installed=maps.installed())          # a restarted proxy
    assert again.updates.masters == {} and again.updates.slots == {} and again.updates.backends == {}
    assert again.port_ids == first.port_ids
    changed = policies([svc(0, sessionAffinity="ClientIP")], [eps(0, 2)])
    later = ec.compile_family(changed, CTX, installed=maps.installed())
    maps.apply(later.updates)
    assert set(view.resolved(maps.services, maps.backends)) == {("10.96.0.1", 80, 6, 0)}
    assert maps.backends == later.backends


def test_both_families_share_the_maps_without_meeting():
    """Each family's proxy keeps to its keys: a full compile of one leaves
    the other's entries alone, and their ids never collide."""
    dual = b.service("d", ["10.96.0.9", "fd00:96::9"], [{"name": "http", "port": 80, "protocol": "TCP",
                                                           "nodePort": 30009}], type="NodePort")
    slices = [b.endpoint_slice("d", ["10.244.1.5"], EP_PORTS),
              b.endpoint_slice("d", ["fd00:10:244:1::5"], EP_PORTS, family=6)]
    snap = snapshot([dual], slices)
    maps = Maps()
    four = ec.compile_family(family_policies(snap.ports, 4, Node("n1")), CTX)
    maps.apply(four.updates)
    six = ec.compile_family(family_policies(snap.ports, 6, Node("n1")), Context(6, ("::1",)),
                            installed=maps.installed())
    maps.apply(six.updates)
    got = view.resolved(maps.services, maps.backends)
    assert got[("0.0.0.0", 30009, 6, 1)][3] == ("10.244.1.5:8080",)
    assert got[("::", 30009, 6, 1)][3] == ("fd00:10:244:1::5:8080",)
    assert not set(four.backend_ids.values()) & set(six.backend_ids.values())


def test_sockets_left_on_a_backend_that_left_their_service_are_picked_by_cookie():
    """UDP sockets whose backend left the Service they dialled; TCP ones only
    when the backend is gone for good; a socket to the same backend through
    another Service, or dialled directly, is not in the revnat map's match."""
    from netplane.proxy.ebpf import sockets

    def revnat(orig, port, backend, bport):
        return e.address(orig) + port.to_bytes(2, "big") + bytes(2) + e.address(backend) + \
            bport.to_bytes(2, "big") + bytes(2)

    old = (e.address("10.244.1.5"), 8080)
    where = (e.address("10.96.0.1"), 53, 17, 0)
    held = {(1).to_bytes(8, "little"): revnat("10.96.0.1", 53, "10.244.1.5", 8080),      # left its Service
            (2).to_bytes(8, "little"): revnat("10.96.0.2", 53, "10.244.1.5", 8080),      # another Service
            (3).to_bytes(8, "little"): revnat("10.96.0.1", 53, "10.244.1.6", 8080)}      # another backend
    udp, tcp = sockets.stale(held, [(where, old)], set())
    assert udp == {1: ("10.244.1.5", 8080)} and tcp == {}
    udp, tcp = sockets.stale(held, [], {old})
    assert udp == {} and set(tcp) == {1, 2}


# -- traffic from other machines: external keys, Maglev tables, source ranges ----------

def _external(plan, port):
    """The node port's external master: (count, flags, affinity, port id)."""
    key = e.service_key(e.ANY[4], port, 6, e.SCOPE_EXTERNAL | e.SCOPE_NODEPORT)
    return e.parse_value(plan.services[key])


def test_a_changed_service_recomputes_only_its_own_table():
    pol = policies([svc(1, type="NodePort"), svc(2, type="NodePort")], [eps(1, 3), eps(2, 3)])
    plan = ec.compile_family(pol, CTX)
    assert set(plan.updates.tables) == {plan.port_ids[n] for n in pol}
    changed = policies([svc(1, type="NodePort"), svc(2, type="NodePort")], [eps(1, 3), eps(2, 4)])
    name = next(n for n in changed if n.name == "s2")
    plan = ec.compile_family(changed, CTX, plan, {name})
    assert list(plan.updates.tables) == [plan.port_ids[name]]
    assert len(plan.updates.tables[plan.port_ids[name]].endpoints) == 4


def test_a_restart_rewrites_no_table_whose_digest_the_kernel_holds():
    pol = policies([svc(1, type="NodePort"), svc(2, type="LoadBalancer", ingress=["192.0.2.10"],
                                                 loadBalancerSourceRanges=["198.51.100.0/24"])],
                   [eps(1, 3), eps(2, 2)])
    first = ec.compile_family(pol, CTX)
    installed = {"services": dict(first.services), "backends": dict(first.backends), "digests": dict(first.digests),
                 "source_ranges": dict(first.updates.ranges)}
    again = ec.compile_family(pol, CTX, installed=installed)
    assert again.updates.tables == {} and again.updates.tables_deleted == {}
    assert again.updates.ranges == {} and again.updates.ranges_deleted == []
    gone = policies([svc(1, type="NodePort")], [eps(1, 3)])
    later = ec.compile_family(gone, CTX, installed=installed)
    s2 = first.port_ids[next(n for n in pol if n.name == "s2")]
    assert later.updates.tables_deleted == {s2: maglev.DEFAULT_SIZE}
    assert sorted(later.updates.ranges_deleted) == sorted(installed["source_ranges"])


def test_external_keys_use_the_external_endpoints_and_say_local_and_firewall():
    local = policies([svc(3, type="NodePort", externalTrafficPolicy="Local")], [eps(3, 4)])
    plan = ec.compile_family(local, Context(4, ("192.168.200.11",), node="n1"))
    count, flags, _, port_id = _external(plan, 30003)
    assert count == 2 and flags & e.FLAG_LOCAL                  # n1's two of the four
    assert {ep[2] for ep in plan.tables[next(iter(local))].endpoints} == {True}
    lb = policies([svc(4, type="LoadBalancer", ingress=["192.0.2.10"], loadBalancerSourceRanges=["198.51.100.0/24"])],
                  [eps(4, 2)])
    plan = ec.compile_family(lb, CTX)
    master = e.parse_value(plan.services[e.service_key(e.address("192.0.2.10"), 80, 6, e.SCOPE_EXTERNAL)])
    assert master[1] & e.FLAG_FIREWALL and not _external(plan, 30004)[1] & e.FLAG_FIREWALL   # the LB IP only
    (key,) = plan.updates.ranges
    assert e.parse_range_key(key) == (master[3], e.address("198.51.100.0"), 96 + 24)


def test_compact_tables_are_sized_per_service():
    pol = policies([svc(1, type="NodePort"), svc(2, type="NodePort")], [eps(1, 2), eps(2, 30)])
    plan = ec.compile_family(pol, Context(4, ("192.168.200.11",), maglev_compact=True))
    sizes = {n.name: t.size for n, t in plan.tables.items()}
    assert sizes == {"s1": 251, "s2": 4093}
    assert (_external(plan, 30002)[1] >> e.LUT_SHIFT) & 0xFF == maglev.SIZES.index(4093)
