"""The nftables compile (netplane/proxy/nftables/compile.py), without a
kernel: a partial compile's mirror is always what a full compile of the
same policies gives, its transaction holds only the differences, shared
chains and affinity objects come and go in the right order, and two ports
claiming one key hand it over cleanly."""
import random

import pytest

from netplane.proxy import build as b
from netplane.proxy.nftables import compile as nc
from netplane.proxy.nftables.context import Context
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.state import snapshot

CTX = Context(4, cluster_cidr="10.244.0.0/16", nodeports=("192.168.200.11",))
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]


def web(name, vip, **spec):
    kind = spec.pop("type", "ClusterIP")
    port = {"name": "http", "port": 80, "protocol": "TCP"}
    if kind != "ClusterIP":
        port["nodePort"] = 30000 + int(vip.rsplit(".", 1)[1])
    return b.service(name, vip, [port], type=kind, **spec)


def endpoints(name, count, base=0):
    return b.endpoint_slice(name, [b.endpoint(f"10.244.{1 + (base + k) % 3}.{10 + base + k}", f"n{1 + (base + k) % 3}")
                                   for k in range(count)], EP_PORTS)


def policies(services, slices):
    snap = snapshot(services, slices)
    return family_policies(snap.ports, 4, Node("n1"))


def mirror(plan):
    """Everything a plan says the kernel holds."""
    return ({m: {k: v for k, (v, _) in t.items()} for m, t in plan.elements.items() if t},
            dict(plan.shapes), dict(plan.own_chains), dict(plan.own_sets))


VARIANTS = [
    {},
    {"sessionAffinity": "ClientIP"},
    {"type": "NodePort", "externalTrafficPolicy": "Local"},
    {"type": "LoadBalancer", "ingress": ["192.0.2.10"], "loadBalancerSourceRanges": ["198.51.100.0/24"]},
    {"type": "NodePort", "internalTrafficPolicy": "Local", "sessionAffinity": "ClientIP"},
    {"externalIPs": ["192.0.2.20"]},
]


@pytest.mark.parametrize("seed", range(8))
def test_partial_compiles_track_full_ones_through_random_changes(seed):
    rnd = random.Random(seed)
    services = {f"s{i}": web(f"s{i}", f"10.96.0.{i + 1}", **rnd.choice(VARIANTS)) for i in range(6)}
    slices = {f"s{i}": endpoints(f"s{i}", rnd.randint(0, 4)) for i in range(6)}
    pol = policies(services.values(), slices.values())
    plan = nc.compile_family(pol, CTX)
    for _ in range(25):
        name = f"s{rnd.randrange(8)}"
        what = rnd.random()
        if what < 0.5:
            slices[name] = endpoints(name, rnd.randint(0, 4), base=rnd.randrange(5))
        elif what < 0.8:
            ip = f"10.96.0.{int(name[1:]) + 1}"
            services[name] = web(name, ip, **rnd.choice(VARIANTS))
        else:
            services.pop(name, None)
        new = policies(services.values(), slices.values())
        changed = {n for n in set(pol) | set(new) if pol.get(n) != new.get(n)}
        plan = nc.compile_family(new, CTX, plan, changed)
        got, want = mirror(plan), mirror(nc.compile_family(new, CTX))
        for part, (g, w) in enumerate(zip(got, want)):
            assert g == w, (part, {k: (g.get(k), w.get(k)) for k in set(g) | set(w) if g.get(k) != w.get(k)})
        pol = new


def test_one_endpoint_change_is_one_element_replaced():
    pol = policies([web("a", "10.96.0.1")], [endpoints("a", 3)])
    plan = nc.compile_family(pol, CTX)
    moved = policies([web("a", "10.96.0.1")], [endpoints("a", 3, base=1)])
    changed = set(moved)
    plan = nc.compile_family(moved, CTX, plan, changed)
    tx = plan.transaction
    assert tx.chains == [] and tx.flush_chains == [] and tx.sets == {}
    # 10.244.1.10 leaves, 10.244.1.13 comes: sorted, it takes slot 0, the others keep theirs
    assert tx.delete_elements == {"backends-tcp": [("10.96.0.1", 80, 0)], "hairpin": [("10.244.1.10", "10.244.1.10")]}
    assert tx.add_elements == {"backends-tcp": [(("10.96.0.1", 80, 0), ("10.244.1.13", 8080))],
                               "hairpin": [(("10.244.1.13", "10.244.1.13"), None)]}


def test_nothing_changed_is_an_empty_transaction():
    pol = policies([web("a", "10.96.0.1")], [endpoints("a", 2)])
    plan = nc.compile_family(pol, CTX)
    plan = nc.compile_family(pol, CTX, plan, set(pol))
    assert plan.transaction.empty()


def test_a_shared_chain_out_of_use_is_flushed_at_once_and_deleted_a_second_later(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(nc, "clock", lambda: now[0])
    pol = policies([web("a", "10.96.0.1")], [endpoints("a", 2)])
    plan = nc.compile_family(pol, CTX)
    three = policies([web("a", "10.96.0.1")], [endpoints("a", 3)])
    plan = nc.compile_family(three, CTX, plan, set(three))
    assert plan.transaction.chains == ["cluster-tcp-3"] and plan.transaction.flush_chains == ["cluster-tcp-2"]
    assert plan.transaction.delete_chains == []
    now[0] += 0.5
    plan = nc.compile_family(three, CTX, plan, set())
    assert plan.transaction.delete_chains == []           # too soon: a kernel before 6.2 would refuse
    now[0] += 0.6
    plan = nc.compile_family(three, CTX, plan, set())
    assert plan.transaction.delete_chains == ["cluster-tcp-2"]
    assert plan.stale == {}


def test_a_chain_reused_before_its_deletion_is_refilled_not_deleted(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(nc, "clock", lambda: now[0])
    two = policies([web("a", "10.96.0.1")], [endpoints("a", 2)])
    three = policies([web("a", "10.96.0.1")], [endpoints("a", 3)])
    plan = nc.compile_family(two, CTX)
    plan = nc.compile_family(three, CTX, plan, set(two))
    plan = nc.compile_family(two, CTX, plan, set(two))
    assert "cluster-tcp-2" in plan.transaction.chains and "cluster-tcp-2" not in plan.stale
    now[0] = 5.0
    plan = nc.compile_family(two, CTX, plan, set())
    assert plan.transaction.delete_chains == ["cluster-tcp-3"]


def test_affinity_objects_of_a_removed_port_are_flushed_then_deleted(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(nc, "clock", lambda: now[0])
    pol = policies([web("a", "10.96.0.1", sessionAffinity="ClientIP")], [endpoints("a", 2)])
    plan = nc.compile_family(pol, CTX)
    owned = set(plan.own_chains)
    assert len(plan.own_sets) == 2 and len(owned) == 4          # 2 endpoints, a pick chain, the svc chain
    plan = nc.compile_family({}, CTX, plan, set(pol))
    assert set(plan.transaction.flush_chains) == owned and plan.transaction.delete_chains == []
    now[0] = 2.0
    plan = nc.compile_family({}, CTX, plan, set())
    assert set(plan.transaction.delete_chains) == owned and len(plan.transaction.delete_sets) == 2


def test_two_ports_claiming_one_external_ip_hand_it_over():
    a = web("a", "10.96.0.1", externalIPs=["192.0.2.20"])
    c = web("c", "10.96.0.3", externalIPs=["192.0.2.20"])
    pol = policies([a, c], [endpoints("a", 1), endpoints("c", 2)])
    plan = nc.compile_family(pol, CTX)
    key = ("192.0.2.20", "tcp", 80)
    assert plan.elements["service-ips"][key][0] == "goto external-tcp-1"         # the first claimant (sorted) keeps it
    rest = policies([c], [endpoints("c", 2)])
    plan = nc.compile_family(rest, CTX, plan, set(pol))
    assert plan.elements["service-ips"][key][0] == "goto external-tcp-2"
    assert (key, "goto external-tcp-2") in plan.transaction.add_elements["service-ips"]
    assert mirror(plan) == mirror(nc.compile_family(rest, CTX))


def test_a_full_compile_removes_leftovers_later(monkeypatch):
    monkeypatch.setattr(nc, "clock", lambda: 0.0)
    pol = policies([web("a", "10.96.0.1")], [endpoints("a", 2)])
    plan = nc.compile_family(pol, CTX, installed={"chains": {"cluster-tcp-7", "services"}, "sets": {"aff-old"}})
    assert plan.transaction.flush_chains == ["cluster-tcp-7"]
    assert set(plan.stale) == {"cluster-tcp-7", "aff-old"}


def test_overlapping_source_ranges_are_merged_for_the_interval_set():
    svc = web("a", "10.96.0.1", type="LoadBalancer", ingress=["192.0.2.10"],
              loadBalancerSourceRanges=["10.0.0.0/8", "10.1.0.0/16", "198.51.100.0/25", "198.51.100.128/25"])
    plan = nc.compile_family(policies([svc], [endpoints("a", 1)]), CTX)
    (fw,) = [rules for name, rules in plan.own_chains.items() if name.startswith("fw-")]
    assert fw == ("ip saddr != { 10.0.0.0/8, 198.51.100.0/24 } drop",)


def test_ipv6_endpoints_and_keys():
    ctx = Context(6, cluster_cidr="fd00:10:244::/56")
    svc = b.service("six", "fd00:96::10", [{"name": "http", "port": 80, "protocol": "TCP"}])
    sl = b.endpoint_slice("six", [b.endpoint("fd00:10:244:2::5", "n2")], EP_PORTS, family=6)
    snap = snapshot([svc], [sl])
    plan = nc.compile_family(family_policies(snap.ports, 6, Node("n1")), ctx)
    assert {k: v for k, (v, _) in plan.elements["backends-tcp"].items()} == {
        ("fd00:96::10", 80, 0): ("fd00:10:244:2::5", 8080)}
