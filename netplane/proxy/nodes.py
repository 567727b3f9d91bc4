"""The proxy's own Node: whether load balancers may send to this node, and its zone.

kube-proxy watches the Node it runs on (a list+watch with the field selector
metadata.name=NODE) for two things, and so do we:
- nodeEligible, in /healthz's body and status: false while the Node is being
  deleted (metadata.deletionTimestamp set) or carries the cluster
  autoscaler's ToBeDeletedByClusterAutoscaler taint, so that load balancers
  drain the node before it goes. A Node deleted outright is not eligible
  either. With no Node at all (a lab without Node objects) the node is
  eligible: nothing says it is going away.
- the topology.kubernetes.io/zone label, for topology-aware routing. It wins
  over the --zone flag, which stays the fallback for a Node without the
  label, or without a Node. A change calls the on_change hooks with the new
  zone, for the proxy to resync every Service (their endpoints may differ).

The Node comes from the API server (a Reflector) or, with --manifests, from
Node objects in the manifests (a directory or one file), watched alike.
A Node that does not parse keeps the last good one, and is logged once.
"""
import logging
import threading
from collections.abc import Callable

from netplane.kube.fields import InvalidObject, mapping, sequence
from netplane.proxy.manifest_source import ManifestDir

log = logging.getLogger("netplane.proxy")
ZONE_LABEL = "topology.kubernetes.io/zone"
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"


class NodeWatch:
    def __init__(self, name: str, fallback_zone: str = "") -> None:
        self.name, self.fallback_zone = name, fallback_zone
        self._lock = threading.Lock()
        self._known = False                 # a Node was seen (it may have been deleted since)
        self._going = False                 # being deleted, tainted for deletion, or deleted
        self._label_zone: str | None = None
        self._hooks: list[Callable[[str], None]] = []
        self._feed = None                   # what delivers the Node: start() and stop()
        self._bad: str | None = None        # the last parse error, logged once
        self._delivered = threading.Event()  # the feed has said what it knows once

    # -- the feeds ----------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg, name: str, api=None) -> "NodeWatch":
        """Where the proxy's Services come from (a ProxyConfig), the Node comes
        from: --manifests, else the API server (`api`, or one made from cfg)."""
        if cfg.manifests is not None:
            return cls.from_manifests(cfg.manifests, name, cfg.zone)
        if api is None:
            from netplane.kube import client

            api = client.api_client(None if cfg.in_cluster else cfg.kubeconfig)
        return cls.from_api(api, name, cfg.zone)

    @classmethod
    def from_api(cls, api, name: str, fallback_zone: str = "", **reflector_options) -> "NodeWatch":
        from netplane.kube.client import NODES
        from netplane.kube.reflector import Reflector

        watch = cls(name, fallback_zone)
        watch._feed = Reflector(api, NODES, name="node", field_selector=f"metadata.name={name}",
                                on_change=lambda cache: watch.set_node(cache.get(name)),
                                **reflector_options)
        return watch

    @classmethod
    def from_manifests(cls, path: str, name: str, fallback_zone: str = "", poll: float = 1.0) -> "NodeWatch":
        from netplane.dirwatch import DirWatcher

        watch = cls(name, fallback_zone)
        files = NodeFiles(path, name)
        # a Node file removed from a lab means "no Node" (eligible), not a deletion
        watch._feed = DirWatcher(path, lambda: files.scan(lambda node: watch.set_node(node, deleted=False)),
                                 name="node-manifests", poll=poll)
        watch._delivered.set()          # start() reads the manifests before it returns: nothing to wait for
        return watch

    def start(self) -> "NodeWatch":
        if self._feed is not None:
            self._feed.start()
        return self

    def stop(self) -> None:
        if self._feed is not None:
            self._feed.stop()

    def wait(self, timeout: float) -> bool:
        """Wait until the feed said once what it knows of the Node (with the
        manifests, start() did); False on timeout."""
        return self._feed is None or self._delivered.wait(timeout)

    @property
    def errors(self) -> dict[str, str]:
        """Why the Node cannot be read, for logs and health."""
        error = getattr(self._feed, "last_error", None)
        return {"API Node": error} if error else {}

    # -- what the proxy reads --------------------------------------------------------

    def eligible(self) -> bool:
        with self._lock:
            return not self._going

    def zone(self) -> str:
        with self._lock:
            return self._zone()

    def on_change(self, callback: Callable[[str], None]) -> None:
        """Call `callback(zone)` (from the feed's thread) whenever the zone changes."""
        self._hooks.append(callback)

    # -- the one way in ---------------------------------------------------------------

    def set_node(self, node: dict | None, deleted: bool = True) -> None:
        """The Node as now known: None when absent (deleted if it had been seen
        and `deleted`, else simply not there)."""
        try:
            if node is not None:
                going, label = _read(node)
            else:       # a deleted Node keeps its zone: no resync for a node on its way out
                going = self._known and deleted
                label = self._label_zone if going else None
        except InvalidObject as err:
            if str(err) != self._bad:
                log.error("ignoring an invalid Node; keeping what was known of it",
                          extra={"node": self.name, "error": str(err)})
            self._bad = str(err)
            self._delivered.set()
            return
        self._bad = None
        with self._lock:
            before = (self._going, self._zone())
            self._known = self._known or node is not None
            self._going, self._label_zone = going, label
            after = (self._going, self._zone())
        self._report(before, after)
        self._delivered.set()

    def _zone(self) -> str:
        return self._label_zone if self._label_zone else self.fallback_zone

    def _report(self, before: tuple[bool, str], after: tuple[bool, str]) -> None:
        if before[0] != after[0]:
            if after[0]:
                log.warning("node is being deleted: /healthz answers 503 (nodeEligible false)",
                            extra={"node": self.name})
            else:
                log.info("node is eligible again", extra={"node": self.name})
        if before[1] != after[1]:
            log.info("node zone changed", extra={"node": self.name, "zone": after[1], "was": before[1]})
            for hook in self._hooks:
                try:
                    hook(after[1])
                except Exception:       # a consumer's bug must not stop the watch
                    log.exception("a zone change hook failed")


def _read(node: dict) -> tuple[bool, str | None]:
    """(whether the Node is going away, its zone label or None)."""
    meta = mapping(node.get("metadata"), "metadata")
    labels = mapping(meta.get("labels"), "metadata.labels")
    taints = sequence(mapping(node.get("spec"), "spec").get("taints"), "spec.taints")
    zone = labels.get(ZONE_LABEL)
    if zone is not None and not isinstance(zone, str):
        raise InvalidObject(f"metadata.labels[{ZONE_LABEL!r}] is not a string")
    going = bool(meta.get("deletionTimestamp")) or any(
        isinstance(t, dict) and t.get("key") == TO_BE_DELETED_TAINT for t in taints)
    return going, zone or None


class NodeFiles:
    """The Node named `name` among the manifests under `path` (a directory,
    or one file), read by a ManifestDir of kind Node: the same walk and
    rules as the Services' (hidden files and folders skipped, only changed
    files re-read, a file that stops parsing keeps what it held, a missing
    `path` keeps what was read, the last file in path order wins). The
    files' problems are the Services' reader's to report."""

    def __init__(self, path: str, name: str) -> None:
        self.name = name
        self.dir = ManifestDir(path, kinds=("Node",), report=False)

    def scan(self, deliver: Callable[[dict | None], None]) -> None:
        self.dir.scan()
        deliver(self.dir.object("Node", self.name))
