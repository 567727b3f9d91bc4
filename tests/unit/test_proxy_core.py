"""The proxy core without a kernel: stale UDP flow selection, the Proxier over
a recording backend, and both sources (manifests; the fake API server)."""
import json
import time

import pytest

from netplane.kube.client import ENDPOINTSLICES, SERVICES
from netplane.proxy import build as b
from netplane.proxy.settings import Settings
from netplane.proxy.conntrack import Flow, stale_flows
from netplane.proxy.model import PortName
from netplane.proxy.proxier import Proxier
from netplane.testing.driven_source import DrivenSource
from netplane.proxy.sources import KubeSource, ManifestSource
from netplane.proxy.state import snapshot
from netplane.proxy.policy import Node, family_policies

DNS = [{"name": "dns", "port": 53, "protocol": "UDP"}]
DNS_EP = [{"name": "dns", "port": 5353, "protocol": "UDP"}]


def udp_views(endpoints, node_port=0):
    svc = b.service("dns", "10.96.0.10", [dict(DNS[0], nodePort=node_port)] if node_port else DNS,
                    type="NodePort" if node_port else "ClusterIP")
    snap = snapshot([svc], [b.endpoint_slice("dns", endpoints, DNS_EP)])
    return family_policies(snap.ports, 4, Node("n1"))


def flow(dst="10.96.0.10", dport=53, reply="10.244.1.5", rport=5353):
    return Flow(4, "10.244.1.9", 40000, dst, dport, reply, rport)


def test_udp_flows_to_a_gone_endpoint_are_stale_and_current_ones_stay():
    views = udp_views(["10.244.1.6"])
    old, current = flow(reply="10.244.1.5"), flow(reply="10.244.1.6")
    assert stale_flows([old, current], views) == [old]


def test_flows_to_an_endpoint_still_serving_while_terminating_are_kept():
    """A rolling update: the old pod terminates but still serves; its clients
    keep their flows although new traffic goes to the ready pod."""
    views = udp_views([b.endpoint("10.244.1.5", "n1", ready=False, serving=True, terminating=True),
                       b.endpoint("10.244.1.6", "n1")])
    assert stale_flows([flow(reply="10.244.1.5")], views) == []
    views = udp_views([b.endpoint("10.244.1.5", "n1", ready=False, serving=False, terminating=True),
                       b.endpoint("10.244.1.6", "n1")])
    assert stale_flows([flow(reply="10.244.1.5")], views) == [flow(reply="10.244.1.5")]


def test_untranslated_flows_go_once_the_service_has_endpoints():
    blackholed = flow(reply="10.96.0.10", rport=53)       # arrived while there were no endpoints
    assert stale_flows([blackholed], udp_views([])) == []
    assert stale_flows([blackholed], udp_views(["10.244.1.6"])) == [blackholed]


def test_node_port_flows_and_unrelated_flows():
    views = udp_views(["10.244.1.6"], node_port=30053)
    to_node_port = flow(dst="192.168.200.11", dport=30053, reply="10.244.1.5")
    unrelated = flow(dst="10.96.0.77", dport=53, reply="10.244.1.5")
    assert stale_flows([to_node_port, unrelated], views) == [to_node_port]


class Recorder:
    """A dataplane that records what the Proxier hands it."""

    def __init__(self, settings, fail=False):
        self.settings, self.calls, self.fail, self.last_full = settings, [], fail, False

    def sync(self, policies, changed):
        if self.fail:
            raise RuntimeError("apply failed")
        self.last_full = changed is None
        self.calls.append((policies, None if changed is None else set(changed)))

    def move_to_zone(self, zone):
        self.settings = Settings(Node(self.settings.node.name, zone))




def test_the_proxier_waits_for_the_source_then_syncs_full_then_partial():
    source = DrivenSource()
    backend = Recorder(Settings(Node("n1"), cluster_cidrs=()))
    proxier = Proxier(source, backend)
    proxier.sync(full=True)
    assert backend.calls == []                            # not loaded yet: the kernel is left alone
    source.put(b.service("a", "10.96.0.1", [{"port": 80}]), b.service("b", "10.96.0.2", [{"port": 80}]))
    assert proxier.metrics.pending_services._value.get() == 2
    proxier.sync(full=True)
    views, changed = backend.calls[-1]
    assert changed is None and set(views[4]) == {PortName("default", "a"), PortName("default", "b")}
    assert proxier.metrics.pending_services._value.get() == 0 and proxier.health.healthy()
    source.put(b.endpoint_slice("b", ["10.244.1.5"], [{"port": 8080}]))
    proxier.sync(full=False)
    views, changed = backend.calls[-1]
    assert changed == {PortName("default", "b")}
    assert [str(e.ip) for e in views[4][PortName("default", "b")].cluster] == ["10.244.1.5"]
    assert views[4][PortName("default", "a")] is backend.calls[-2][0][4][PortName("default", "a")]
    proxier.sync(full=False)
    assert backend.calls[-1][1] == set()                  # nothing to do


def test_after_a_failed_sync_the_changes_are_kept_so_nothing_is_lost():
    source = DrivenSource()
    source.put(b.service("a", "10.96.0.1", [{"port": 80}]))
    backend = Recorder(Settings(Node("n1")))
    proxier = Proxier(source, backend)
    proxier.sync(full=True)
    source.put(b.service("c", "10.96.0.3", [{"port": 80}]))
    backend.fail = True
    with pytest.raises(RuntimeError):
        proxier.sync(full=False)
    assert proxier.metrics.sync_failures._value.get() == 1
    backend.fail = False
    proxier.sync(full=False)                              # a retry decides every port anew: a full sync
    assert backend.calls[-1][1] is None and PortName("default", "c") in backend.calls[-1][0][4]
    proxier.sync(full=False)
    assert backend.calls[-1][1] == set()                  # and the change was not lost on the way


def test_network_programming_latency_is_observed_per_change():
    source = DrivenSource()
    proxier = Proxier(source, Recorder(Settings(Node("n1"))))
    source.put(b.service("a", "10.96.0.1", [{"port": 80}]), b.endpoint_slice("a", ["10.244.1.5"], [{"port": 80}]))
    proxier.sync(full=True)
    histogram = proxier.metrics.programming
    assert _count(histogram) == 2 and 0 <= _sum(histogram) < 5


def _count(histogram):
    return next(s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_count"))


def _sum(histogram):
    return next(s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_sum"))


def test_the_manifest_source_delivers_changes_and_keeps_last_good(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"kind": "List", "items": [
        b.service("a", "10.96.0.1", [{"port": 80}]), b.endpoint_slice("a", ["10.244.1.5"], [{"port": 80}])]}))
    source = ManifestSource(str(tmp_path))
    seen = []
    source.on_events = seen.append
    assert source.objects() is None and not source.ready
    source.scan()
    assert sorted((c.kind, c.key) for c in seen[0]) == [("EndpointSlice", "default/a-ipv4"), ("Service", "default/a")]
    assert len(source.objects()[0]) == 1 and source.ready
    (tmp_path / "a.json").write_text("{broken")
    source.scan()
    assert len(source.objects()[0]) == 1 and "a.json" in next(iter(source.errors)) and len(seen) == 1


def test_the_kube_source_lists_and_watches_both_kinds(fake, api):
    fake.put(SERVICES, b.service("a", "10.96.0.1", [{"port": 80}]))
    source = KubeSource(api, {"backoff_initial": 0.05})
    delivered = []
    source.on_events = delivered.append
    source.start()
    try:
        deadline = time.monotonic() + 5
        while not source.ready:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert [(c.kind, c.key, c.old) for c in delivered[0]] == [("Service", "default/a", None)]
        assert [s["metadata"]["name"] for s in source.objects()[0]] == ["a"] and source.objects()[1] == []
        fake.put(ENDPOINTSLICES, b.endpoint_slice("a", ["10.244.1.5"], [{"port": 80}]))
        while not source.objects()[1]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        while len(delivered) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert [(c.kind, c.key) for c in delivered[-1]] == [("EndpointSlice", "default/a-ipv4")]
    finally:
        source.stop()


def test_a_zone_change_redecides_every_port_in_one_full_sync():
    """The Node's topology label moved: hints now pick the other zone's endpoint."""
    source, backend = DrivenSource(), Recorder(Settings(Node("n1", "za")))
    proxier = Proxier(source, backend)
    source.put(b.service("a", "10.96.0.1", [{"port": 80}], trafficDistribution="PreferClose"),
               b.endpoint_slice("a", [b.endpoint("10.244.1.5", "n1", zone="za", hints=["za"]),
                                      b.endpoint("10.244.2.5", "n2", zone="zb", hints=["zb"])], [{"port": 8080}]))
    proxier.sync(full=True)
    cluster = lambda: [str(e.ip) for e in backend.calls[-1][0][4][PortName("default", "a")].cluster]  # noqa: E731
    assert cluster() == ["10.244.1.5"]
    proxier.set_zone("za")                                   # the same zone: nothing to redo
    proxier.sync(full=False)
    assert backend.calls[-1][1] == set()
    proxier.set_zone("zb")
    proxier.sync(full=False)
    assert backend.calls[-1][1] is None and cluster() == ["10.244.2.5"]
