"""The change tracker against its oracle: after any sequence of per-object
changes, the tracked ports equal a fresh snapshot() of the objects the
source then holds, and `changed` names exactly the ports that differ from
the last take."""
from hypothesis import given, settings
from hypothesis import strategies as st

from netplane.kube.changes import Change, diff, object_key
from netplane.proxy import build as b
from netplane.proxy.state import changed, snapshot
from netplane.proxy.tracker import Tracker

NAMESPACES = ("default", "shop")
SERVICES = ("a", "b", "c")
PORTS = ({"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"})
PROXY_NAME = "service.kubernetes.io/service-proxy-name"


@st.composite
def services(draw):
    name, namespace = draw(st.sampled_from(SERVICES)), draw(st.sampled_from(NAMESPACES))
    if draw(st.integers(0, 9)) == 0:                                   # an invalid one
        return b.service(name, "10.96.0.999", [PORTS[0]], namespace=namespace)
    ips = draw(st.sampled_from([["10.96.0.1"], ["fd00:96::1"], ["10.96.0.2", "fd00:96::2"], []]))
    ports = draw(st.lists(st.sampled_from(PORTS), min_size=1, max_size=2, unique_by=lambda p: p["name"]))
    policy = draw(st.sampled_from(["Cluster", "Local"]))
    obj = b.service(name, ips, ports, namespace=namespace, internalTrafficPolicy=policy)
    if draw(st.integers(0, 9)) == 0:                                   # another proxy's
        obj["metadata"]["labels"] = {PROXY_NAME: "other"}
    return obj


@st.composite
def slices(draw):
    namespace = draw(st.sampled_from(NAMESPACES))
    family = draw(st.sampled_from([4, 6]))
    index = draw(st.integers(0, 2))
    owner = draw(st.sampled_from(SERVICES))                          # a slice may move between Services
    hosts = draw(st.lists(st.integers(1, 6), max_size=4))
    eps = [b.endpoint(f"10.244.0.{h}" if family == 4 else f"fd00:10:244::{h}", node=f"n{h % 2}",
                      ready=draw(st.booleans()), terminating=draw(st.booleans())) for h in hosts]
    ports = draw(st.lists(st.sampled_from(PORTS), max_size=2, unique_by=lambda p: p["name"]))
    ports = [dict(p, port=p["port"] + 8000) for p in ports]
    obj = b.endpoint_slice(owner, eps, ports, namespace=namespace, name=f"slice-{family}-{index}", family=family)
    if draw(st.integers(0, 9)) == 0:
        obj["addressType"] = "IPv5"                                   # invalid
    return obj


operations = st.lists(st.one_of(
    st.tuples(st.just("put"), st.one_of(services(), slices())),
    st.tuples(st.just("delete"), st.sampled_from(["Service", "EndpointSlice"]), st.integers(0, 20)),
    st.tuples(st.just("take")),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_tracked_state_equals_a_fresh_snapshot(ops):
    store = {"Service": {}, "EndpointSlice": {}}
    tracker, synced = Tracker(), {}
    for op in ops:
        if op[0] == "put":
            obj = op[1]
            kind, key = obj["kind"], object_key(obj)
            tracker.update([Change(kind, key, store[kind].get(key), obj)])
            store[kind][key] = obj
        elif op[0] == "delete":
            kind, keys = op[1], sorted(store[op[1]])
            if keys:
                key = keys[op[2] % len(keys)]
                tracker.update([Change(kind, key, store[kind].pop(key), None)])
        else:
            _check_taken(tracker, synced)
            synced = dict(tracker.ports)
        oracle = snapshot(list(store["Service"].values()), list(store["EndpointSlice"].values()))
        assert tracker.ports == oracle.ports
        assert tracker.skipped_reasons() == oracle.skipped
    _check_taken(tracker, synced)


def _check_taken(tracker, synced):
    """Every port that differs from the last sync is named. A port that
    changed and changed back in between may be named too: its compile finds
    nothing to do, and telling it apart would cost a copy of every state."""
    assert changed(synced, tracker.ports) <= tracker.take().changed


def test_a_service_that_gains_the_proxy_name_label_leaves_and_comes_back_when_it_loses_it():
    tracker = Tracker()
    ours = b.service("a", "10.96.0.1", [PORTS[0]])
    theirs = {**ours, "metadata": {**ours["metadata"], "labels": {PROXY_NAME: "other-proxy"}}}
    tracker.update([Change("Service", "default/a", None, ours),
                    Change("EndpointSlice", "default/a-ipv4", None,
                           b.endpoint_slice("a", ["10.244.0.1"], [{"name": "http", "port": 8080}]))])
    [name] = tracker.take().changed
    assert [str(e.ip) for e in tracker.ports[name].endpoints] == ["10.244.0.1"]
    tracker.update([Change("Service", "default/a", ours, theirs)])
    assert tracker.take().changed == {name} and name not in tracker.ports
    assert tracker.skipped == {}                    # not an error: nothing for `compile --strict` to fail on
    tracker.update([Change("Service", "default/a", theirs, ours)])
    assert tracker.take().changed == {name} and [str(e.ip) for e in tracker.ports[name].endpoints] == ["10.244.0.1"]


def test_a_failed_sync_gives_its_changes_back():
    tracker = Tracker(clock=lambda: 100.0)
    tracker.update([Change("Service", "default/a", None, b.service("a", "10.96.0.1", [PORTS[0]]))])
    taken = tracker.take()
    assert [str(n) for n in taken.changed] == ["default/a:http"] and taken.triggered == [100.0]
    assert tracker.take().changed == set()
    tracker.give_back(taken)
    assert tracker.take().changed == taken.changed


def test_the_slice_controllers_trigger_time_is_the_start_of_the_change():
    tracker = Tracker(clock=lambda: 100.0)
    obj = b.endpoint_slice("a", ["10.244.0.1"], [{"port": 80}])
    obj["metadata"]["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-02T03:04:05Z"}
    tracker.update([Change("EndpointSlice", object_key(obj), None, obj)])
    [when] = tracker.take().triggered
    assert when == 1767323045.0


def test_a_change_parses_only_the_object_that_changed(monkeypatch):
    tracker = Tracker()
    objects = [b.service(f"s{i}", f"10.96.0.{i + 1}", [PORTS[0]]) for i in range(50)]
    tracker.update(diff("Service", {}, {object_key(o): o for o in objects}))
    calls = []
    import netplane.proxy.tracker as t
    monkeypatch.setattr(t, "service_ports", lambda obj: calls.append(obj) or ())
    tracker.update([Change("Service", "default/s7", objects[7], None)])
    assert calls == [] and "default/s7" not in {f"{n.namespace}/{n.name}" for n in tracker.ports}
    tracker.update([Change("Service", "default/s8", objects[8], b.service("s8", "10.96.1.9", [PORTS[0]]))])
    assert len(calls) == 1


def test_collection_diff():
    a, a2, c = {"kind": "X", "v": 1}, {"kind": "X", "v": 2}, {"kind": "X"}
    got = diff("X", {"a": a, "b": c}, {"a": a2, "c": c})
    assert sorted((ch.key, ch.old is not None, ch.new is not None) for ch in got) == [
        ("a", True, True), ("b", True, False), ("c", False, True)]
    assert diff("X", {"a": a}, {"a": dict(a)}) == []
