"""FakeNft (netplane/testing/nftables_fake.py) refuses what the kernel
would, atomically, and the tracer over it (nftables_trace.py) follows every
random choice: the semantic suite trusts both, so they are checked here."""
import random

import netaddr
import pytest

from netplane.proxy import build as b
from netplane.proxy.nftables import compile as nc
from netplane.proxy.nftables.mode import NftablesApplier
from netplane.proxy.nftables.runner import NftError
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.settings import Settings
from netplane.proxy.state import changed, snapshot
from netplane.testing.nftables import fake_dataplane
from netplane.testing.nftables_fake import FakeNft
from netplane.testing.nftables_trace import Tracer

AT = "ip netplane"
BASE = f"""add table {AT}
add chain {AT} nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain {AT} filter-input {{ type filter hook input priority -10; policy accept; }}
add chain {AT} services
add map {AT} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
add map {AT} backends {{ typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport; }}
add rule {AT} nat-prerouting jump services
add rule {AT} services ip daddr . meta l4proto . th dport vmap @service-ips
"""


def kernel(script: str = "") -> FakeNft:
    fake = FakeNft()
    fake.run(BASE + script)
    return fake


def refused(fake: FakeNft, script: str, why: str) -> None:
    """The script fails with the kernel's reason, and changes nothing."""
    before, scripts = repr(fake.tables), len(fake.scripts)
    with pytest.raises(NftError, match=why):
        fake.run(script)
    assert repr(fake.tables) == before and len(fake.scripts) == scripts


def test_a_jump_or_goto_to_a_missing_chain_is_refused_in_a_rule_and_in_a_verdict_map():
    fake = kernel()
    refused(fake, f"add rule {AT} services jump nowhere\n", "missing chain nowhere")
    refused(fake, f"add element {AT} service-ips {{ 10.96.0.1 . tcp . 80 : goto nowhere }}\n", "missing chain")
    refused(fake, f"add rule {AT} services jump nat-prerouting\n", "base chain")
    fake.run(f"add chain {AT} nowhere\nadd rule {AT} services jump nowhere\n")      # declared first: fine


def test_an_element_held_with_another_value_is_refused_and_the_same_one_is_not():
    fake = kernel(f"add chain {AT} a\nadd chain {AT} b\nadd element {AT} service-ips {{ 10.96.0.1 . tcp . 80 : goto a }}\n")
    refused(fake, f"add element {AT} service-ips {{ 10.96.0.1 . tcp . 80 : goto b }}\n", "File exists")
    fake.run(f"add element {AT} service-ips {{ 10.96.0.1 . tcp . 80 : goto a }}\n")
    refused(fake, f"delete element {AT} service-ips {{ 10.96.0.2 . tcp . 80 }}\n", "no element")
    refused(fake, f"add element {AT} service-ips {{ 10.96.0.2 . tcp : goto a }}\n", "key fields")
    refused(fake, f"add element {AT} backends {{ fd00::1 . 80 . 0 : 10.244.1.5 . 8080 }}\n", "ipv4_addr")
    fake.run(f"delete element {AT} service-ips {{ 10.96.0.1 . tcp . 80 }}\n"
             f"add element {AT} service-ips {{ 10.96.0.1 . tcp . 80 : goto b }}\n")      # a change: delete, add


def test_a_chain_still_jumped_to_cannot_be_deleted():
    fake = kernel(f"add chain {AT} a\nadd chain {AT} b\nadd rule {AT} services jump a\n"
                  f"add element {AT} service-ips {{ 10.96.0.1 . tcp . 80 : goto b }}\n")
    refused(fake, f"delete chain {AT} a\n", "jumped to from services")
    refused(fake, f"delete chain {AT} b\n", "verdict in map service-ips")
    fake.run(f"flush chain {AT} services\ndelete chain {AT} a\n"
             f"delete element {AT} service-ips {{ 10.96.0.1 . tcp . 80 }}\ndelete chain {AT} b\n")
    assert set(fake.tables["ip"]["chains"]) == {"nat-prerouting", "filter-input", "services"}


def test_a_set_a_rule_names_cannot_be_deleted_and_a_missing_table_holds_nothing():
    fake = kernel(f"add set {AT} recent {{ type ipv4_addr; flags dynamic,timeout; timeout 10s; }}\n"
                  f"add chain {AT} ep\nadd rule {AT} ep update @recent {{ ip saddr }}\n")
    refused(fake, f"delete set {AT} recent\n", "used by a rule in ep")
    fake.run(f"delete chain {AT} ep\ndelete set {AT} recent\n")
    refused(fake, "add chain ip6 netplane services\n", "No such file")
    refused(fake, "delete table ip6 netplane\n", "No such file")


def test_a_transaction_is_all_or_nothing():
    fake = kernel()
    refused(fake, f"add chain {AT} new\nadd rule {AT} services jump new\nadd rule {AT} missing drop\n",
            "chain missing")
    assert "new" not in fake.tables["ip"]["chains"]
    fake.fail_next = "Error: Cannot allocate memory"
    refused(fake, f"add chain {AT} new\n", "Cannot allocate")
    fake.run(f"add chain {AT} new\n")                    # only the next one fails
    assert len(fake.scripts) == 2


def test_statements_are_refused_where_their_hook_cannot_run_them():
    fake = kernel(f"add chain {AT} a\n")
    refused(fake, f"add rule {AT} filter-input jump a\nadd rule {AT} a dnat ip to 10.244.1.5:8080\n",
            "dnat in chain a")
    refused(fake, f"add rule {AT} a masquerade\nadd element {AT} service-ips {{ 10.96.0.1 . tcp . 80 : goto a }}\n",
            "masquerade in chain a")
    refused(fake, f"add rule {AT} a jump services\nadd rule {AT} services jump a\n", "symbolic links")


def test_the_applier_reads_the_fake_back():
    fake = FakeNft()
    applier = NftablesApplier(4, runner=fake, reader=fake.reader(4))
    assert not applier.present() and applier.read_back() == {}
    fake.run(BASE)
    names = applier.read_back()
    assert names["chains"] == {"nat-prerouting", "filter-input", "services"}
    assert "filter-output" in applier.drift()
    assert applier.cleanup() == ["IPv4 table ip netplane"] and fake.tables == {}


def test_the_tracer_follows_every_slot_of_a_numgen_lookup():
    fake = kernel(f"""add chain {AT} cluster-3
add rule {AT} cluster-3 dnat ip to ip daddr . tcp dport . numgen random mod 3 map @backends
add element {AT} service-ips {{ 10.96.0.1 . tcp . 80 : goto cluster-3 }}
add element {AT} backends {{ 10.96.0.1 . 80 . 0 : 10.244.1.5 . 8080, 10.96.0.1 . 80 . 1 : 10.244.2.5 . 8080, \
10.96.0.1 . 80 . 2 : 10.244.3.5 . 8080 }}
""")
    got = Tracer(fake.tables["ip"], ["192.168.200.11"]).trace("10.244.1.9", "tcp", "10.96.0.1", 80)
    assert got.endpoints == {"10.244.1.5:8080", "10.244.2.5:8080", "10.244.3.5:8080"} and got.verdict == "ACCEPT"
    assert not Tracer(fake.tables["ip"], []).trace("10.244.1.9", "udp", "10.96.0.1", 80).endpoints


def test_the_tracer_follows_every_branch_of_an_inline_vmap_and_remembers_affinity():
    fake = kernel(f"""add set {AT} aff-a {{ type ipv4_addr; flags dynamic,timeout; timeout 10s; }}
add chain {AT} ep-a
add chain {AT} ep-b
add chain {AT} pick
add rule {AT} ep-a update @aff-a {{ ip saddr }}
add rule {AT} ep-a meta l4proto tcp dnat ip to 10.244.1.5:8080
add rule {AT} ep-b meta l4proto tcp dnat ip to 10.244.2.5:8080
add rule {AT} pick ip saddr @aff-a goto ep-a
add rule {AT} pick numgen random mod 2 vmap {{ 0 : goto ep-a, 1 : goto ep-b }}
add element {AT} service-ips {{ 10.96.0.1 . tcp . 80 : goto pick }}
""")
    table = fake.tables["ip"]
    assert Tracer(table, []).trace("10.244.1.9", "tcp", "10.96.0.1", 80).endpoints == {
        "10.244.1.5:8080", "10.244.2.5:8080"}
    remembered = Tracer(table, [], {"aff-a": {"10.244.1.9"}})
    assert remembered.trace("10.244.1.9", "tcp", "10.96.0.1", 80).endpoints == {"10.244.1.5:8080"}


def test_the_tracer_refuses_a_rule_it_does_not_understand():
    fake = kernel(f"add rule {AT} services tcp flags syn counter\n")
    with pytest.raises(AssertionError, match="does not understand"):
        Tracer(fake.tables["ip"], [])


EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
SETTINGS = Settings(Node("n1"), (netaddr.IPAddress("192.168.200.11"),), (netaddr.IPNetwork("10.244.0.0/16"),))
VARIANTS = [{}, {"sessionAffinity": "ClientIP"}, {"type": "NodePort", "externalTrafficPolicy": "Local"},
            {"type": "LoadBalancer", "ingress": ["192.0.2.10"], "loadBalancerSourceRanges": ["198.51.100.0/24"]},
            {"type": "NodePort", "internalTrafficPolicy": "Local", "sessionAffinity": "ClientIP"},
            {"type": "LoadBalancer", "ingress": ["192.0.2.20"], "sessionAffinity": "ClientIP",
             "externalTrafficPolicy": "Local"}]


def _service(i: int, spec: dict) -> dict:
    spec = dict(spec)
    kind = spec.pop("type", "ClusterIP")
    port = {"name": "http", "port": 80, "protocol": "TCP", **({"nodePort": 30000 + i} if kind != "ClusterIP" else {})}
    return b.service(f"s{i}", f"10.96.0.{i + 1}", [port], type=kind, **spec)


def _slice(i: int, count: int, base: int) -> dict:
    return b.endpoint_slice(f"s{i}", [b.endpoint(f"10.244.{1 + (base + k) % 3}.{10 + base + k}", f"n{1 + (base + k) % 3}")
                                      for k in range(count)], EP_PORTS)


def _table(plane) -> tuple:
    """The live objects: stale chains are flushed at once and deleted later,
    and so are the affinity sets only they named."""
    table = plane.appliers[4].nft.tables["ip"]
    chains = {c: r for c, r in table["chains"].items() if r}
    named = " ".join(rule for rules in chains.values() for rule in rules)
    return chains, {s: v for s, v in table["sets"].items() if "dynamic" not in v["body"] or f"@{s} " in named}


@pytest.mark.parametrize("seed", range(6))
def test_partial_syncs_through_the_fake_are_accepted_and_end_where_a_full_sync_would(seed, monkeypatch):
    """Every partial transaction the mode writes is one the kernel takes, and
    leaves the table as a full sync of the same Services would (but for
    stale chains, flushed and deleted later)."""
    now = [0.0]
    monkeypatch.setattr(nc, "clock", lambda: now[0])
    rnd = random.Random(seed)
    services = {i: _service(i, rnd.choice(VARIANTS)) for i in range(5)}
    slices = {i: _slice(i, rnd.randint(0, 4), rnd.randint(0, 5)) for i in range(5)}
    snap = snapshot(list(services.values()), list(slices.values()))
    plane = fake_dataplane(SETTINGS)
    plane.sync({4: family_policies(snap.ports, 4, SETTINGS.node)}, None)
    for _ in range(20):
        i, what = rnd.randrange(5), rnd.random()
        if what < 0.4:
            slices[i] = _slice(i, rnd.randint(0, 4), rnd.randint(0, 5))
        elif what < 0.7:
            services[i] = _service(i, rnd.choice(VARIANTS))
        elif what < 0.8:
            services.pop(i, None)
        else:
            now[0] += rnd.choice([0.3, 2.0])
        new = snapshot(list(services.values()), list(slices.values()))
        plane.sync({4: family_policies(new.ports, 4, SETTINGS.node)}, changed(snap.ports, new.ports))
        snap = new
        fresh = fake_dataplane(SETTINGS)
        fresh.sync({4: family_policies(snap.ports, 4, SETTINGS.node)}, None)
        assert _table(plane) == _table(fresh)
