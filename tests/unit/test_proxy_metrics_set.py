"""kube-proxy's metric set, moved by real syncs: the Proxier over each mode's
real compile and applier with the kernel in memory (the fakes), read back
from the registry; the /metrics server's paths; the "sync done" log fields."""
import logging
import urllib.error
import urllib.request

import netaddr
import pytest

from netplane.proxy import build as b
from netplane.proxy import modes
from netplane.proxy.dataplane import Dataplane
from netplane.proxy import health
from netplane.proxy.health import HealthState
from netplane.proxy.iptables.mode import IptablesApplier, IptablesOptions
from netplane.proxy.metrics import ProxyMetrics
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.proxier import Proxier
from netplane.testing.driven_source import DrivenSource
from netplane.proxy.settings import Settings
from netplane.proxy.state import snapshot
from netplane.testing import ipvs as ipvs_testing
from netplane.testing import nftables as nft_testing
from netplane.testing.ebpf import FakeMaps
from netplane.testing.iptables_fake import FakeIptables

SETTINGS = Settings(Node("n1"), (netaddr.IPAddress("192.168.200.11"),), (netaddr.IPNetwork("10.244.0.0/16"),))
V4 = {"ip_family": "IPv4"}




def iptables_plane(clean_conntrack=None):
    return Dataplane(modes.get("iptables"), SETTINGS, IptablesOptions(),
                     applier=lambda family, options: IptablesApplier(family, options, runner=FakeIptables),
                     local_addresses=lambda: [], clean_conntrack=clean_conntrack, sweep=False)


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0.0


def web(name, ip, **spec):
    return b.service(name, ip, [{"name": "http", "port": 80}], **spec)


def web_slice(name, *endpoints):
    return b.endpoint_slice(name, list(endpoints), [{"name": "http", "port": 8080}])


@pytest.fixture
def proxy():
    source = DrivenSource()
    proxier = Proxier(source, iptables_plane())
    return source, proxier, proxier.dataplane.appliers[4].runner


def kernel_rules(runner, table):
    """The rules netplane's own chains hold in the fake kernel."""
    return sum(len(rules) for chain, rules in runner.tables[table].items() if chain.startswith("NP-"))


def rules_written(restore_text, table):
    """Rule lines an iptables-restore input appends or inserts in `table`."""
    section = restore_text.split(f"*{table}\n", 1)[1].split("COMMIT\n", 1)[0] if f"*{table}\n" in restore_text \
        else ""
    return sum(1 for line in section.splitlines() if line.startswith(("-A ", "-I ")))


def test_full_and_partial_durations_timestamps_and_change_counters(proxy):
    source, proxier, _ = proxy
    m = proxier.metrics
    source.put(web("a", "10.96.0.1"), web("b", "10.96.0.2"), web_slice("a", "10.244.1.5"))
    assert value(m, "kubeproxy_sync_proxy_rules_service_changes_total") == 2
    assert value(m, "kubeproxy_sync_proxy_rules_endpoint_changes_total") == 1
    assert value(m, "kubeproxy_sync_proxy_rules_endpoint_changes_pending") == 1
    assert value(m, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", **V4) > 0
    assert value(m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", **V4) == 0
    proxier.sync(full=True)
    assert value(m, "kubeproxy_sync_full_proxy_rules_duration_seconds_count", **V4) == 1
    assert value(m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count", **V4) == 0
    assert value(m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", **V4) > 0
    assert value(m, "kubeproxy_sync_proxy_rules_endpoint_changes_pending") == 0
    source.put(web_slice("b", "10.244.1.6"))
    proxier.sync(full=False)
    assert value(m, "kubeproxy_sync_full_proxy_rules_duration_seconds_count", **V4) == 1
    assert value(m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count", **V4) == 1
    assert value(m, "kubeproxy_sync_proxy_rules_duration_seconds_count", **V4) == 2
    assert value(m, "kubeproxy_sync_proxy_rules_endpoint_changes_total") == 2
    assert value(m, "kubeproxy_network_programming_duration_seconds_count") == 4


def test_iptables_rule_counts_per_table_after_full_and_partial_syncs(proxy):
    source, proxier, runner = proxy
    m = proxier.metrics
    source.put(web("a", "10.96.0.1"), web("b", "10.96.0.2", type="NodePort"), web_slice("a", "10.244.1.5"))
    proxier.sync(full=True)
    for table in ("nat", "filter"):
        assert kernel_rules(runner, table) > 0
        assert value(m, "kubeproxy_sync_proxy_rules_iptables_total", table=table, **V4) == kernel_rules(runner, table)
        assert value(m, "kubeproxy_sync_proxy_rules_iptables_last", table=table, **V4) == kernel_rules(runner, table)
    full_nat = kernel_rules(runner, "nat")
    source.put(web_slice("b", "10.244.1.6", "10.244.2.7"))
    proxier.sync(full=False)
    assert not proxier.dataplane.last_full
    written = rules_written(runner.restores[-1], "nat")
    assert 0 < written < kernel_rules(runner, "nat")
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_last", table="nat", **V4) == written
    # the total is a full sync's count (see iptables/counts.py): it catches up at the next one
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_total", table="nat", **V4) == full_nat
    proxier.sync(full=True)
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_total", table="nat", **V4) == kernel_rules(runner, "nat")
    assert kernel_rules(runner, "nat") > full_nat


def test_restore_failures_are_counted_as_kube_proxy_counts_them(proxy):
    source, proxier, runner = proxy
    m = proxier.metrics
    source.put(web("a", "10.96.0.1"), web_slice("a", "10.244.1.5"))
    proxier.sync(full=True)
    source.put(web_slice("a", "10.244.1.6"))
    runner.fail_next = "iptables-restore: line 3 failed"
    with pytest.raises(Exception, match="line 3"):
        proxier.sync(full=False)
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_restore_failures_total", **V4) == 1
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total", **V4) == 1
    assert value(m, "netplane_proxy_apply_failures_total", sync="partial", **V4) == 1
    assert value(m, "netplane_proxy_sync_failures_total") == 1
    assert value(m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count", **V4) == 0
    runner.fail_next = "iptables-restore: line 9 failed"
    with pytest.raises(Exception, match="line 9"):
        proxier.sync(full=False)                  # the retry is full: a full restore failure
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_restore_failures_total", **V4) == 2
    assert value(m, "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total", **V4) == 1
    assert value(m, "netplane_proxy_apply_failures_total", sync="full", **V4) == 1


def test_no_local_endpoints_counts_local_policies_without_a_local_endpoint(proxy):
    source, proxier, _ = proxy
    m = proxier.metrics

    def gaps():
        return (value(m, "kubeproxy_sync_proxy_rules_no_local_endpoints_total", traffic_policy="internal", **V4),
                value(m, "kubeproxy_sync_proxy_rules_no_local_endpoints_total", traffic_policy="external", **V4))
    source.put(web("itp", "10.96.0.1", internalTrafficPolicy="Local"),
               b.service("etp", "10.96.0.2", [{"name": "http", "port": 80, "nodePort": 30080}], type="NodePort",
                         externalTrafficPolicy="Local"),
               web("none", "10.96.0.3", internalTrafficPolicy="Local"),      # no endpoint anywhere: rejected
               web_slice("itp", b.endpoint("10.244.2.5", "n2")), web_slice("etp", b.endpoint("10.244.2.6", "n2")))
    proxier.sync(full=True)
    assert gaps() == (1, 1)
    source.put(web_slice("itp", b.endpoint("10.244.2.5", "n2"), b.endpoint("10.244.1.5", "n1")))
    proxier.sync(full=False)
    assert gaps() == (0, 1)
    source.put(web_slice("etp", b.endpoint("10.244.1.6", "n1")))
    proxier.sync(full=False)
    assert gaps() == (0, 0)


def test_conntrack_cleanup_is_timed_and_its_deletions_counted():
    source = DrivenSource()
    proxier = Proxier(source, iptables_plane(clean_conntrack=lambda family, policies: 3))
    source.put(b.service("dns", "10.96.0.10", [{"name": "dns", "port": 53, "protocol": "UDP"}]),
               b.endpoint_slice("dns", ["10.244.1.5"], [{"name": "dns", "port": 5353, "protocol": "UDP"}]))
    proxier.sync(full=True)
    m = proxier.metrics
    assert value(m, "kubeproxy_conntrack_reconciler_sync_duration_seconds_count", **V4) == 1
    assert value(m, "kubeproxy_conntrack_reconciler_deleted_entries_total", **V4) == 3


def cluster_policies():
    """A Service of every kind, decided as the Proxier decides them."""
    snap = snapshot([web("a", "10.96.0.1"), web("empty", "10.96.0.3"),
                     b.service("np", "10.96.0.2", [{"name": "http", "port": 80, "nodePort": 30080}], type="NodePort")],
                    [web_slice("a", "10.244.1.5", "10.244.2.5"), web_slice("np", "10.244.1.6")])
    return {4: family_policies(snap.ports, 4, SETTINGS.node)}


def test_nftables_counts_are_what_the_table_holds():
    plane = nft_testing.fake_dataplane(SETTINGS)
    metrics = ProxyMetrics()
    plane.report_to(metrics)
    plane.sync(cluster_policies(), None)
    table = plane.appliers[4].nft.tables["ip"]
    assert value(metrics, "netplane_proxy_objects", kind="chains", **V4) == len(table["chains"])
    assert value(metrics, "netplane_proxy_objects", kind="sets", **V4) == len(table["sets"])
    elements = sum(len(s["elements"]) for s in table["sets"].values())
    assert elements > 0 and value(metrics, "netplane_proxy_objects", kind="elements", **V4) == elements
    assert value(metrics, "kubeproxy_sync_proxy_rules_nftables_sync_failures_total", **V4) == 0
    plane.appliers[4].nft.fail_next = "Error: no"
    with pytest.raises(Exception, match="no"):
        plane.sync(cluster_policies(), None)
    assert value(metrics, "kubeproxy_sync_proxy_rules_nftables_sync_failures_total", **V4) == 1


def test_ipvs_counts_virtual_and_real_servers():
    plane = ipvs_testing.fake_dataplane(SETTINGS)
    metrics = ProxyMetrics()
    plane.report_to(metrics)
    plane.sync(cluster_policies(), None)
    servers = plane.appliers[4].kernel.servers()
    assert value(metrics, "netplane_proxy_objects", kind="virtual_servers", **V4) == len(servers) > 0
    real = sum(len(dests) for _, dests in servers.values())
    assert value(metrics, "netplane_proxy_objects", kind="real_servers", **V4) == real > 0
    assert value(metrics, "netplane_proxy_objects_written", kind="real_servers", **V4) == real


def test_ebpf_counts_map_entries():
    plane = Dataplane(modes.get("ebpf"), SETTINGS, applier=lambda family, options: FakeMaps(family),
                      local_addresses=lambda: [], clean_conntrack=None, sweep=False)
    metrics = ProxyMetrics()
    plane.report_to(metrics)
    plane.sync(cluster_policies(), None)
    maps = plane.appliers[4]
    assert value(metrics, "netplane_proxy_objects", kind="services", **V4) == len(maps.services) > 0
    assert value(metrics, "netplane_proxy_objects", kind="backends", **V4) == len(maps.backends) == 3


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, None, ""


def test_metrics_only_on_its_path_and_the_proxy_mode_beside_it():
    metrics = ProxyMetrics(mode="iptables")
    server = metrics.serve("127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, kind, text = get(url + "/metrics")
        assert status == 200 and kind.startswith("text/plain")
        assert 'netplane_build_info{python="' in text and "process_start_time_seconds" in text
        assert "# TYPE kubeproxy_sync_proxy_rules_iptables_total gauge" in text
        assert get(url + "/proxyMode")[::2] == (200, "iptables")
        assert get(url + "/")[0] == 404 and get(url + "/healthz")[0] == 404 and get(url + "/metricsx")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_healthz_and_livez_answers_are_counted_by_code():
    metrics, clock = ProxyMetrics(), {"now": 1000.0}
    state = HealthState(timeout=60, clock=lambda: clock["now"])
    server = health.serve(("127.0.0.1", 0), state, metrics=metrics)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        state.updated()
        get(url + "/healthz"), get(url + "/healthz"), get(url + "/livez")
        state.queued()
        clock["now"] += 120
        get(url + "/healthz")
        get(url + "/nope")
    finally:
        server.shutdown()
        server.server_close()
    assert value(metrics, "kubeproxy_proxy_healthz_total", code="200") == 2
    assert value(metrics, "kubeproxy_proxy_healthz_total", code="503") == 1
    assert value(metrics, "kubeproxy_proxy_livez_total", code="200") == 1


def test_the_sync_line_carries_fields_and_names_a_few_changed_services(proxy, caplog):
    source, proxier, _ = proxy
    source.put(web("a", "10.96.0.1"), web("b", "10.96.0.2"))
    with caplog.at_level(logging.INFO, logger="netplane.proxy"):
        proxier.sync(full=True)
        source.put(web_slice("b", "10.244.1.6"))
        proxier.sync(full=False)
    full, partial = [r for r in caplog.records if r.msg == "sync done"]
    assert (full.sync, full.service_ports, full.duration_ms >= 0) == ("full", 2, True)
    assert not hasattr(full, "services") and not hasattr(full, "changed")
    assert (partial.sync, partial.changed, partial.services) == ("partial", 1, ["default/b:http"])
