"""Prometheus metrics (127.0.0.1:10249 by default), under kube-proxy's names
and label sets where they exist, so existing dashboards and alerts work
unchanged; netplane_* where kube-proxy has nothing to say.

kube-proxy's current set (pkg/proxy/metrics) labels most series with
`ip_family` ("IPv4"/"IPv6"), as it runs one proxier per family; netplane's
dataplane syncs the families in turn and reports each one the same way.
As kube-proxy does, what only one mode has is registered for that mode
only (`use_mode`): the iptables rule counts and restore failures, the
nftables sync failures. What kube-proxy has not:
- `netplane_proxy_objects{ip_family,kind}` and `..._written`: what the
  other modes hold and wrote (chains, map elements, virtual servers...);
- `netplane_proxy_apply_failures_total{ip_family,sync}` in every mode;
- `netplane_build_info{version,python}` (kube-proxy's kubernetes_build_info).
The network-programming latency has no ip_family label: a change is not
tracked by family (a Service change concerns both).
"""
import platform
import time

from prometheus_client import (CollectorRegistry, Counter, Gauge, GCCollector, Histogram, PlatformCollector,
                               ProcessCollector)

import netplane
from netplane.proxy.modes import Counts

SYNC_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
                8.192, 16.384)       # kube-proxy's exponential buckets: 1 ms doubling, 15 of them

# kube-proxy's buckets (0.25 and 0.5 s, every second to 59 s, 5 s steps to 115 s, 30 s steps to
# 5 min), after a millisecond range of ours, where netplane's partial syncs land
PROGRAMMING_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5) + tuple(range(1, 60)) + \
    tuple(range(60, 120, 5)) + tuple(range(120, 301, 30))

FAMILY = {4: "IPv4", 6: "IPv6"}          # kube-proxy's ip_family values (v1.IPFamily)
KP = "kubeproxy_sync_proxy_rules"


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, mode: str | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._sync_metrics(r)
        self._change_metrics(r)
        self.programming = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds", buckets=PROGRAMMING_BUCKETS, registry=r)
        self.no_local = Gauge(f"{KP}_no_local_endpoints_total",
                              "Number of services with a Local traffic policy and no endpoints",
                              ["ip_family", "traffic_policy"], registry=r)
        self.conntrack_duration = Histogram("kubeproxy_conntrack_reconciler_sync_duration_seconds",
                                            "ReconcileConntrackFlowsLatency latency in seconds", ["ip_family"],
                                            buckets=SYNC_BUCKETS, registry=r)
        self.conntrack_deleted = Counter("kubeproxy_conntrack_reconciler_deleted_entries",
                                         "Cumulative conntrack flows deleted by conntrack reconciler",
                                         ["ip_family"], registry=r)
        self.healthz = Counter("kubeproxy_proxy_healthz", "Cumulative proxy healthz HTTP status", ["code"],
                               registry=r)
        self.livez = Counter("kubeproxy_proxy_livez", "Cumulative proxy livez HTTP status", ["code"], registry=r)
        self._process_metrics(r)
        self.mode: str | None = None
        self._failures: list[Counter] = []
        self._partial_failures: list[Counter] = []
        self._held = self._written = None
        if mode:
            self.use_mode(mode)

    def _sync_metrics(self, r: CollectorRegistry) -> None:
        fam = ["ip_family"]
        self.sync_duration = Histogram(f"{KP}_duration_seconds", "SyncProxyRules latency in seconds", fam,
                                       buckets=SYNC_BUCKETS, registry=r)
        self.full_sync_duration = Histogram("kubeproxy_sync_full_proxy_rules_duration_seconds",
                                            "SyncProxyRules latency in seconds for full resyncs", fam,
                                            buckets=SYNC_BUCKETS, registry=r)
        self.partial_sync_duration = Histogram("kubeproxy_sync_partial_proxy_rules_duration_seconds",
                                               "SyncProxyRules latency in seconds for partial resyncs", fam,
                                               buckets=SYNC_BUCKETS, registry=r)
        self.last_sync = Gauge(f"{KP}_last_timestamp_seconds", "The last time proxy rules were successfully synced",
                               fam, registry=r)
        self.last_queued = Gauge(f"{KP}_last_queued_timestamp_seconds",
                                 "The last time a sync of proxy rules was queued", fam, registry=r)
        self.syncs = Counter("netplane_proxy_syncs", "Syncs that reached the kernel, full or partial",
                             ["kind"], registry=r)
        self.sync_failures = Counter("netplane_proxy_sync_failures",
                                     "Syncs that failed, at any step (retried as full syncs)", registry=r)
        self.apply_failures = Counter("netplane_proxy_apply_failures",
                                      "Applies the kernel refused, per family and sync kind", ["ip_family", "sync"],
                                      registry=r)

    def _change_metrics(self, r: CollectorRegistry) -> None:
        self.pending_services = Gauge(f"{KP}_service_changes_pending", "Pending proxy rules Service changes",
                                      registry=r)
        self.pending_endpoints = Gauge(f"{KP}_endpoint_changes_pending", "Pending proxy rules Endpoint changes",
                                       registry=r)
        self.service_changes = Counter(f"{KP}_service_changes", "Cumulative proxy rules Service changes",
                                       registry=r)
        self.endpoint_changes = Counter(f"{KP}_endpoint_changes", "Cumulative proxy rules Endpoint changes",
                                        registry=r)

    def _process_metrics(self, r: CollectorRegistry) -> None:
        """process_* (CPU, memory, fds, start time), python_* and the build,
        as kube-proxy has process_*, go_* and kubernetes_build_info."""
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Gauge("netplane_build_info", "A metric with a constant '1' value labeled by the netplane version and "
              "the Python version it runs on", ["version", "python"], registry=r).labels(
            netplane.__version__, platform.python_version()).set(1)

    def use_mode(self, mode: str) -> None:
        """Register what only this mode has (once), as kube-proxy's RegisterMetrics(mode) does."""
        if self.mode is not None:
            return
        self.mode, r, fam = mode, self.registry, ["ip_family"]
        if mode == "iptables":
            self._failures.append(Counter(f"{KP}_iptables_restore_failures", "Cumulative proxy iptables restore "
                                          "failures", fam, registry=r))
            self._partial_failures.append(Counter(f"{KP}_iptables_partial_restore_failures", "Cumulative proxy "
                                                  "iptables partial restore failures", fam, registry=r))
            self._held = Gauge(f"{KP}_iptables_total", "Total number of iptables rules owned by kube-proxy",
                               ["ip_family", "table"], registry=r)
            self._written = Gauge(f"{KP}_iptables_last", "Number of iptables rules written by kube-proxy in last "
                                  "sync", ["ip_family", "table"], registry=r)
            return
        if mode == "nftables":
            self._failures.append(Counter(f"{KP}_nftables_sync_failures", "Cumulative proxy nftables sync failures",
                                          fam, registry=r))
        self._held = Gauge("netplane_proxy_objects", f"Objects the {mode} mode holds in the kernel, per kind",
                           ["ip_family", "kind"], registry=r)
        self._written = Gauge("netplane_proxy_objects_written", f"Objects the {mode} mode wrote in the last sync, "
                              "per kind", ["ip_family", "kind"], registry=r)

    def changed(self, kind: str, count: int = 1) -> None:
        """Changes seen from the source (kube-proxy counts each update of a Service or EndpointSlice)."""
        if kind == "Service":
            self.service_changes.inc(count)
        elif kind == "EndpointSlice":
            self.endpoint_changes.inc(count)

    def queued(self, families) -> None:
        for family in families:
            self.last_queued.labels(FAMILY[family]).set_to_current_time()

    def synced(self, family: int, full: bool, seconds: float) -> None:
        fam = FAMILY[family]
        self.sync_duration.labels(fam).observe(seconds)
        (self.full_sync_duration if full else self.partial_sync_duration).labels(fam).observe(seconds)
        self.last_sync.labels(fam).set_to_current_time()

    def apply_failed(self, family: int, full: bool) -> None:
        fam = FAMILY[family]
        self.apply_failures.labels(fam, "full" if full else "partial").inc()
        for counter in self._failures:
            counter.labels(fam).inc()
        if not full:
            for counter in self._partial_failures:
                counter.labels(fam).inc()

    def counted(self, family: int, counts: Counts) -> None:
        """A mode's counts after a sync; kinds a partial sync left out keep their value."""
        if self._held is None:
            return
        fam = FAMILY[family]
        for kind, n in counts.held.items():
            self._held.labels(fam, kind).set(n)
        for kind, n in counts.written.items():
            self._written.labels(fam, kind).set(n)

    def no_local_endpoints(self, family: int, internal: int, external: int) -> None:
        self.no_local.labels(FAMILY[family], "internal").set(internal)
        self.no_local.labels(FAMILY[family], "external").set(external)

    def conntrack_cleaned(self, family: int, seconds: float, deleted: int) -> None:
        self.conntrack_duration.labels(FAMILY[family]).observe(seconds)
        if deleted:
            self.conntrack_deleted.labels(FAMILY[family]).inc(deleted)

    def probed(self, path: str, code: int) -> None:
        """A /healthz or /livez answer, by its HTTP status."""
        counter = {"/healthz": self.healthz, "/livez": self.livez}.get(path)
        if counter is not None:
            counter.labels(str(code)).inc()

    def observe_programming(self, triggered: list[float], now: float | None = None) -> None:
        """Network-programming latency, with kube-proxy's meaning: from when
        each change was triggered (the EndpointSlice's trigger-time stamp,
        else its arrival) to the end of the apply that carried it."""
        now = time.time() if now is None else now
        for when in triggered:
            self.programming.observe(max(0.0, now - when))

    def serve(self, address: str = "127.0.0.1", port: int = 10249, mode: str | None = None):
        """Serve /metrics, and /proxyMode (the mode's name as plain text, as
        kube-proxy answers it), on a thread; 404 elsewhere. Returns the
        server (its .server_address has the port; shutdown() and
        server_close() stop it). A taken port is one line naming the flag."""
        from netplane import observe_http
        from netplane.proxy import health

        name = (mode or self.mode or "").encode()
        routes = {"/metrics": observe_http.metrics_route(self.registry),
                  "/proxyMode": lambda _headers: observe_http.Answer(200, "text/plain; charset=utf-8", name)}
        return observe_http.serve((address, port), routes, "--metrics-bind-address", health.TAKEN_HINT)


class NoLocalEndpoints:
    """One family's service ports whose Local policy finds no endpoint on
    this node while the port has some elsewhere (kube-proxy's
    no_local_endpoints_total: a gauge, internal and external). Kept as sets
    updated from the changed ports only, so a partial sync stays O(change)."""

    def __init__(self) -> None:
        self.internal: set = set()
        self.external: set = set()

    def update(self, policies: dict, names) -> tuple[int, int]:
        """`policies`: the family's PortPolicy by name; `names`: the changed ones (None: all)."""
        if names is None:
            self.internal, self.external = set(), set()
            names = policies.keys()
        for name in names:
            self.internal.discard(name)
            self.external.discard(name)
            p = policies.get(name)
            if p is None or not p.has_any:      # no endpoint anywhere: rejected, not a Local gap
                continue
            if p.port.internal_local and not p.internal:
                self.internal.add(name)
            if p.port.external_local and p.port.externally_accessible and not p.external:
                self.external.add(name)
        return len(self.internal), len(self.external)
