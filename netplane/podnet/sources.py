"""Where the agent learns about nodes: a local file, or the Kubernetes API.

Both yield the same thing, a {name: Node} view and an event that is set
whenever it may have changed, and both keep the last good view when their
input goes bad or away: a broken nodes file or a lost API server must not
tear down the pod network. `nodes()` is None until the first good read,
so a freshly started agent never mistakes "not loaded yet" for "no peers".
"""
import logging
import os
import threading

from netplane.kube import manifests
from netplane.polling import Poller
from netplane.podnet.model import VTEP_MAC_ANNOTATION, InvalidNode, Node, node_from_object

log = logging.getLogger("netplane.podnet")


class NodeView:
    """The shared part: the parsed view, the change event and skipped objects."""

    def __init__(self) -> None:
        self.changed = threading.Event()
        self._error: str | None = None           # why the latest input was not used
        self.skipped: dict[str, str] = {}        # object -> why it was skipped
        self._nodes: dict[str, Node] | None = None
        self._lock = threading.Lock()

    def nodes(self) -> dict[str, Node] | None:
        with self._lock:
            return self._nodes

    @property
    def error(self) -> str | None:
        return self._error

    def announce(self, node_name: str, vtep_mac: str) -> None:
        """Tell the peers this node's VTEP MAC, where the source can carry it."""

    def _publish(self, objects: list) -> None:
        nodes, skipped = {}, {}
        for index, obj in enumerate(objects):
            try:
                node = node_from_object(obj)
            except InvalidNode as err:
                skipped[_label(obj, index)] = str(err)
                continue
            nodes[node.name] = node
        for what, why in skipped.items():
            if self.skipped.get(what) != why:
                log.warning("skipping %s: %s", what, why)
        with self._lock:
            unchanged = nodes == self._nodes
            self._nodes, self.skipped = nodes, skipped
        if not unchanged:
            self.changed.set()


def _label(obj, index: int) -> str:
    name = obj.get("metadata", {}).get("name") if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) else None
    return f"node {name}" if isinstance(name, str) else f"object #{index}"


class FileSource(NodeView, Poller):
    """A nodes file (Node manifests, YAML or JSON, `kind: List` welcome),
    polled for changes. Writers should replace it atomically (rename)."""

    def __init__(self, path: str, poll_interval: float = 1.0) -> None:
        NodeView.__init__(self)
        Poller.__init__(self, poll_interval, "nodes-file")
        self.path = path
        self._seen = None

    def poll(self) -> None:
        try:
            st = os.stat(self.path)
            signature = (st.st_ino, st.st_mtime_ns, st.st_size)
            if signature == self._seen:
                return
            objects = manifests.load_file(self.path)
        except (OSError, manifests.ManifestError) as err:
            self._fail(str(err) if isinstance(err, manifests.ManifestError) else f"{self.path}: {err.strerror}")
            return
        self._seen, self._error = signature, None
        self._publish(objects)

    def _fail(self, message: str) -> None:
        if message != self._error:
            log.error("nodes file unusable, keeping the last good state: %s", message)
        self._error = message
        self._seen = None


class KubeSource(NodeView):
    """Node objects from the API server, through the shared reflector
    (list + watch, relist on 410, backoff, last good cache kept)."""

    def __init__(self, api, reflector_options: dict | None = None) -> None:
        from netplane.kube.client import NODES
        from netplane.kube.reflector import Reflector

        super().__init__()
        self.api = api
        self.reflector = Reflector(api, NODES, on_change=self._on_change, name="nodes",
                                   **(reflector_options or {}))

    def start(self) -> "KubeSource":
        self.reflector.start()
        return self

    def stop(self) -> None:
        self.reflector.stop()

    def _on_change(self, snapshot: dict[str, dict]) -> None:
        self._publish(list(snapshot.values()))

    @property
    def error(self) -> str | None:
        """Why the API is not answering (the status shows it while nothing has loaded)."""
        return self.reflector.last_error

    def announce(self, node_name: str, vtep_mac: str) -> None:
        from netplane.kube import client

        node = (self.nodes() or {}).get(node_name)
        if node is not None and node.vtep_mac == vtep_mac:
            return
        client.patch(self.api, client.NODES, node_name,
                     {"metadata": {"annotations": {VTEP_MAC_ANNOTATION: vtep_mac}}})
        log.info("annotated node %s with %s=%s", node_name, VTEP_MAC_ANNOTATION, vtep_mac)
