"""The compiled iptables generator (ext/iptables_rules.pyx, ext/iptables_text.pyx)
against its pure-Python twin (rules.py, text.py): byte-identical output for
random service sets, in both layouts, both families, full and partial."""
import dataclasses
import os
import subprocess
import sys
from contextlib import contextmanager

import netaddr
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netplane import fastpath
from netplane.proxy.iptables import compile as compile_module, rules as pure_rules, text as pure_text
from netplane.proxy.iptables.compile import compile_family
from netplane.proxy.iptables.rules import LAYOUTS, Context, PortRules
from netplane.proxy.model import Endpoint, PortName, ServicePort
from netplane.proxy.policy import Node, decide
from netplane.proxy.policy import PortPolicy  # noqa: F401  (the guard below names its fields)

FAMILIES = st.sampled_from([4, 6])
compiled_rules = fastpath.load("iptables_rules")
compiled_text = fastpath.load("iptables_text")
NODE = "node-a"

# names as the API allows them, plus some it does not (the generators must agree on any text)
names = st.one_of(st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True),
                  st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6))


def addresses(family: int, count: int):
    def make(values):
        return [netaddr.IPAddress(v, family) for v in values]
    top = 2 ** 32 - 1 if family == 4 else 2 ** 128 - 1
    return st.lists(st.integers(1, top), min_size=0, max_size=count, unique=True).map(make)


@st.composite
def endpoints(draw, family: int):
    ips = draw(addresses(family, 6))
    out = []
    for ip in ips:
        ready = draw(st.booleans())
        out.append(Endpoint(ip, draw(st.integers(1, 65535)), ready=ready,
                            serving=ready or draw(st.booleans()), terminating=not ready and draw(st.booleans()),
                            node=draw(st.sampled_from(["", NODE, "node-b", "node-c"])),
                            zone=draw(st.sampled_from(["", "z1", "z2"])),
                            hint_zones=frozenset(draw(st.lists(st.sampled_from(["z1", "z2"]), max_size=2))),
                            hint_nodes=frozenset(draw(st.lists(st.sampled_from([NODE, "node-b"]), max_size=2)))))
    return out


@st.composite
def port_policies(draw, family: int):
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    lb = kind == "LoadBalancer"
    port = ServicePort(
        PortName(draw(names), draw(names), draw(st.sampled_from(["", "http", "dns"]))),
        draw(st.sampled_from(["TCP", "UDP", "SCTP"])), draw(st.integers(1, 65535)),
        tuple(draw(addresses(family, 1).filter(bool))),
        node_port=draw(st.integers(30000, 32767)) if kind != "ClusterIP" else 0,
        external_ips=tuple(draw(addresses(family, 2))),
        load_balancer_ips=tuple(draw(addresses(family, 2))) if lb else (),
        load_balancer_source_ranges=tuple(netaddr.IPNetwork(f"{ip}/{24 if family == 4 else 64}").cidr
                                          for ip in draw(addresses(family, 2))) if lb else (),
        affinity_timeout=draw(st.sampled_from([0, 0, 10800, 60])),
        external_local=draw(st.booleans()), internal_local=draw(st.booleans()),
        health_check_node_port=draw(st.sampled_from([0, 32000])) if lb else 0,
        topology_aware=draw(st.booleans()), scheduler=draw(st.sampled_from(["", "mh"])))
    eps = draw(endpoints(family))
    return decide(port, tuple(eps), Node(draw(st.sampled_from([NODE, "node-b", ""])), draw(st.sampled_from(["", "z1"]))))


@st.composite
def contexts(draw, family: int):
    cidr = {4: "10.244.0.0/16", 6: "fd00:244::/56"}[family]
    local = {4: "127.0.0.0/8", 6: "::1/128"}[family]
    destinations = draw(st.sampled_from([(f"-m addrtype --dst-type LOCAL ! -d {local}",), (),
                                         ("-m addrtype --dst-type LOCAL",),      # localhost node ports
                                         ("-d 192.0.2.1/32", "-d 192.0.2.2/32")]))
    return Context(family, draw(st.sampled_from([cidr, ""])), draw(st.booleans()), destinations,
                   draw(st.integers(0, 31)), draw(st.sampled_from(LAYOUTS)), draw(st.booleans()))


@st.composite
def clusters(draw):
    family = draw(st.sampled_from([4, 6]))
    views = draw(st.lists(port_policies(family), max_size=6))
    return {v.port.name: v for v in views}, draw(contexts(family))


@contextmanager
def pure_compile():
    """compile_family() on the pure twins, as NETPLANE_NO_EXTENSIONS=1 would give."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(compile_module, "port_rules", pure_rules.port_rules)
        m.setattr(compile_module, "text", pure_text)
        yield


def test_the_extensions_were_built():
    # A silent fallback would hide a broken Cython build and measure the wrong thing.
    assert fastpath.is_compiled(compiled_rules) and fastpath.is_compiled(compiled_text)


def test_compile_uses_the_compiled_twins():
    assert compile_module.port_rules is compiled_rules.port_rules and compile_module.text is compiled_text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=st.sampled_from([4, 6]), data=st.data())
def test_port_rules_are_identical(family, data):
    view, ctx = data.draw(port_policies(family)), data.draw(contexts(family))
    assert compiled_rules.port_rules(view, ctx) == pure_rules.port_rules(view, ctx)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), installed=st.sets(st.sampled_from(["NP-SVC-OLD", "NP-SEP-OLD", "KUBE-SVC-X", "MINE"])))
def test_whole_transactions_are_identical(cluster, installed):
    views, ctx = cluster
    fast = compile_family(views, ctx, installed={"nat": installed, "filter": installed})
    with pure_compile():
        slow = compile_family(views, ctx, installed={"nat": installed, "filter": installed})
    assert fast.text == slow.text and fast.chains() == slow.chains() and fast.fragments == slow.fragments


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), data=st.data())
def test_partial_transactions_are_identical(cluster, data):
    """A partial compile from either twin's previous result, after random churn."""
    views, ctx = cluster
    changed_views = dict(views)
    for name in data.draw(st.lists(st.sampled_from(sorted(views)), unique=True)) if views else []:
        del changed_views[name]
    for v in data.draw(st.lists(port_policies(ctx.family), max_size=2)):
        changed_views[v.port.name] = v
    changed = set(views) | set(changed_views)

    def run():
        previous = compile_family(views, ctx)
        return compile_family(changed_views, ctx, previous=previous, changed=changed)
    fast = run()
    with pure_compile():
        slow = run()
    assert (fast.text, fast.chains(), fast.written, fast.deleted) == (slow.text, slow.chains(), slow.written, slow.deleted)


chain_texts = st.text(st.characters(blacklist_categories=("Cs",)))


@given(tables=st.dictionaries(st.sampled_from(["filter", "nat"]), st.dictionaries(names, chain_texts, max_size=4)),
       ports=st.lists(st.builds(PortRules, declarations=st.sampled_from(["", ":NP-SVC-A - [0:0]\n"]) | chain_texts,
                                rules=chain_texts), max_size=4),
       deleted=st.dictionaries(st.sampled_from(["filter", "nat"]), st.lists(names, max_size=3)),
       edits=st.none() | st.dictionaries(st.sampled_from(["filter", "nat"]), st.lists(chain_texts, max_size=3)))
def test_transaction_text_is_identical(tables, ports, deleted, edits):
    assert compiled_text.transaction(tables, ports, deleted, edits) \
        == pure_text.transaction(tables, ports, deleted, edits)   # piece by piece


def test_large_ports_and_odd_endpoints_are_identical():
    """Hundreds of endpoints (probabilities to 1/300), IPv4-mapped IPv6, and
    endpoints equal to but not the objects categorize() handed out."""
    ips = [netaddr.IPAddress(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(300)]
    port = ServicePort(PortName("ns", "big", "http"), "TCP", 80, (netaddr.IPAddress("10.96.0.9"),),
                       affinity_timeout=30)
    eps = [Endpoint(ip, 8080, node="node-b" if i % 3 else NODE) for i, ip in enumerate(ips)]
    policy = decide(port, tuple(eps), Node(NODE))
    copies = dataclasses.replace(policy, cluster=tuple(Endpoint(e.ip, e.port, node=e.node) for e in policy.cluster),
                                 hairpin=tuple(Endpoint(e.ip, e.port, node=e.node) for e in policy.hairpin))
    mapped = netaddr.IPAddress("::ffff:10.0.0.1")
    port6 = ServicePort(PortName("ns", "six"), "UDP", 53, (netaddr.IPAddress("fd00::1"),))
    eps6 = (Endpoint(mapped, 53, node="node-b"), Endpoint(netaddr.IPAddress("fd00::abcd"), 53))
    for layout in LAYOUTS:
        for policy_, family in ((policy, 4), (copies, 4), (decide(port6, eps6, Node(NODE)), 6)):
            ctx = Context(family, "", False, (), 14, layout)
            assert compiled_rules.port_rules(policy_, ctx) == pure_rules.port_rules(policy_, ctx)


@pytest.mark.parametrize("model, strategy", [
    (ServicePort, lambda: FAMILIES.flatmap(port_policies).map(lambda p: p.port)),
    (Endpoint, lambda: FAMILIES.flatmap(endpoints).filter(bool).map(lambda eps: eps[0])),
    (Context, lambda: FAMILIES.flatmap(contexts)),
])
def test_the_strategies_draw_every_field_of_the_model(model, strategy):
    """A field the strategies never vary is a field the twins are never
    compared on: adding one to the model must fail here until it is drawn."""
    seen = {f.name: set() for f in dataclasses.fields(model)}

    @settings(max_examples=200, deadline=None, database=None)
    @given(strategy())
    def collect(obj):
        for name in seen:
            seen[name].add(repr(getattr(obj, name)))
    collect()
    assert [name for name, values in seen.items() if len(values) < 2] == []


@pytest.mark.parametrize("module", ["iptables_rules", "iptables_text", "naming"])
def test_environment_switch_selects_the_pure_path(module):
    code = (f"from netplane import fastpath; print(fastpath.load({module!r}).__name__); "
            "from netplane.proxy.iptables import compile; print(compile.port_rules.__module__, compile.text.__name__)")
    env = {**os.environ, "NETPLANE_NO_EXTENSIONS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [fastpath.PURE[module], "netplane.proxy.iptables.rules", "netplane.proxy.iptables.text"]
