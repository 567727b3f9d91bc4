"""Prometheus metrics (127.0.0.1:10249 by default), under kube-proxy's names
where they exist, so existing dashboards and alerts work unchanged."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

SYNC_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
                8.192, 16.384)       # kube-proxy's exponential buckets: 1 ms doubling, 15 of them


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
        self.sync_failures = Counter("netplane_proxy_sync_failures",
                                   "Syncs whose apply step failed (retried as full syncs)", registry=r)

    def serve(self, address: str = "127.0.0.1", port: int = 10249):
        """Serve /metrics on a thread; returns the server (its .server_address has the port)."""
        server, _thread = start_http_server(port, address, registry=self.registry)
        return server
