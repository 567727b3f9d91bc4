"""What the agent tells an operator: /healthz, /livez and /metrics.

- /healthz (0.0.0.0:10266 by default, for a DaemonSet's readiness probe on
  the host network): 200 while the CNI server is serving and, with a node
  source, the pod network's last pass succeeded and is recent (three resync
  intervals, at least 10 s: the loop passes at least once an interval, so an
  older pass means it is stuck). Else 503. Either way a small JSON body says
  why, as kube-proxy's does.
- /livez: liveness only (the process answers), for a liveness probe: a node
  whose API server is away must not get its agent restarted in a loop.
- /metrics (127.0.0.1:10265 by default): netplane_agent_* series, process
  metrics and netplane_build_info, from the agent's own registry.
(ports.py says why those ports.)
"""
import json
import logging
import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from netplane import __version__
from netplane.observe_http import Answer, PathServer, metrics_route, rfc3339, serve, where

log = logging.getLogger("netplane.agent")

CNI_VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
# 0.5 ms (a VERSION, a cached CHECK) to 10 s (an ADD stuck behind a busy kernel)
CNI_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STALE_AFTER_INTERVALS = 3
MIN_STALE_SECONDS = 10.0
HINT = "is another netplane agent running on this node?"


class AgentMetrics:
    def __init__(self, network=None, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.cni_requests = Counter("netplane_agent_cni_requests", "CNI requests served, by verb and result "
                                    "(ok, or the CNI error code)", ["verb", "result"], registry=r)
        self.cni_duration = Histogram("netplane_agent_cni_request_duration_seconds", "CNI request latency, by verb",
                                      ["verb"], buckets=CNI_BUCKETS, registry=r)
        self.healthz = Counter("netplane_agent_healthz", "/healthz answers, by HTTP code", ["code"], registry=r)
        for verb in CNI_VERBS:          # present from the start, so rate() sees the first request
            self.cni_requests.labels(verb, "ok")
            self.cni_duration.labels(verb)
        Gauge("netplane_build_info", "netplane's version (always 1)", ["version"], registry=r).labels(__version__).set(1)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if network is not None:
            r.register(PodNetworkCollector(network))

    def cni_request(self, verb: str, result: str, seconds: float) -> None:
        verb = verb if verb in CNI_VERBS else "unknown"     # the label set stays bounded whatever a client sends
        self.cni_requests.labels(verb, result).inc()
        self.cni_duration.labels(verb).observe(seconds)


class PodNetworkCollector(Collector):
    """Read at scrape time from the controller's own counters: nothing to
    keep in step, and a scrape always sees the latest pass."""

    def __init__(self, controller) -> None:
        self.controller = controller

    def collect(self):
        c, report = self.controller, self.controller.last_report
        yield CounterMetricFamily("netplane_agent_pod_network_reconciles", "Pod network passes run", c.passes)
        yield CounterMetricFamily("netplane_agent_pod_network_reconcile_failures",
                                  "Pod network passes that hit an error (they are retried after 1 s)",
                                  c.failed_passes)
        yield CounterMetricFamily("netplane_agent_pod_network_changes", "Kernel edits the pod network applied",
                                  c.total_changes)
        yield GaugeMetricFamily("netplane_agent_pod_network_peers", "Nodes this node's overlay or routes reach",
                                len(c.peers))
        yield GaugeMetricFamily("netplane_agent_pod_network_ready",
                                "1 if the last pass set the pod network up as the node source describes it",
                                int(bool(report and report.succeeded)))
        yield GaugeMetricFamily("netplane_agent_pod_network_last_reconcile_timestamp_seconds",
                                "When the last pass ended (0: none yet)", report.at + report.duration if report else 0)
        yield GaugeMetricFamily("netplane_agent_pod_network_last_reconcile_duration_seconds",
                                "How long the last pass took", report.duration if report else 0)


class AgentHealth:
    def __init__(self, network=None, clock=time.time) -> None:
        self.network, self.clock = network, clock
        self.cni_serving: Callable[[], bool] = lambda: False    # main sets it once the CNI server exists
        if network is not None:
            self.stale_after = max(STALE_AFTER_INTERVALS * network.resync_interval, MIN_STALE_SECONDS)

    def check(self) -> tuple[bool, dict]:
        cni = self.cni_serving()
        body = {"cni": "serving" if cni else "not serving"}
        if self.network is None:
            return cni, body | {"currentTime": rfc3339(self.clock())}
        network_ok, body["podNetwork"] = self._pod_network()
        return cni and network_ok, body | {"currentTime": rfc3339(self.clock())}

    def _pod_network(self) -> tuple[bool, dict]:
        report = self.network.last_report
        if report is None:
            return False, {"ready": False, "lastReconcile": None, "lastError": "no pass has run yet"}
        ended = report.at + report.duration
        error = (report.failures or ([] if report.ready else report.problems) or [None])[0]
        stale = self.clock() - ended > self.stale_after
        if stale and not error:
            error = f"no pass for {self.clock() - ended:.0f} s (expected one every {self.network.resync_interval:g} s)"
        return report.succeeded and not stale, {"ready": report.succeeded, "peers": len(report.peers),
                                                "lastReconcile": rfc3339(ended), "lastError": error}


class Observer:
    """The agent's metrics and health, and the servers that publish them."""

    def __init__(self, network=None, clock=time.time) -> None:
        self.metrics = AgentMetrics(network)
        self.health = AgentHealth(network, clock)

    def counted(self, handler):
        """Wrap the CNI server's handler (env, stdin, netns_fd) -> Reply to
        count each request by verb and result, and time it."""
        def handle(env, stdin, netns_fd=None):
            started = time.perf_counter()
            reply = handler(env, stdin, netns_fd)
            self.metrics.cni_request(env.get("CNI_COMMAND", ""), result_of(reply), time.perf_counter() - started)
            return reply
        return handle

    def serve(self, healthz: tuple[str, int] | None, metrics: tuple[str, int] | None) -> list[PathServer]:
        """Start the servers the addresses ask for (None: off). A taken port
        is an OperatorError, raised before the agent touches anything."""
        servers = []
        try:
            if healthz:
                servers.append(serve(healthz, {"/healthz": self.healthz, "/livez": self.livez},
                                     "--healthz-bind-address", HINT))
                log.info("serving /healthz and /livez on %s", where(healthz))
            if metrics:
                servers.append(serve(metrics, {"/metrics": metrics_route(self.metrics.registry)},
                                     "--metrics-bind-address", HINT))
                log.info("serving /metrics on %s", where(metrics))
        except BaseException:
            for server in servers:
                server.stop()
            raise
        return servers

    def healthz(self, _headers) -> Answer:
        ok, body = self.health.check()
        code = 200 if ok else 503
        self.metrics.healthz.labels(str(code)).inc()
        return _json(code, body)

    def livez(self, _headers) -> Answer:
        return _json(200, {"currentTime": rfc3339(self.health.clock())})


def result_of(reply) -> str:
    """'ok', or the CNI error code the reply carries ('unknown' if it carries none)."""
    if reply.exit_code == 0:
        return "ok"
    try:
        return str(int(json.loads(reply.stdout)["code"]))
    except (ValueError, TypeError, KeyError):
        return "unknown"


def _json(code: int, body: dict) -> Answer:
    return Answer(code, "application/json", json.dumps(body).encode())
