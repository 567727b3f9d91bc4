"""A daemon's small HTTP endpoints (health probes, metrics): fixed paths,
404 everywhere else, and a taken port said in one line naming the flag.

prometheus_client's start_http_server answers every path with metrics,
so a probe or scraper pointed at the wrong path would never learn it.
"""
import errno
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from netplane.errors import OperatorError


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


# A route gets the request's headers (the metrics route reads Accept).
Route = Callable[[Mapping[str, str]], Answer]


class PathServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], routes: Mapping[str, Route]) -> None:
        self.routes = routes
        # an IPv6 host ("::", "::1") needs an IPv6 socket; http.server defaults to IPv4
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def start(self, name: str) -> "PathServer":
        threading.Thread(target=self.serve_forever, name=name, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: PathServer

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(404)
            return
        answer = route(self.headers)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, *args) -> None:       # probes and scrapes every few seconds: no log line each
        pass


def serve(address: tuple[str, int], routes: Mapping[str, Route], flag: str, taken_hint: str = "") -> PathServer:
    """Listen on `address` and serve `routes` on a thread. A port that is
    taken (`taken_hint` says by whom, likely) or an address this host lacks
    is an OperatorError naming `flag`."""
    try:
        server = PathServer(address, routes)
    except OSError as exc:
        hint = f" ({taken_hint})" if taken_hint and exc.errno == errno.EADDRINUSE else ""
        paths = " and ".join(routes)
        raise OperatorError(f"cannot serve {paths} on {where(address)}: {exc.strerror or exc}{hint}; "
                            f"move it with {flag}, or turn it off with {flag}=''") from None
    return server.start(name=flag.lstrip("-"))


def where(address: tuple[str, int]) -> str:
    """host:port as an operator writes it, [v6]:port for IPv6."""
    return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"


def rfc3339(ts: float) -> str:
    """A time in a JSON body (the proxy's /healthz, the agent's): RFC 3339 in
    UTC with a "Z", to the microsecond. Go's time.Time, which kube-proxy's
    body holds, writes up to nanoseconds; readers of RFC 3339 take both."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def metrics_route(registry: CollectorRegistry) -> Route:
    """Prometheus' exposition of `registry`, in the format the scraper asks for."""
    def answer(headers: Mapping[str, str]) -> Answer:
        encoder, content_type = choose_encoder(headers.get("Accept", ""))
        return Answer(200, content_type, encoder(registry))
    return answer
