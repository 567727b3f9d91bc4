"""Health endpoints with kube-proxy's meaning, and metrics under its names."""
import json
import urllib.error
import urllib.request

import pytest

from netplane.proxy import health
from netplane.proxy.health import HealthState
from netplane.proxy.metrics import ProxyMetrics


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_unhealthy_only_when_a_change_waits_longer_than_the_timeout():
    clock = Clock()
    state = HealthState(timeout=60, clock=clock)
    assert state.healthy()                     # the first sync is pending, but not for long yet
    clock.now += 61
    assert not state.healthy()                 # never synced within the timeout
    state.updated()
    assert state.healthy()
    clock.now += 3600
    assert state.healthy()                     # idle is fine: nothing is waiting
    state.queued()
    clock.now += 30
    state.queued()                             # a later change does not restart the clock
    clock.now += 31
    assert not state.healthy()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, json.loads(body) if err.headers.get("Content-Type") == "application/json" else body


@pytest.fixture
def server():
    clock, eligible = Clock(), {"value": True}
    state = HealthState(timeout=60, clock=clock)
    srv = health.serve(("127.0.0.1", 0), state, node_eligible=lambda: eligible["value"])
    yield f"http://127.0.0.1:{srv.server_address[1]}", state, clock, eligible
    srv.shutdown()
    srv.server_close()


def test_healthz_and_livez(server):
    url, state, clock, eligible = server
    state.updated()
    status, body = get(url + "/healthz")
    assert status == 200 and body["nodeEligible"] is True and body["lastUpdated"].endswith("Z")
    eligible["value"] = False                  # the node is being deleted: drain it, but it is alive
    assert get(url + "/healthz")[0] == 503 and get(url + "/livez")[0] == 200
    eligible["value"] = True
    state.queued()
    clock.now += 120
    assert get(url + "/healthz")[0] == 503 and get(url + "/livez")[0] == 503
    assert get(url + "/nope")[0] == 404


def test_metrics_use_kube_proxys_names():
    metrics = ProxyMetrics()
    metrics.synced(4, full=False, seconds=0.003)
    metrics.pending_services.set(2)
    metrics.sync_failures.inc()
    server = metrics.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.004"} 1.0' in text
    assert 'kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"} 1.0' in text
    assert 'kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family="IPv4"}' not in text
    assert 'kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}' in text
    assert "kubeproxy_sync_proxy_rules_service_changes_pending 2.0" in text
    assert "kubeproxy_sync_proxy_rules_endpoint_changes_pending 0.0" in text
    assert "kubeproxy_sync_proxy_rules_service_changes_total 0.0" in text
    assert "netplane_proxy_sync_failures_total 1.0" in text
