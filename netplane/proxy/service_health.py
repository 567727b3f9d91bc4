"""healthCheckNodePort: the per-Service health checks cloud load balancers probe.

A Service with `externalTrafficPolicy: Local` and a load balancer gets a
`healthCheckNodePort`. The load balancer sends its traffic only to nodes
whose answer on that port is 200, because only they have a local endpoint
to serve it (Local keeps the client's address, so traffic is never
forwarded to another node). kube-proxy serves it in every mode, and so
does netplane, with kube-proxy's answer: any path, 200 with the count of
this node's ready endpoints, 503 with none (or while the proxy itself is
unhealthy), and the JSON body
`{"service": {"namespace", "name"}, "localEndpoints", "serviceProxyHealthy"}`.

HealthChecks follows the sync: it is told the port states a sync decided
(all on a full sync, the changed ones on a partial), so its cost follows
the change. Servers start for new ports, stop for ports no Service claims
any more, and otherwise only the counts they answer with change.
"""
import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from netplane.proxy.model import PortName
from netplane.proxy.state import PortState

log = logging.getLogger("netplane.proxy.health")


@dataclass(frozen=True)
class Check:
    namespace: str
    name: str
    local_endpoints: int


def check_of(state: PortState | None, node: str) -> tuple[int, Check] | None:
    """(port, check) for a Service port that needs one, else None."""
    if state is None:
        return None
    port = state.port
    if not (port.health_check_node_port and port.external_local):
        return None
    local = sum(1 for e in state.endpoints if e.ready and e.node == node)
    return port.health_check_node_port, Check(port.name.namespace, port.name.name, local)


class HealthChecks:
    """The checks this node answers, kept in step with the syncs."""

    def __init__(self, node: str, healthy=lambda: True, address: str = "") -> None:
        self.node, self.healthy, self.address = node, healthy, address
        self._by_port_name: dict[PortName, tuple[int, Check]] = {}
        self._servers: dict[int, _Server] = {}
        self._lock = threading.Lock()

    def update(self, states: dict[PortName, PortState | None], full: bool) -> None:
        """After a sync: `states` holds every port (full) or the changed ones."""
        if full:
            self._by_port_name.clear()
        for name, state in states.items():
            entry = check_of(state, self.node)
            if entry:
                self._by_port_name[name] = entry
            else:
                self._by_port_name.pop(name, None)
        self._apply(self._wanted())

    def _wanted(self) -> dict[int, Check]:
        """Per port, one check. A Service's several ports share its port:
        the highest count answers (kube-proxy keeps one count per Service)."""
        wanted: dict[int, Check] = {}
        for port, check in sorted(self._by_port_name.values(), key=lambda e: (e[0], e[1].namespace, e[1].name)):
            held = wanted.get(port)
            if held and (held.namespace, held.name) != (check.namespace, check.name):
                log.warning("healthCheckNodePort %d: claimed by %s/%s and %s/%s; serving the first",
                            port, held.namespace, held.name, check.namespace, check.name)
                continue
            if not held or check.local_endpoints > held.local_endpoints:
                wanted[port] = check
        return wanted

    def _apply(self, wanted: dict[int, Check]) -> None:
        with self._lock:
            for port in set(self._servers) - set(wanted):
                self._servers.pop(port).stop()
            for port, check in wanted.items():
                server = self._servers.get(port)
                if server is None:
                    server = self._start(port)
                    if server is None:
                        continue
                server.check = check

    def _start(self, port: int) -> "_Server | None":
        try:
            server = _Server((self.address, port), self.healthy)
        except OSError as exc:   # retried at the next sync that still wants it
            log.warning("cannot serve healthCheckNodePort %d: %s", port, exc.strerror)
            return None
        threading.Thread(target=server.serve_forever, name=f"hcnp-{port}", daemon=True).start()
        self._servers[port] = server
        return server

    def ports(self) -> dict[int, Check]:
        with self._lock:
            return {port: server.check for port, server in self._servers.items()}

    def stop(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.stop()
            self._servers.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    check: Check

    def __init__(self, address: tuple[str, int], healthy) -> None:
        self.healthy = healthy
        super().__init__(address, _Handler)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        check, healthy = self.server.check, bool(self.server.healthy())
        body = json.dumps({"service": {"namespace": check.namespace, "name": check.name},
                           "localEndpoints": check.local_endpoints, "serviceProxyHealthy": healthy}).encode()
        self.send_response(200 if check.local_endpoints and healthy else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass  # load balancers probe every few seconds: not worth a log line each
