"""iptables syncs against the fake: partial syncs, canary, failures, cleanup, golden text."""
import os
import random

import netaddr
import pytest

from netplane.proxy import build as b
from netplane.proxy.settings import Settings
from netplane.testing.iptables_fake import fake_dataplane
from netplane.proxy.iptables.restore import IptablesError
from netplane.proxy.state import changed, snapshot
from netplane.proxy.policy import Node, family_policies

SETTINGS = Settings(Node("n1"), (netaddr.IPAddress("192.168.200.11"),), (netaddr.IPNetwork("10.244.0.0/16"),))
GOLDEN = {"kube-proxy": os.path.join(os.path.dirname(__file__), "golden", "iptables_basic.txt"),
          "compact": os.path.join(os.path.dirname(__file__), "golden", "iptables_basic_compact.txt")}


def new_backend(layout: str = "compact"):
    return fake_dataplane(SETTINGS, layout)


def views_of(snap):
    return {4: family_policies(snap.ports, 4, SETTINGS.node)}


def cluster(rng: random.Random, n_services: int = 12):
    """A random cluster: mixed service kinds and policies, 0-4 endpoints each."""
    services, slices = [], []
    for i in range(n_services):
        kind = rng.choice(["ClusterIP", "NodePort", "LoadBalancer"])
        port = {"name": "p", "port": 80 + rng.randrange(3), "protocol": rng.choice(["TCP", "UDP"])}
        if kind != "ClusterIP":
            port["nodePort"] = 30000 + i
        spec = {"externalTrafficPolicy": rng.choice(["Cluster", "Local"])} if kind != "ClusterIP" else {}
        if rng.random() < 0.3:
            spec["sessionAffinity"] = "ClientIP"
        if kind == "LoadBalancer":
            spec["ingress"] = [f"192.0.2.{i}"]
            if rng.random() < 0.5:
                spec["loadBalancerSourceRanges"] = ["198.51.100.0/24"]
        services.append(b.service(f"s{i}", f"10.96.0.{i + 1}", [port], type=kind, **spec))
        eps = [b.endpoint(f"10.244.{rng.randrange(1, 3)}.{rng.randrange(2, 250)}", rng.choice(["n1", "n2"]),
                          ready=rng.random() < 0.8) for _ in range(rng.randrange(5))]
        slices.append(b.endpoint_slice(f"s{i}", eps, [{"name": "p", "port": 8080, "protocol": port["protocol"]}]))
    return services, slices


@pytest.mark.parametrize("seed", range(6))
def test_partial_syncs_reach_exactly_what_a_full_sync_builds(seed):
    rng = random.Random(seed)
    backend = new_backend()
    services, slices = cluster(rng)
    snap = snapshot(services, slices)
    backend.sync(views_of(snap), None)
    for _ in range(15):
        new_services, new_slices = cluster(rng)
        # change a few services, keep the rest as they were
        for i in rng.sample(range(len(services)), 3):
            services[i], slices[i] = new_services[i], new_slices[i]
        if rng.random() < 0.3:
            services.pop()
        new = snapshot(services, slices)
        backend.sync(views_of(new), changed(snap.ports, new.ports))
        assert not backend.last_full
        snap = new
        reference = new_backend()
        reference.sync(views_of(snap), None)
        assert backend.appliers[4].runner.tables == reference.appliers[4].runner.tables


def test_a_partial_sync_writes_only_the_changed_service():
    services = [b.service(f"s{i}", f"10.96.0.{i + 1}", [{"port": 80}]) for i in range(20)]
    slices = [b.endpoint_slice(f"s{i}", [f"10.244.1.{i + 2}"], [{"port": 8080}]) for i in range(20)]
    backend = new_backend()
    before = snapshot(services, slices)
    backend.sync(views_of(before), None)
    slices[7] = b.endpoint_slice("s7", ["10.244.1.9", "10.244.2.9"], [{"port": 8080}])
    after = snapshot(services, slices)
    backend.sync(views_of(after), changed(before.ports, after.ports))
    text = backend.appliers[4].runner.restores[-1]
    assert "default/s7" in text and "default/s6" not in text and "default/s8" not in text
    assert "*filter" not in text and ":NP-SERVICES" not in text      # top-level chains did not change


def test_nothing_changed_means_no_restore_at_all():
    backend = new_backend()
    snap = snapshot([b.service("s", "10.96.0.1", [{"port": 80}])], [])
    backend.sync(views_of(snap), None)
    count = len(backend.appliers[4].runner.restores)
    backend.sync(views_of(snap), set())
    assert len(backend.appliers[4].runner.restores) == count


@pytest.mark.parametrize("damage", ["flush_everything", "flush_nat", "flush_filter"])
def test_flushed_or_deleted_chains_are_noticed_and_rebuilt_in_full(damage):
    """`iptables -F; -X` deletes our chains; `iptables -t nat -F` only empties
    them (an empty canary chain would survive it)."""
    backend = new_backend()
    before = snapshot(*cluster(random.Random(1)))
    backend.sync(views_of(before), None)
    good = {t: {n: list(r) for n, r in c.items()} for t, c in backend.appliers[4].runner.tables.items()}
    backend.sync(views_of(before), set())
    assert not backend.last_full
    runner = backend.appliers[4].runner
    runner.flush_everything() if damage == "flush_everything" else runner.flush_chains(damage.split("_")[1])
    backend.sync(views_of(before), set())
    assert backend.last_full
    assert backend.appliers[4].runner.tables == good


def test_after_a_failed_apply_the_next_sync_is_full():
    backend = new_backend()
    services, slices = cluster(random.Random(2))
    before = snapshot(services, slices)
    backend.sync(views_of(before), None)
    services.pop(0)
    after = snapshot(services, slices)
    backend.appliers[4].runner.fail_next = "iptables-restore: line 3 failed"
    with pytest.raises(IptablesError):
        backend.sync(views_of(after), changed(before.ports, after.ports))
    backend.sync(views_of(after), set())          # the next sync, whatever it was asked, is full
    assert backend.last_full
    reference = new_backend()
    reference.sync(views_of(after), None)
    assert backend.appliers[4].runner.tables == reference.appliers[4].runner.tables


def test_a_full_sync_deletes_leftover_netplane_chains_and_nothing_else():
    backend = new_backend()
    fake = backend.appliers[4].runner
    fake.restore("*nat\n:NP-SVC-LEFTOVER - [0:0]\n:KUBE-SVC-THEIRS - [0:0]\n:MY-CHAIN - [0:0]\nCOMMIT\n")
    backend.sync(views_of(snapshot([b.service("s", "10.96.0.1", [{"port": 80}])], [])), None)
    assert "NP-SVC-LEFTOVER" not in fake.tables["nat"]
    assert {"KUBE-SVC-THEIRS", "MY-CHAIN"} <= set(fake.tables["nat"])


def test_cleanup_removes_every_netplane_chain_and_jump():
    backend = new_backend()
    fake = backend.appliers[4].runner
    fake.restore("*filter\n:MY-CHAIN - [0:0]\n-A INPUT -j MY-CHAIN\nCOMMIT\n")
    backend.sync(views_of(snapshot(*cluster(random.Random(3)))), None)
    removed = backend.cleanup()
    assert any("NP-SERVICES" in r for r in removed)
    assert all(not n.startswith("NP-") for t in fake.tables.values() for n in t)
    assert all("NP-" not in r for t in fake.tables.values() for rules in t.values() for r in rules)
    assert fake.tables["filter"]["INPUT"] == ["-A INPUT -j MY-CHAIN"]


def test_dry_run_is_the_full_plan():
    backend = new_backend()
    snap = snapshot(*cluster(random.Random(4)))
    text = backend.dry_run(views_of(snap))
    assert text.startswith("# iptables-restore --noflush\n*filter\n")
    backend.sync(views_of(snap), None)
    assert text.split("\n", 1)[1] == backend.appliers[4].runner.restores[0]


@pytest.mark.parametrize("layout", ["kube-proxy", "compact"])
def test_golden_text_for_a_small_cluster(layout):
    """The exact text for a fixed cluster: any change to the rule layout shows
    up here as a diff to review (and the Cython path must match it byte for byte)."""
    services = [
        b.service("web", "10.96.0.10", [{"name": "http", "port": 80, "nodePort": 30080}], type="LoadBalancer",
                  ingress=["192.0.2.10"], loadBalancerSourceRanges=["198.51.100.0/24"],
                  externalTrafficPolicy="Local", sessionAffinity="ClientIP"),
        b.service("dns", "10.96.0.53", [{"name": "dns", "port": 53, "protocol": "UDP"}]),
        b.service("api", "10.96.0.1", [{"name": "https", "port": 443}], externalIPs=["192.0.2.20"],
                  internalTrafficPolicy="Local"),
        b.service("cache", "10.96.0.20", [{"name": "redis", "port": 6379}], sessionAffinity="ClientIP"),
    ]
    slices = [b.endpoint_slice("web", [b.endpoint("10.244.1.5", "n1"), b.endpoint("10.244.2.5", "n2")],
                               [{"name": "http", "port": 8080}]),
              b.endpoint_slice("api", [b.endpoint("10.244.2.6", "n2")], [{"name": "https", "port": 6443}]),
              # here, elsewhere, and nowhere known: only the one elsewhere loses its SEP chain when compact
              b.endpoint_slice("cache", [b.endpoint("10.244.1.7", "n1"), b.endpoint("10.244.2.7", "n2"),
                                         b.endpoint("10.244.3.7")], [{"name": "redis", "port": 6379}])]
    text = new_backend(layout).dry_run(views_of(snapshot(services, slices)))
    if os.environ.get("NETPLANE_UPDATE_GOLDEN"):
        with open(GOLDEN[layout], "w") as f:
            f.write(text)
    with open(GOLDEN[layout]) as f:
        assert text == f.read()


def test_a_partial_compile_rebuilds_top_level_chains_only_when_a_ports_share_of_them_moves():
    from netplane.proxy.iptables.compile import compile_family
    from netplane.proxy.iptables.mode import IptablesOptions, context
    from netplane.proxy.settings import EVERY_LOCAL_ADDRESS

    services = [b.service(f"s{i}", f"10.96.1.{i + 1}", [{"port": 80}]) for i in range(50)]
    slices = [b.endpoint_slice(f"s{i}", [f"10.244.1.{i + 2}", f"10.244.2.{i + 2}"], [{"port": 8080}])
              for i in range(50)]
    ctx = context(SETTINGS, IptablesOptions(), 4, EVERY_LOCAL_ADDRESS)
    before = snapshot(services, slices)
    plan = compile_family(views_of(before)[4], ctx)
    slices[7] = b.endpoint_slice("s7", ["10.244.1.9"], [{"port": 8080}])        # one endpoint fewer
    after = snapshot(services, slices)
    plan = compile_family(views_of(after)[4], ctx, previous=plan, changed=changed(before.ports, after.ports))
    assert plan.written["filter"] == [] and all(n.startswith(("NP-SVC-", "NP-SEP-")) for n in plan.written["nat"])
    assert len(plan.deleted["nat"]) == 1                      # the SEP chain of the endpoint that left
    services.append(b.service("new", "10.96.2.1", [{"port": 80}]))              # no endpoints: a REJECT rule
    before, after = after, snapshot(services, slices)
    plan = compile_family(views_of(after)[4], ctx, previous=plan, changed=changed(before.ports, after.ports))
    assert plan.written == {"filter": [], "nat": []} and plan.edited == {"filter": ["NP-SERVICES"]}
    assert [line.split()[:3] for line in plan.text.splitlines() if line.startswith("-I")] == [
        ["-I", "NP-SERVICES", "1"]]                                # the filter chain was empty: its first rule
    assert plan.chains() == compile_family(views_of(after)[4], ctx).chains()


def _tables(services, slices, layout):
    plane = new_backend(layout)
    plane.sync(views_of(snapshot(services, slices)), None)
    return plane.appliers[4].runner.tables


WEB_PORTS, WEB_EP_PORTS = [{"name": "http", "port": 80}], [{"name": "http", "port": 8080}]


@pytest.mark.parametrize("layout", ["compact", "kube-proxy"])
def test_compact_layout_keeps_sep_chains_only_where_hairpin_can_happen(layout):
    eps = [b.endpoint("10.244.1.5", "n1"), b.endpoint("10.244.2.5", "n2"), b.endpoint("10.244.3.5")]
    slices = [b.endpoint_slice("web", eps, WEB_EP_PORTS)]

    def sep_chains(**spec):
        tables = _tables([b.service("web", "10.96.0.10", [dict(WEB_PORTS[0], nodePort=30080)]
                                    if spec else WEB_PORTS, **spec)], slices, layout)
        return sum(name.startswith("NP-SEP-") for name in tables["nat"])
    assert sep_chains(type="NodePort", externalTrafficPolicy="Local") == 3
    assert sep_chains() == (2 if layout == "compact" else 3)      # here, and on no node we know of


def test_affinity_rules_check_the_services_timeout():
    tables = _tables([b.service("web", "10.96.0.10", WEB_PORTS, sessionAffinity="ClientIP")],
                     [b.endpoint_slice("web", ["10.244.2.5", "10.244.2.6"], WEB_EP_PORTS)], "compact")
    checks = [r.split() for rules in tables["nat"].values() for r in rules if "--rcheck" in r]
    assert len(checks) == 2 and all(r[r.index("--seconds") + 1] == "10800" for r in checks)
