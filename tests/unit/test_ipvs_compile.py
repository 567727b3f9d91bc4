"""The IPVS mode without a kernel: its real compile, core and applier over
FakeIpvs, FakeDevice and FakeNft (netplane/testing/ipvs_fake.py).

A partial sync leaves the fakes exactly as a fresh full sync of the same
policies does, and sends only the changed keys' messages; leaving real
servers drain (TCP) or go at once (UDP); a full sync removes only what is
ours; two ports claiming one key hand it over."""
import random

import netaddr
import pytest

from netplane.proxy import build as b
from netplane.proxy.ipvs import compile as ic
from netplane.proxy.ipvs import names as n
from netplane.proxy.ipvs.mode import IpvsOptions
from netplane.proxy.ipvs.plan import FWMARK, Key, VirtualServer
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.settings import Settings
from netplane.proxy.state import snapshot
from netplane.testing.ipvs import fake_dataplane

NODE_IP = "192.168.200.11"
SETTINGS = Settings(Node("n1"), (netaddr.IPAddress(NODE_IP),), (netaddr.IPNetwork("10.244.0.0/16"),))
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
VIP = Key("TCP", "10.96.0.1", 80)


def web(name, vip, protocol="TCP", **spec):
    kind = spec.pop("type", "ClusterIP")
    port = {"name": "http", "port": 80, "protocol": protocol}
    if kind != "ClusterIP":
        port["nodePort"] = 30000 + int(vip.rsplit(".", 1)[1])
    return b.service(name, vip, [port], type=kind, **spec)


def endpoints(name, count, base=0, protocol="TCP", **kw):
    return b.endpoint_slice(name, [b.endpoint(f"10.244.{1 + (base + k) % 3}.{10 + base + k}",
                                              f"n{1 + (base + k) % 3}", **kw) for k in range(count)],
                            [dict(EP_PORTS[0], protocol=protocol)])


def policies(services, slices):
    return {4: family_policies(snapshot(services, slices).ports, 4, Node("n1"))}


def changed(old, new):
    return {k for k in set(old[4]) | set(new[4]) if old[4].get(k) != new[4].get(k)}


def state(plane):
    """Everything the fakes hold, each firewall mark named by the addresses
    it short-circuits (marks are handed out in the order ports appear)."""
    a = plane.appliers[4]
    sets = {name: dict(s["elements"]) for name, s in a.nft.tables["ip"]["sets"].items()}
    named = {}
    for vip, (mark,) in sets[n.SHORTCUT].items():
        named.setdefault(int(mark, 0), []).append(vip)
    sets[n.SHORTCUT] = {vip: tuple(sorted(named[int(mark, 0)])) for vip, (mark,) in sets[n.SHORTCUT].items()}
    servers = {(Key(FWMARK, "", tuple(sorted(named[k.port]))) if k.protocol == FWMARK else k): v
               for k, v in a.kernel.servers().items()}
    return servers, a.device.addresses(4), sets


def fresh(pol, **options):
    plane = fake_dataplane(SETTINGS, options=IpvsOptions(**options))
    plane.sync(pol, None)
    return plane


VARIANTS = [
    {},
    {"sessionAffinity": "ClientIP"},
    {"type": "NodePort", "externalTrafficPolicy": "Local"},
    {"type": "LoadBalancer", "ingress": ["192.0.2.10"], "loadBalancerSourceRanges": ["198.51.100.0/24"]},
    {"type": "NodePort", "internalTrafficPolicy": "Local", "sessionAffinity": "ClientIP"},
    {"externalIPs": ["192.0.2.20"]},
    {"protocol": "UDP", "type": "NodePort"},
]


@pytest.mark.parametrize("seed", range(8))
def test_partial_syncs_leave_the_kernel_as_a_full_sync_does(seed):
    rnd = random.Random(seed)

    def variant():
        spec = dict(rnd.choice(VARIANTS))
        return spec.pop("protocol", "TCP"), spec
    specs = {f"s{i}": variant() for i in range(6)}
    services = {k: web(k, f"10.96.0.{i + 1}", p, **s) for i, (k, (p, s)) in enumerate(specs.items())}
    slices = {k: endpoints(k, rnd.randint(0, 4), protocol=specs[k][0]) for k in services}
    pol = policies(services.values(), slices.values())
    plane = fresh(pol)
    for _ in range(30):
        name = f"s{rnd.randrange(8)}"
        protocol, spec = specs.get(name) or variant()
        what = rnd.random()
        if what < 0.5:
            slices[name] = endpoints(name, rnd.randint(0, 4), base=rnd.randrange(5), protocol=protocol)
        elif what < 0.8:
            specs[name] = protocol, spec = variant()
            services[name] = web(name, f"10.96.0.{int(name[1:]) + 1}", protocol, **spec)
            slices[name] = endpoints(name, rnd.randint(0, 4), protocol=protocol)
        else:
            services.pop(name, None)
        new = policies(services.values(), slices.values())
        plane.sync(new, changed(pol, new))
        assert not plane.last_full
        got, want = state(plane), state(fresh(new))
        for part, (g, w) in enumerate(zip(got, want)):
            assert g == w, (part, {k: (g.get(k), w.get(k)) for k in set(g) | set(w) if g.get(k) != w.get(k)}
                            if isinstance(g, dict) else (g, w))
        pol = new


def test_one_endpoint_change_sends_one_real_server_message_and_no_nft_change():
    services = [web(f"s{i}", f"10.96.0.{i + 1}") for i in range(50)]
    slices = [endpoints(f"s{i}", 3) for i in range(50)]
    pol = policies(services, slices)
    plane = fresh(pol)
    kernel, nft = plane.appliers[4].kernel, plane.appliers[4].nft
    before, scripts = kernel.operations, len(nft.scripts)
    slices[0]["endpoints"].append(b.endpoint("10.244.2.99", "n2"))      # on another node: no hairpin element
    new = policies(services, slices)
    plane.sync(new, changed(pol, new))
    assert kernel.operations - before == 1 and len(nft.scripts) == scripts
    assert kernel.real[VIP][("10.244.2.99", 8080)][0] == 1


def test_a_leaving_tcp_endpoint_drains_at_weight_0_until_its_connections_end():
    pol = policies([web("s0", "10.96.0.1")], [endpoints("s0", 2)])
    plane = fresh(pol)
    applier = plane.appliers[4]
    gone = ("10.244.2.11", 8080)
    applier.kernel.real[VIP][gone][1] = 3                   # three active connections
    new = policies([web("s0", "10.96.0.1")], [endpoints("s0", 1)])
    plane.sync(new, changed(pol, new))
    assert applier.kernel.real[VIP][gone] == [0, 3, 0]      # no new connections, the open ones stay
    plane.sync(new, set())
    assert gone in applier.kernel.real[VIP]
    applier.kernel.real[VIP][gone][1:] = [0, 2]             # closed; IPVS still counts them inactive
    plane.sync(new, set())
    assert gone not in applier.kernel.real[VIP] and not applier.last.draining


def test_a_draining_endpoint_is_deleted_after_the_drain_timeout(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(ic, "clock", lambda: now[0])
    pol = policies([web("s0", "10.96.0.1")], [endpoints("s0", 2)])
    plane = fresh(pol, drain_timeout=60)
    applier = plane.appliers[4]
    applier.kernel.real[VIP][("10.244.2.11", 8080)][1] = 1
    new = policies([web("s0", "10.96.0.1")], [endpoints("s0", 1)])
    plane.sync(new, changed(pol, new))
    now[0] += 59
    plane.sync(new, set())
    assert ("10.244.2.11", 8080) in applier.kernel.real[VIP]
    now[0] += 2
    plane.sync(new, set())
    assert ("10.244.2.11", 8080) not in applier.kernel.real[VIP]


def test_an_endpoint_back_while_draining_gets_its_weight_back():
    pol = policies([web("s0", "10.96.0.1")], [endpoints("s0", 2)])
    plane = fresh(pol)
    kernel = plane.appliers[4].kernel
    kernel.real[VIP][("10.244.2.11", 8080)][1] = 1
    one = policies([web("s0", "10.96.0.1")], [endpoints("s0", 1)])
    plane.sync(one, changed(pol, one))
    plane.sync(pol, changed(one, pol))
    assert kernel.real[VIP][("10.244.2.11", 8080)][0] == 1 and not plane.appliers[4].last.draining


def test_a_terminating_endpoint_drains_while_ready_ones_take_new_connections():
    ready = endpoints("s0", 1)
    slice_ = dict(ready, endpoints=ready["endpoints"] + [b.endpoint("10.244.2.11", "n2", ready=False,
                                                                    serving=True, terminating=True)])
    pol = policies([web("s0", "10.96.0.1")], [endpoints("s0", 2)])
    plane = fresh(pol)
    plane.appliers[4].kernel.real[VIP][("10.244.2.11", 8080)][1] = 1
    new = policies([web("s0", "10.96.0.1")], [slice_])
    plane.sync(new, changed(pol, new))
    assert {d: w[0] for d, w in plane.appliers[4].kernel.real[VIP].items()} == {
        ("10.244.1.10", 8080): 1, ("10.244.2.11", 8080): 0}


def test_udp_real_servers_go_at_once():
    key = Key("UDP", "10.96.0.1", 80)
    pol = policies([web("s0", "10.96.0.1", "UDP")], [endpoints("s0", 2, protocol="UDP")])
    plane = fresh(pol)
    plane.appliers[4].kernel.real[key][("10.244.2.11", 8080)][1] = 5
    new = policies([web("s0", "10.96.0.1", "UDP")], [endpoints("s0", 1, protocol="UDP")])
    plane.sync(new, changed(pol, new))
    assert set(plane.appliers[4].kernel.real[key]) == {("10.244.1.10", 8080)}


def test_a_full_sync_removes_only_our_virtual_servers():
    pol = policies([web("s0", "10.96.0.1", type="NodePort"), web("s1", "10.96.0.2", type="NodePort")],
                   [endpoints("s0", 1), endpoints("s1", 1)])
    plane = fresh(pol)
    applier = plane.appliers[4]
    admins = {Key("TCP", NODE_IP, 443): VirtualServer("wlc"), Key(FWMARK, "", 7): VirtualServer("rr")}
    for key, server in admins.items():
        applier.kernel.apply([(key, server)], [], [("add", key, ("192.168.200.50", 443), 1)], [])
    one = policies([web("s0", "10.96.0.1", type="NodePort")], [endpoints("s0", 1)])
    applier._recorded = lambda: {Key("TCP", NODE_IP, 30002)}         # what the nodeport-servers set holds
    plane.syncers[4].plan = None                                     # a restart: the next sync is full
    plane.sync(one, None)
    assert set(applier.kernel.services) == {VIP, Key("TCP", NODE_IP, 30001), *admins}
    assert applier.device.addresses(4) == {"10.96.0.1"}


def test_a_restart_over_a_synced_kernel_sends_no_ipvs_message():
    pol = policies([web(f"s{i}", f"10.96.0.{i + 1}", type="NodePort", externalTrafficPolicy="Local")
                    for i in range(5)], [endpoints(f"s{i}", 3) for i in range(5)])
    plane = fresh(pol)
    applier = plane.appliers[4]
    before = applier.kernel.operations
    plane.syncers[4].plan = None
    plane.sync(pol, None)
    assert applier.kernel.operations == before and applier.last.changes.messages() == 0


def test_two_ports_claiming_one_external_ip_hand_it_over():
    ext = Key("TCP", "192.0.2.20", 80)
    a, b_ = web("a", "10.96.0.1", externalIPs=["192.0.2.20"]), web("b", "10.96.0.2", externalIPs=["192.0.2.20"])
    pol = policies([a, b_], [endpoints("a", 1), endpoints("b", 2, base=5)])
    plane = fresh(pol)
    kernel = plane.appliers[4].kernel
    assert set(kernel.real[ext]) == {("10.244.1.10", 8080)}
    new = policies([b_], [endpoints("b", 2, base=5)])
    plane.sync(new, changed(pol, new))
    assert set(kernel.real[ext]) == {("10.244.3.15", 8080), ("10.244.1.16", 8080)}
    assert state(plane) == state(fresh(new))


def test_schedulers_persistence_and_the_local_short_circuit():
    svc = web("s0", "10.96.0.1", type="NodePort", externalTrafficPolicy="Local", sessionAffinity="ClientIP",
              sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    svc["metadata"]["annotations"] = {"netplane.io/ipvs-scheduler": "mh"}
    plane = fresh(policies([svc, web("s1", "10.96.0.2")], [endpoints("s0", 3), endpoints("s1", 1)]), scheduler="lc")
    kernel = plane.appliers[4].kernel
    assert kernel.services[VIP] == VirtualServer("mh", 600)
    assert kernel.services[Key("TCP", "10.96.0.2", 80)] == VirtualServer("lc", 0)
    assert set(kernel.real[Key("TCP", NODE_IP, 30001)]) == {("10.244.1.10", 8080)}     # this node's only
    marks = [k for k in kernel.services if k.protocol == FWMARK]
    assert [k.port & n.MARK_MASK for k in marks] == [n.MARK_TAG] and len(kernel.real[marks[0]]) == 3


def test_the_rendered_plan_reads_as_ipvsadm_and_nft_input():
    from netplane.proxy.ipvs.mode import render_plan
    plane = fresh(policies([web("s0", "10.96.0.1")], [endpoints("s0", 1)]))
    text = render_plan(plane.appliers[4].last)
    assert "-A -t 10.96.0.1:80 -s rr\n-a -t 10.96.0.1:80 -r 10.244.1.10:8080 -m -w 1\n" in text
    assert "add element ip netplane-ipvs served { 10.96.0.1 . tcp . 80 }" in text
