"""An in-process fake Kubernetes API server, for tests.

Theory of operation: it speaks the real HTTP wire protocol for the few
verbs a data plane uses (list, get, watch, merge patch), over plain HTTP,
so the official `kubernetes` client and our Reflector run against it
unchanged. State is what etcd would hold: one global resourceVersion (rv)
that every write bumps, the objects of each collection, and per collection
the history of events a watch replays from its rv. `compact()` forgets that
history, as etcd compaction does, so an older rv then gets the ERROR event
with a 410 Status that a real apiserver sends. Tests write through put() and
delete(), and break things with drop_watches() (streams cut mid-flight) and
pause() (every request answers 503, as while the apiserver restarts).

A watch is a chunked HTTP/1.1 response of newline-delimited JSON events,
served by its own thread that sleeps on a Condition the writers notify.
The one field selector a data plane sends, `metadata.name=NAME` (kube-proxy
watches its own Node with it), filters lists and watches; any other field
selector, and every label selector, answers 400 rather than returning more
than was asked for. `requests` records every request as (method, target),
the target with its query string, so tests can check what a client asked.
"""
import copy
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

import yaml

from netplane.kube.client import ENDPOINTSLICES, NODES, SERVICES, Resource

log = logging.getLogger("netplane.kube")

MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
DEFAULT_WATCH_SECONDS = 300
Selector = Callable[[dict], bool]


class Request(NamedTuple):
    """One HTTP request as received: e.g. ("GET", "/api/v1/services?watch=true&resourceVersion=5")."""
    method: str
    target: str         # the path with its query string, as sent

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query))


class FakeApiServer:
    @classmethod
    def in_netns(cls, netns_path: str, host: str, **options) -> "FakeApiServer":
        """A server listening inside a network namespace (its threads stay here:
        a socket keeps the namespace it was made in)."""
        from netplane.netlink.netns import call_in_netns, open_netns

        fd = open_netns(netns_path)
        try:
            sock = call_in_netns(fd, lambda: socket.create_server((host, 0)))
        finally:
            os.close(fd)
        return cls(sock=sock, **options)

    def __init__(self, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None, *,
                 resources=(NODES, SERVICES, ENDPOINTSLICES), bookmark_interval: float = 1.0):
        self.bookmark_interval = bookmark_interval
        self.requests: list[Request] = []      # every request received, oldest first
        self._requests_lock = threading.Lock()
        self._cond = threading.Condition()      # guards everything below; writers notify watchers
        self._rv = 0
        self._floor = 0         # events at or below this rv were compacted away
        self._resources: dict[tuple[str, str, str], Resource] = {}
        self._objects: dict[Resource, dict[tuple[str, str], dict]] = {}
        self._history: dict[Resource, list[tuple[int, str, dict]]] = {}
        self._drops = 0         # bumped to end every open watch abruptly
        self._paused = self._closed = False
        self._conns: set[socket.socket] = set()
        self._watching: set[socket.socket] = set()
        for resource in resources:
            self._register(resource)
        self._http = _HttpServer(self, host, port, sock)
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> "FakeApiServer":
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), name="fake-apiserver",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread:
            self._http.shutdown()
        self._cut(self._conns)      # idle keep-alive connections too, or their threads linger
        self._http.server_close()

    def __enter__(self) -> "FakeApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def kubeconfig(self, path) -> str:
        """Write a kubeconfig for this server (plain HTTP, no credentials); returns the path."""
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                  "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                  "users": [{"name": "fake", "user": {}}],
                  "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        return str(path)

    # --- test controls -----------------------------------------------------

    def put(self, resource: Resource, obj: dict) -> dict:
        """Create or replace an object (ADDED or MODIFIED); returns it as stored."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        key = _key(resource, meta.get("name"), meta.get("namespace"))
        with self._cond:
            self._register(resource)
            old = self._objects[resource].get(key)
            old_meta = old["metadata"] if old else {}
            self._rv += 1
            obj.setdefault("kind", _kind(resource))
            obj.setdefault("apiVersion", resource.api_version)
            meta["resourceVersion"] = str(self._rv)
            meta.setdefault("uid", old_meta.get("uid") or str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", old_meta.get("creationTimestamp") or _now())
            self._objects[resource][key] = obj
            self._record(resource, "MODIFIED" if old else "ADDED", obj)
            return copy.deepcopy(obj)

    def delete(self, resource: Resource, name: str, namespace: str | None = None) -> dict:
        """Delete an object (KeyError if absent); returns it with the rv of its deletion."""
        with self._cond:
            obj = copy.deepcopy(self._objects.get(resource, {}).pop(_key(resource, name, namespace)))
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._record(resource, "DELETED", obj)
            return obj

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict | None:
        with self._cond:
            return copy.deepcopy(self._objects.get(resource, {}).get(_key(resource, name, namespace)))

    def compact(self) -> None:
        """Forget all history: watches from an rv older than now get 410."""
        with self._cond:
            self._floor = self._rv
            for events in self._history.values():
                events.clear()

    def drop_watches(self) -> None:
        """Cut every open watch stream mid-flight, without the final chunk."""
        with self._cond:
            self._drops += 1
            self._cond.notify_all()
        self._cut(self._watching)

    def pause(self) -> None:
        """Lose the API: open watches drop, and every request answers 503 until resume()."""
        with self._cond:
            self._paused = True
        self.drop_watches()

    def resume(self) -> None:
        with self._cond:
            self._paused = False

    # --- internals ---------------------------------------------------------

    def _register(self, resource: Resource) -> None:
        self._resources[(resource.group, resource.version, resource.plural)] = resource
        self._objects.setdefault(resource, {})
        self._history.setdefault(resource, [])

    def _record(self, resource: Resource, kind: str, obj: dict) -> None:
        # stored objects are replaced, never changed in place, so history can share them
        self._history[resource].append((self._rv, kind, obj))
        self._cond.notify_all()

    def _cut(self, socks) -> None:
        with self._cond:
            socks = list(socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _dispatch(self, h: "_Handler", method: str, path: str, query: dict, body: bytes) -> None:
        if self._paused:
            raise Status(503, "ServiceUnavailable", "the fake apiserver is paused")
        resource, namespace, name = self._route(path)
        if method == "PATCH" and name:
            return h.send_json(200, self._patch(resource, namespace, name, h.headers.get("Content-Type"), body))
        if method != "GET":
            raise Status(405, "MethodNotAllowed", f"{method} is not supported by the fake apiserver")
        if name:
            found = self.get(resource, name, namespace)
            if found is None:
                raise Status(404, "NotFound", f'{resource.plural} "{name}" not found')
            return h.send_json(200, found)
        if "labelSelector" in query:
            raise Status(400, "BadRequest", "label selectors are not supported by the fake apiserver")
        wanted = field_selector(query.get("fieldSelector"), namespace)
        if query.get("watch") in ("1", "true"):
            return self._watch(h, resource, wanted, query)
        h.send_json(200, self._list(resource, wanted))

    def _route(self, path: str) -> tuple[Resource, str | None, str | None]:
        """/api/v1[/namespaces/NS]/PLURAL[/NAME], or /apis/GROUP/VERSION/..."""
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            parts.insert(1, "")     # the core group has no name
        if parts[0] not in ("api", "apis") or len(parts) < 4:
            raise Status(404, "NotFound", f"no route for {path}")
        group, version, rest = parts[1], parts[2], parts[3:]
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        resource = self._resources.get((group, version, rest[0]))
        name = rest[1] if len(rest) == 2 else None
        if (resource is None or len(rest) > 2 or (namespace and not resource.namespaced)
                or (name and resource.namespaced and not namespace)):
            raise Status(404, "NotFound", f"no route for {path}")
        return resource, namespace, name

    def _list(self, resource: Resource, wanted: Selector) -> dict:
        with self._cond:
            # a real apiserver leaves kind and apiVersion out of the items of a typed list
            items = [{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
                     for obj in self._objects[resource].values() if wanted(obj)]
            rv = self._rv
        return {"kind": _kind(resource) + "List", "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(rv)}, "items": items}

    def _patch(self, resource: Resource, namespace: str | None, name: str, content_type: str | None,
               body: bytes) -> dict:
        if (content_type or "").split(";")[0].strip() not in MERGE_PATCH_TYPES:
            raise Status(415, "UnsupportedMediaType", f"the fake apiserver cannot apply {content_type} patches")
        try:
            patch = json.loads(body)
        except ValueError:
            raise Status(400, "BadRequest", "the patch is not JSON") from None
        if not isinstance(patch, dict):
            raise Status(400, "BadRequest", "a merge patch must be a JSON object")
        with self._cond:
            current = self.get(resource, name, namespace)
            if current is None:
                raise Status(404, "NotFound", f'{resource.plural} "{name}" not found')
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise Status(409, "Conflict", f'the object has been modified: {resource.plural} "{name}"')
            merged = merge_patch(current, patch)
            merged.setdefault("metadata", {})
            for field in ("name", "namespace", "uid", "creationTimestamp"):   # a patch cannot rename or move
                if field in current["metadata"]:
                    merged["metadata"][field] = current["metadata"][field]
            return self.put(resource, merged)

    def _watch(self, h: "_Handler", resource: Resource, wanted: Selector, query: dict) -> None:
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        since = query.get("resourceVersion") or "0"
        if not since.isdigit():
            raise Status(400, "BadRequest", f"invalid resourceVersion {since!r}")
        with self._cond:
            drops, cursor = self._drops, int(since)
            if cursor == 0:     # "any version": the current state as ADDED events, then live ones
                first, cursor = [("ADDED", o) for o in self._objects[resource].values() if wanted(o)], self._rv
            else:
                first = []
            self._watching.add(h.connection)
        try:
            h.start_stream()
            h.send_events(first)
            self._stream(h, resource, wanted, cursor, drops, deadline, bookmarks)
        finally:
            with self._cond:
                self._watching.discard(h.connection)

    def _stream(self, h, resource, wanted, cursor, drops, deadline, bookmarks) -> None:
        next_bookmark = time.monotonic() + self.bookmark_interval if bookmarks else float("inf")
        while True:
            with self._cond:
                if cursor < self._floor:
                    h.send_events([("ERROR", _too_old(cursor, self._floor))])
                    return h.end_stream()
                events = self._events(resource, wanted, cursor)
                if not events:
                    self._cond.wait(max(0.0, min(deadline, next_bookmark) - time.monotonic()))
                    events = self._events(resource, wanted, cursor)
                if self._drops != drops or self._closed:
                    h.close_connection = True       # no final chunk: the client sees a broken stream
                    return
                cursor = max(cursor, self._rv)
            h.send_events(events)
            now = time.monotonic()
            if now >= deadline:
                return h.end_stream()
            if now >= next_bookmark:
                h.send_events([("BOOKMARK", {"kind": _kind(resource), "apiVersion": resource.api_version,
                                             "metadata": {"resourceVersion": str(cursor)}})])
                next_bookmark = now + self.bookmark_interval

    def _events(self, resource: Resource, wanted: Selector, cursor: int) -> list[tuple[str, dict]]:
        return [(kind, obj) for rv, kind, obj in self._history[resource] if rv > cursor and wanted(obj)]


class Status(Exception):
    """An API error, answered as a Status object with its HTTP code."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code = code
        self.body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": message, "reason": reason, "code": code}


def merge_patch(target, patch):
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _key(resource: Resource, name: str | None, namespace: str | None) -> tuple[str, str]:
    if not name:
        raise ValueError("an object needs metadata.name")
    if resource.namespaced and not namespace:
        raise ValueError(f"{resource.plural} are namespaced: metadata.namespace is needed")
    return (namespace if resource.namespaced else "", name)


def _kind(resource: Resource) -> str:
    return resource.kind or resource.plural.rstrip("s").capitalize()


def field_selector(text: str | None, namespace: str | None) -> Selector:
    """Which objects a list or watch returns: those of the namespace in the
    path (all if none), narrowed by `metadata.name=NAME` (or `==`) if given."""
    name = None
    if text is not None:
        field, op, name = text.partition("==") if "==" in text else text.partition("=")
        if field.strip() != "metadata.name" or not op or not name or "," in name:
            raise Status(400, "BadRequest", f"field selector {text!r} is not supported by the fake apiserver "
                                            "(only metadata.name=NAME is)")
        name = name.strip()

    def wanted(obj: dict) -> bool:
        meta = obj["metadata"]
        return ((namespace is None or meta.get("namespace") == namespace)
                and (name is None or meta.get("name") == name))
    return wanted


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _too_old(rv: int, floor: int) -> dict:
    return Status(410, "Expired", f"too old resource version: {rv} ({floor})").body


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeApiServer, host: str, port: int, sock: socket.socket | None):
        self.fake = fake
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler, bind_and_activate=sock is None)
        if sock is not None:    # e.g. bound inside another network namespace by the caller
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
            sock.listen()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive, and chunked watch streams
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        with self.server.fake._cond:
            self.server.fake._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.fake._cond:
            self.server.fake._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _serve(self) -> None:
        method, url = self.command, urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fake = self.server.fake
        with fake._requests_lock:
            fake.requests.append(Request(method, self.path))
        try:
            self.server.fake._dispatch(self, method, url.path, query, body)
        except Status as e:
            self.send_json(e.code, e.body)
        except OSError:     # the client went away, or drop_watches() cut the stream
            self.close_connection = True
        except Exception as e:
            log.exception("fake apiserver: %s %s failed", method, self.path)
            self.send_json(500, Status(500, "InternalError", str(e)).body)

    do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _serve

    def send_json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def send_events(self, events) -> None:
        for kind, obj in events:
            line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args) -> None:
        log.debug("fake apiserver: " + format, *args)
