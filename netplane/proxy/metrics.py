"""Prometheus metrics (127.0.0.1:10249 by default), under kube-proxy's names
where they exist, so existing dashboards and alerts work unchanged."""
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

SYNC_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
                8.192, 16.384)       # kube-proxy's exponential buckets: 1 ms doubling, 15 of them

# kube-proxy's buckets (0.25 and 0.5 s, every second to 59 s, 5 s steps to 115 s, 30 s steps to
# 5 min), after a millisecond range of ours, where netplane's partial syncs land
PROGRAMMING_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5) + tuple(range(1, 60)) + \
    tuple(range(60, 120, 5)) + tuple(range(120, 301, 30))


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sync_duration = Histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                                       "SyncProxyRules latency in seconds", buckets=SYNC_BUCKETS, registry=r)
        self.last_sync = Gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                               "The last time proxy rules were successfully synced", registry=r)
        self.pending_services = Gauge("kubeproxy_sync_proxy_rules_service_changes_pending",
                                      "Pending proxy rules Service changes", registry=r)
        self.pending_endpoints = Gauge("kubeproxy_sync_proxy_rules_endpoint_changes_pending",
                                       "Pending proxy rules Endpoint changes", registry=r)
        self.programming = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds", buckets=PROGRAMMING_BUCKETS, registry=r)
        self.syncs = Counter("netplane_proxy_syncs", "Syncs that reached the kernel, full or partial",
                             ["kind"], registry=r)
        self.sync_failures = Counter("netplane_proxy_sync_failures",
                                   "Syncs whose apply step failed (retried as full syncs)", registry=r)

    def observe_programming(self, triggered: list[float], now: float | None = None) -> None:
        """Network-programming latency, with kube-proxy's meaning: from when
        each change was triggered (the EndpointSlice's trigger-time stamp,
        else its arrival) to the end of the apply that carried it."""
        now = time.time() if now is None else now
        for when in triggered:
            self.programming.observe(max(0.0, now - when))

    def serve(self, address: str = "127.0.0.1", port: int = 10249):
        """Serve /metrics on a thread; returns the server (its .server_address has the port)."""
        server, _thread = start_http_server(port, address, registry=self.registry)
        return server
