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
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
        return {"lastUpdated": _rfc3339(self.last_updated), "currentTime": _rfc3339(self.clock()),
                "nodeEligible": node_eligible}


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: HealthState, node_eligible=lambda: True,
                 metrics=None) -> None:
        self.state, self.node_eligible = state, node_eligible
        self.metrics = metrics           # a ProxyMetrics (its probed(path, code)), or None
        super().__init__(address, _Handler)

    def start(self) -> "HealthServer":
        threading.Thread(target=self.serve_forever, name="healthz", daemon=True).start()
        return self


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/healthz", "/livez"):
            self.send_error(404)
            return
        eligible = self.server.node_eligible()
        ok = self.server.state.healthy() and (eligible or path == "/livez")
        body = json.dumps(self.server.state.body(eligible)).encode()
        code = 200 if ok else 503
        if self.server.metrics is not None:
            self.server.metrics.probed(path, code)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:       # probes every few seconds: not worth a log line each
        pass
