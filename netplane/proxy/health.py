"""`/healthz` and `/livez` (port 10256), with kube-proxy's meaning.

The proxy is healthy unless a change has been waiting for a sync longer
than the health timeout (kube-proxy uses twice the sync period): a proxy
whose rules lag behind the cluster is reported before it causes outages.
`/healthz` is also 503 while this node is being deleted (load balancers
use it to drain the node); `/livez` ignores that and answers liveness only.
Both return kube-proxy's JSON body: lastUpdated, currentTime, nodeEligible.
Each answer is counted by its status (kubeproxy_proxy_healthz_total and
kubeproxy_proxy_livez_total) when the server is given the metrics.
"""
import json
import threading
import time

from netplane import observe_http
from netplane.observe_http import Answer


class HealthState:
    def __init__(self, timeout: float, clock=time.time) -> None:
        self.timeout, self.clock = timeout, clock
        self._lock = threading.Lock()
        self.last_updated = 0.0
        self.oldest_pending = clock()          # the initial sync is pending from the start

    def queued(self) -> None:
        """A change arrived that the kernel does not have yet."""
        with self._lock:
            if not self.oldest_pending:
                self.oldest_pending = self.clock()

    def updated(self) -> None:
        """A sync put everything queued so far into the kernel."""
        with self._lock:
            self.last_updated, self.oldest_pending = self.clock(), 0.0

    def healthy(self) -> bool:
        with self._lock:
            return not self.oldest_pending or self.clock() - self.oldest_pending < self.timeout

    def body(self, node_eligible: bool) -> dict:
        return {"lastUpdated": observe_http.rfc3339(self.last_updated),
                "currentTime": observe_http.rfc3339(self.clock()),
                "nodeEligible": node_eligible}



# a port taken at start is most likely kube-proxy's, mid-migration
TAKEN_HINT = "is kube-proxy still running on this node? stop it first"


def routes(state: HealthState, node_eligible=lambda: True, metrics=None) -> dict:
    """/healthz (503 also while the node is being deleted) and /livez;
    `metrics`, a ProxyMetrics, counts the answers by code."""
    def answer(path: str):
        def probe(_headers) -> Answer:
            eligible = node_eligible()
            code = 200 if state.healthy() and (eligible or path == "/livez") else 503
            if metrics is not None:
                metrics.probed(path, code)
            return Answer(code, "application/json", json.dumps(state.body(eligible)).encode())
        return probe
    return {path: answer(path) for path in ("/healthz", "/livez")}


def serve(address: tuple[str, int], state: HealthState, node_eligible=lambda: True, metrics=None):
    """Serve /healthz and /livez on a thread (404 elsewhere); returns the
    server. A taken port is one line naming the flag (and kube-proxy)."""
    return observe_http.serve(address, routes(state, node_eligible, metrics), "--healthz-bind-address",
                              TAKEN_HINT)
