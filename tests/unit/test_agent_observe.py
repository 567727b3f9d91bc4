"""The agent's /healthz, /livez and /metrics, driven by a fake pod-network
controller and fake CNI calls (the kernel tier runs the real agent)."""
import json
import socket
import urllib.error
import urllib.request

import pytest

from netplane import __version__, cli
from netplane.agent import observe
from netplane.agent.observe import Observer
from netplane.cli import agent as agent_cli
from netplane.cni.plugin import Reply
from netplane.errors import OperatorError
from netplane.podnet.controller import Report


class FakeController:
    """What the observer reads from a podnet Controller."""

    def __init__(self, resync_interval=30.0):
        self.resync_interval = resync_interval
        self.passes = self.failed_passes = self.total_changes = 0
        self.peers, self.last_report = [], None

    def passed(self, at, peers=("node2",), failures=(), ready=True, duration=0.25, problems=()):
        self.passes += 1
        self.failed_passes += bool(failures)
        self.last_report = Report("node1", "vxlan", ready=ready, peers=list(peers), failures=list(failures),
                                  problems=list(problems), at=at, duration=duration)
        if ready:
            self.peers = list(peers)


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def fake_plugin(replies):
    """A CNI handler answering each verb as `replies` says."""
    def handle(env, stdin, netns_fd=None):
        return replies[env["CNI_COMMAND"]]
    return handle


def error_reply(code):
    return Reply(1, json.dumps({"cniVersion": "1.0.0", "code": code, "msg": "no"}).encode())


def sample(obs, name, **labels):
    return obs.metrics.registry.get_sample_value(name, labels)


def test_cni_requests_are_counted_by_verb_and_result():
    obs = Observer()
    handle = obs.counted(fake_plugin({"ADD": Reply(0, b"{}"), "DEL": error_reply(11), "BOGUS": error_reply(4),
                                      "CHECK": Reply(1, b"not json")}))
    assert sample(obs, "netplane_agent_cni_requests_total", verb="ADD", result="ok") == 0
    assert handle({"CNI_COMMAND": "ADD"}, b"{}", None).exit_code == 0
    handle({"CNI_COMMAND": "ADD"}, b"{}", None)
    handle({"CNI_COMMAND": "DEL"}, b"{}", None)
    handle({"CNI_COMMAND": "BOGUS"}, b"{}", None)
    handle({"CNI_COMMAND": "CHECK"}, b"{}", None)
    assert sample(obs, "netplane_agent_cni_requests_total", verb="ADD", result="ok") == 2
    assert sample(obs, "netplane_agent_cni_requests_total", verb="DEL", result="11") == 1
    assert sample(obs, "netplane_agent_cni_requests_total", verb="DEL", result="ok") == 0
    assert sample(obs, "netplane_agent_cni_requests_total", verb="unknown", result="4") == 1   # labels stay bounded
    assert sample(obs, "netplane_agent_cni_requests_total", verb="CHECK", result="unknown") == 1
    assert sample(obs, "netplane_agent_cni_request_duration_seconds_count", verb="ADD") == 2


def test_cni_latency_lands_in_its_bucket(monkeypatch):
    obs = Observer()
    ticks = iter([10.0, 10.003])                  # a 3 ms request
    monkeypatch.setattr(observe.time, "perf_counter", lambda: next(ticks))
    obs.counted(fake_plugin({"ADD": Reply(0, b"")}))({"CNI_COMMAND": "ADD"}, b"", None)
    bucket = "netplane_agent_cni_request_duration_seconds_bucket"
    assert sample(obs, bucket, verb="ADD", le="0.0025") == 0
    assert sample(obs, bucket, verb="ADD", le="0.005") == 1
    assert sample(obs, bucket, verb="ADD", le="0.0005") == 0
    assert sample(obs, bucket, verb="ADD", le="10.0") == 1
    assert sample(obs, "netplane_agent_cni_request_duration_seconds_sum", verb="ADD") == pytest.approx(0.003)


def test_pod_network_series_follow_the_controller():
    network, clock = FakeController(), Clock()
    obs = Observer(network, clock)
    assert sample(obs, "netplane_agent_pod_network_reconciles_total") == 0
    assert sample(obs, "netplane_agent_pod_network_last_reconcile_timestamp_seconds") == 0
    network.passed(clock.now, peers=["node2", "node3"], duration=0.5)
    network.passed(clock.now + 1, failures=["OSError: boom"], ready=False)
    assert sample(obs, "netplane_agent_pod_network_reconciles_total") == 2
    assert sample(obs, "netplane_agent_pod_network_reconcile_failures_total") == 1
    assert sample(obs, "netplane_agent_pod_network_peers") == 2               # kept from the last pass that got there
    assert sample(obs, "netplane_agent_pod_network_ready") == 0
    assert sample(obs, "netplane_agent_pod_network_last_reconcile_timestamp_seconds") == clock.now + 1.25
    assert sample(obs, "netplane_agent_pod_network_last_reconcile_duration_seconds") == 0.25


def test_no_pod_network_series_without_a_node_source():
    obs = Observer()
    assert sample(obs, "netplane_agent_pod_network_reconciles_total") is None
    assert sample(obs, "netplane_build_info", version=__version__) == 1
    assert sample(obs, "process_cpu_seconds_total") is not None


def test_health_follows_the_cni_server_and_the_last_pass():
    network, clock = FakeController(resync_interval=30.0), Clock()
    obs = Observer(network, clock)
    obs.health.cni_serving = lambda: True
    ok, body = obs.health.check()
    assert not ok and body["podNetwork"]["lastError"] == "no pass has run yet"

    network.passed(clock.now)
    ok, body = obs.health.check()
    assert ok and body["cni"] == "serving" and body["podNetwork"]["lastError"] is None
    assert body["podNetwork"]["peers"] == 1
    # RFC 3339 in UTC, to the microsecond, as the proxy's /healthz writes it (observe_http.rfc3339)
    assert (body["podNetwork"]["lastReconcile"], body["currentTime"]) == ("2023-11-14T22:13:20.250000Z",
                                                                          "2023-11-14T22:13:20.000000Z")

    network.passed(clock.now, failures=["OSError: netlink gone"], ready=False)
    ok, body = obs.health.check()
    assert not ok and body["podNetwork"]["lastError"] == "OSError: netlink gone"

    network.passed(clock.now, ready=False, problems=["this node (node1) is not in the node source"])
    ok, body = obs.health.check()
    assert not ok and "not in the node source" in body["podNetwork"]["lastError"]

    network.passed(clock.now)
    assert obs.health.check()[0]
    obs.health.cni_serving = lambda: False
    ok, body = obs.health.check()
    assert not ok and body["cni"] == "not serving"


def test_a_pass_older_than_three_resync_intervals_is_unhealthy():
    network, clock = FakeController(resync_interval=30.0), Clock()
    obs = Observer(network, clock)
    obs.health.cni_serving = lambda: True
    network.passed(clock.now, duration=0.0)
    clock.now += 89
    assert obs.health.check()[0]
    clock.now += 2
    ok, body = obs.health.check()
    assert not ok and body["podNetwork"]["lastError"] == "no pass for 91 s (expected one every 30 s)"


def test_without_a_node_source_health_is_the_cni_server():
    obs = Observer()
    ok, body = obs.health.check()
    assert not ok and body == {"cni": "not serving", "currentTime": body["currentTime"]}
    obs.health.cni_serving = lambda: True
    ok, body = obs.health.check()
    assert ok and "podNetwork" not in body


def get(server, path):
    host, port = server.server_address[:2]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


@pytest.fixture
def served():
    network, clock = FakeController(), Clock()
    obs = Observer(network, clock)
    servers = obs.serve(("127.0.0.1", 0), ("127.0.0.1", 0))
    yield obs, network, clock, servers
    for server in servers:
        server.stop()


def test_healthz_answers_503_after_a_failed_pass_and_200_again(served):
    obs, network, clock, (health, _) = served
    obs.health.cni_serving = lambda: True
    network.passed(clock.now)
    code, kind, body = get(health, "/healthz")
    assert code == 200 and kind == "application/json" and json.loads(body)["cni"] == "serving"
    network.passed(clock.now, failures=["RuntimeError: no"], ready=False)
    code, _, body = get(health, "/healthz")
    assert code == 503 and json.loads(body)["podNetwork"]["lastError"] == "RuntimeError: no"
    assert get(health, "/livez")[0] == 200                      # liveness only
    network.passed(clock.now)
    assert get(health, "/healthz?verbose")[0] == 200
    assert sample(obs, "netplane_agent_healthz_total", code="503") == 1
    assert sample(obs, "netplane_agent_healthz_total", code="200") == 2


def test_each_server_answers_only_its_paths(served):
    _, _, _, (health, metrics) = served
    for server, path in ((health, "/metrics"), (health, "/"), (metrics, "/healthz"), (metrics, "/metricsx"),
                         (metrics, "/")):
        assert get(server, path)[0] == 404, path


def test_metrics_exposition(served):
    obs, network, clock, (_, metrics) = served
    obs.counted(fake_plugin({"DEL": Reply(0, b"")}))({"CNI_COMMAND": "DEL"}, b"", None)
    network.passed(clock.now)
    code, kind, text = get(metrics, "/metrics")
    assert code == 200 and kind.startswith("text/plain")
    assert 'netplane_agent_cni_requests_total{result="ok",verb="DEL"} 1.0' in text
    assert "netplane_agent_pod_network_reconciles_total 1.0" in text
    assert f'netplane_build_info{{version="{__version__}"}} 1.0' in text
    assert "process_resident_memory_bytes" in text
    assert "felix_" not in text and "kubeproxy_" not in text


def test_a_taken_port_is_one_line_naming_the_flag():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OperatorError) as err:
            Observer().serve(("127.0.0.1", port), None)
        message = str(err.value)
        assert "\n" not in message and "--healthz-bind-address" in message and f"127.0.0.1:{port}" in message
        assert "in use" in message

        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        healthz_port = free.getsockname()[1]
        free.close()
        with pytest.raises(OperatorError, match="--metrics-bind-address"):
            Observer().serve(("127.0.0.1", healthz_port), ("127.0.0.1", port))
    with socket.socket() as again:                # the healthz server that did start was closed
        again.bind(("127.0.0.1", healthz_port))


def test_an_empty_address_turns_a_server_off():
    assert agent_cli._bind_address("", "--metrics-bind-address") is None
    assert agent_cli._bind_address("[::1]:10265", "--metrics-bind-address") == ("::1", 10265)
    assert Observer().serve(None, None) == []


@pytest.mark.parametrize("flag, value, phrase", [
    ("--healthz-bind-address", "10266", "--healthz-bind-address '10266': expected host:port"),
    ("--metrics-bind-address", "localhost:10265", "is not an IP address"),
    ("--metrics-bind-address", "127.0.0.1:99999", "expected host:port"),
])
def test_bad_addresses_are_refused_in_one_line(flag, value, phrase, capsys):
    assert cli.main(["agent", flag, value]) == 2
    err = capsys.readouterr().err
    assert phrase in err and err.count("\n") == 1 and "Traceback" not in err
