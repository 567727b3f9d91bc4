"""The proxy's Node watch: nodeEligible and the zone, from the API server
(only this node, by field selector) or from Node manifests."""
import json
import logging
import os
import threading
import time

from netplane import logs
from netplane.kube.client import NODES
from netplane.proxy.config import ProxyConfig
from netplane.proxy.nodes import TO_BE_DELETED_TAINT, ZONE_LABEL, NodeFiles, NodeWatch

FAST = {"watch_timeout": 1, "backoff_initial": 0.05, "backoff_max": 0.2}


def node(name, zone=None, deleting=False, taints=()):
    meta = {"name": name, "labels": {ZONE_LABEL: zone} if zone else {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T03:04:05Z"
    return {"kind": "Node", "apiVersion": "v1", "metadata": meta,
            "spec": {"taints": [{"key": k, "effect": "NoSchedule"} for k in taints]}}


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Zones:
    """on_change recorder."""

    def __init__(self):
        self.seen, self.lock = [], threading.Lock()

    def __call__(self, zone):
        with self.lock:
            self.seen.append(zone)


def test_eligibility_follows_deletion_and_the_autoscaler_taint():
    watch = NodeWatch("n1")
    assert watch.eligible()                         # no Node known: a lab, nothing is going away
    watch.set_node(node("n1"))
    assert watch.eligible()
    watch.set_node(node("n1", deleting=True))
    assert not watch.eligible()
    watch.set_node(node("n1", taints=["node.kubernetes.io/unschedulable"]))
    assert watch.eligible()                         # other taints (a cordon) leave it eligible
    watch.set_node(node("n1", taints=[TO_BE_DELETED_TAINT]))
    assert not watch.eligible()
    watch.set_node(node("n1"))
    assert watch.eligible()
    watch.set_node(None)                            # deleted outright after being seen
    assert not watch.eligible()
    watch.set_node(node("n1"))                      # and created again
    assert watch.eligible()


def test_the_zone_label_wins_over_the_flag_and_changes_call_the_hooks():
    watch, zones = NodeWatch("n1", fallback_zone="flag-zone"), Zones()
    watch.on_change(zones)
    assert watch.zone() == "flag-zone"
    watch.set_node(node("n1", zone="zone-a"))
    watch.set_node(node("n1", zone="zone-a", taints=[TO_BE_DELETED_TAINT]))    # no zone change: no call
    watch.set_node(node("n1", zone="zone-b"))
    watch.set_node(node("n1"))                      # the label removed: the flag again
    assert watch.zone() == "flag-zone"
    assert zones.seen == ["zone-a", "zone-b", "flag-zone"]


def test_a_malformed_node_keeps_what_was_known(caplog):
    watch = NodeWatch("n1")
    watch.set_node(node("n1", zone="zone-a", deleting=True))
    bad = node("n1")
    bad["spec"]["taints"] = "ToBeDeletedByClusterAutoscaler"
    watch.set_node(bad)
    watch.set_node(bad)
    assert watch.zone() == "zone-a" and not watch.eligible()
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]       # once, not at every update
    assert (error.getMessage(), error.node, error.error) == (
        "ignoring an invalid Node; keeping what was known of it", "n1", "spec.taints is not a list")


def test_what_changed_is_logged_with_the_node_and_zone_as_fields(caplog):
    watch = NodeWatch("n1", fallback_zone="z0")
    with caplog.at_level(logging.INFO, "netplane.proxy"):
        watch.set_node(node("n1", zone="zone-a", deleting=True))
        watch.set_node(node("n1", zone="zone-a"))
    said = [(r.levelname, r.getMessage(), logs.fields_of(r)) for r in caplog.records]
    assert said == [
        ("WARNING", "node is being deleted: /healthz answers 503 (nodeEligible false)", {"node": "n1"}),
        ("INFO", "node zone changed", {"node": "n1", "zone": "zone-a", "was": "z0"}),
        ("INFO", "node is eligible again", {"node": "n1"})]


def test_from_the_api_it_watches_only_its_own_node(fake, api):
    fake.put(NODES, node("other", zone="zone-x", deleting=True))
    watch, zones = NodeWatch.from_api(api, "n1", **FAST), Zones()
    watch.on_change(zones)
    watch.start()
    try:
        assert watch.wait(3)
        assert watch.eligible() and watch.zone() == ""     # n1 does not exist yet: the other is not it
        fake.put(NODES, node("n1", zone="zone-a"))
        wait_for(lambda: watch.zone() == "zone-a")
        fake.put(NODES, node("n1", zone="zone-a", deleting=True))
        wait_for(lambda: not watch.eligible())
        fake.delete(NODES, "n1")
        wait_for(lambda: not watch.eligible() and watch.zone() == "zone-a")     # deleted: keeps its zone
        fake.put(NODES, node("n1", zone="zone-b"))
        wait_for(lambda: watch.eligible() and watch.zone() == "zone-b")
    finally:
        watch.stop()
    assert zones.seen == ["zone-a", "zone-b"]
    selectors = {r.query.get("fieldSelector") for r in fake.requests if r.path == "/api/v1/nodes"}
    assert selectors == {"metadata.name=n1"}


def test_from_manifests_a_directory_or_a_file(tmp_path):
    (tmp_path / "services.yaml").write_text("kind: Service\nmetadata: {name: web}\n")
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps({"kind": "List", "items": [node("other", deleting=True), node("n1", zone="z1")]}))
    for path in (tmp_path, nodes):
        watch = NodeWatch.from_manifests(str(path), "n1", poll=0.05).start()
        try:
            check_manifest_feed(watch, nodes, whole_dir=path == tmp_path)
        finally:
            watch.stop()
        nodes.write_text(json.dumps(node("n1", zone="z1")))


def check_manifest_feed(watch, nodes, whole_dir):
    assert watch.zone() == "z1" and watch.eligible()        # read by start()
    nodes.write_text(json.dumps(node("n1", zone="z2", deleting=True)))
    wait_for(lambda: watch.zone() == "z2" and not watch.eligible())
    nodes.write_text("kind: [")                             # a half-saved edit changes nothing
    time.sleep(0.2)
    assert watch.zone() == "z2"
    if whole_dir:                                           # the file gone: no Node, eligible
        nodes.unlink()
        wait_for(lambda: watch.eligible() and watch.zone() == "")


def test_from_a_configmap_volume_the_node_is_read_through_the_links_only(tmp_path, caplog):
    """A ConfigMap volume: the files are links into ..data, a link to the
    hidden ..2026_* folder that holds them. Each Node is read once: the
    hidden copy is not another definition (which would be warned about)."""
    stamp = tmp_path / "..2026_12_01_05_00_00.1"
    stamp.mkdir()
    (stamp / "node.yaml").write_text(json.dumps(node("n1", zone="z1")))
    os.symlink(stamp.name, tmp_path / "..data")
    os.symlink("..data/node.yaml", tmp_path / "node.yaml")
    files = NodeFiles(str(tmp_path), "n1")
    seen = []
    with caplog.at_level(logging.DEBUG, "netplane.proxy"):
        files.scan(seen.append)
    assert seen == [node("n1", zone="z1")] and not caplog.records      # no "Node n1 is defined in" twice


def test_a_file_that_stops_parsing_keeps_the_node_and_leaves_the_error_to_the_services_reader(tmp_path, caplog):
    (tmp_path / "node.yaml").write_text(json.dumps(node("n1", zone="z1")))
    files, seen = NodeFiles(str(tmp_path), "n1"), []
    files.scan(seen.append)
    (tmp_path / "node.yaml").write_text("kind: [")
    with caplog.at_level(logging.INFO, "netplane.proxy"):
        files.scan(seen.append)
    assert seen == [node("n1", zone="z1")] * 2 and not caplog.records
    assert "node.yaml" in files.dir.errors[str(tmp_path / "node.yaml")]        # kept, at debug level only


def test_from_manifests_without_the_node_uses_the_flag(tmp_path):
    (tmp_path / "n.yaml").write_text(json.dumps(node("other", zone="zx", deleting=True)))
    for path in (tmp_path, tmp_path / "missing"):
        cfg = ProxyConfig(manifests=str(path), zone="z0")
        watch = NodeWatch.from_config(cfg, "n1").start()
        try:
            assert watch.wait(0) and watch.eligible() and watch.zone() == "z0"
        finally:
            watch.stop()


def test_healthz_drains_the_node_while_it_is_being_deleted(fake, tmp_path):
    from urllib.error import HTTPError
    from urllib.request import urlopen

    from netplane.proxy import health
    from netplane.proxy.health import HealthState

    def probe(path):
        try:
            with urlopen(f"http://127.0.0.1:{server.server_address[1]}{path}", timeout=5) as r:
                return r.status, json.load(r)["nodeEligible"]
        except HTTPError as e:
            return e.code, json.load(e)["nodeEligible"]

    fake.put(NODES, node("n1", zone="zone-a"))
    watch = NodeWatch.from_config(ProxyConfig(kubeconfig=fake.kubeconfig(tmp_path / "kubeconfig"), zone="flag"),
                                  "n1").start()
    assert watch.wait(3) and watch.zone() == "zone-a"      # known when wait() returns: the first sync uses it
    state = HealthState(timeout=60)
    state.updated()
    server = health.serve(("127.0.0.1", 0), state, node_eligible=watch.eligible)
    try:
        assert probe("/healthz") == (200, True)
        fake.put(NODES, node("n1", deleting=True))
        wait_for(lambda: not watch.eligible())
        assert probe("/healthz") == (503, False) and probe("/livez") == (200, False)
    finally:
        server.shutdown()
        server.server_close()
        watch.stop()
