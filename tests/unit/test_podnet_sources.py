"""Node sources: the nodes file and the Kubernetes API both keep their last
good view when their input breaks, and say why."""
import json
import os
import time

from netplane.kube.client import NODES
from netplane.lab import topology
from netplane.podnet.model import VTEP_MAC_ANNOTATION
from netplane.podnet.sources import FileSource, KubeSource


def lab_nodes(*numbers):
    return [topology.node_object(topology.node_addressing(i)) for i in numbers]


def write(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_file_source_reads_a_node_list_and_sees_changes(tmp_path):
    path = tmp_path / "nodes.json"
    write(path, json.dumps({"kind": "List", "items": lab_nodes(1, 2)}))
    source = FileSource(str(path), poll_interval=0.05).start()
    try:
        assert set(source.nodes()) == {"node1", "node2"} and source.changed.is_set()
        source.changed.clear()
        write(path, json.dumps({"kind": "List", "items": lab_nodes(1)}) + "\n")
        wait_for(source.changed.is_set)
        assert set(source.nodes()) == {"node1"}
    finally:
        source.stop()


def test_file_source_keeps_the_last_good_view_when_the_file_breaks_or_goes(tmp_path):
    path = tmp_path / "nodes.yaml"
    write(path, "\n---\n".join(json.dumps(n) for n in lab_nodes(1, 2)))     # multi-document YAML
    source = FileSource(str(path))
    source.poll()
    good = source.nodes()
    assert set(good) == {"node1", "node2"}
    source.changed.clear()
    write(path, "kind: [unclosed")
    source.poll()
    assert source.nodes() == good and "invalid YAML" in source.error and not source.changed.is_set()
    os.unlink(path)
    source.poll()
    assert source.nodes() == good and "No such file" in source.error
    write(path, json.dumps(lab_nodes(2)[0]))
    source.poll()
    assert set(source.nodes()) == {"node2"} and source.error is None


def test_file_source_skips_invalid_nodes_with_a_reason_and_keeps_the_rest(tmp_path):
    bad = lab_nodes(3)[0]
    bad["spec"]["podCIDRs"] = ["10.244.3.7/24"]
    path = tmp_path / "nodes.json"
    write(path, json.dumps({"kind": "List", "items": lab_nodes(1) + [bad]}))
    source = FileSource(str(path))
    source.poll()
    assert set(source.nodes()) == {"node1"}
    assert "host bits" in source.skipped["node node3"]


def test_nothing_is_known_before_the_first_good_read(tmp_path):
    source = FileSource(str(tmp_path / "missing.json"))
    source.poll()
    assert source.nodes() is None and "No such file" in source.error


def test_kube_source_follows_node_objects_and_announces_the_vtep_mac(fake, api):
    for obj in lab_nodes(1, 2):
        fake.put(NODES, obj)
    source = KubeSource(api, {"watch_timeout": 1, "backoff_initial": 0.05, "backoff_max": 0.2}).start()
    try:
        wait_for(lambda: source.nodes() is not None and len(source.nodes()) == 2)
        source.announce("node1", "0a:00:00:00:00:01")
        assert fake.get(NODES, "node1")["metadata"]["annotations"][VTEP_MAC_ANNOTATION] == "0a:00:00:00:00:01"
        wait_for(lambda: source.nodes()["node1"].vtep_mac == "0a:00:00:00:00:01")
        patches = sum(1 for method, *_ in fake.requests if method == "PATCH")
        source.announce("node1", "0a:00:00:00:00:01")       # already there: no second write
        assert sum(1 for method, *_ in fake.requests if method == "PATCH") == patches

        fake.pause()                                         # the API is lost: the view stays
        time.sleep(0.5)
        assert set(source.nodes()) == {"node1", "node2"} and "503" in source.error
        fake.delete(NODES, "node2")
        fake.resume()
        wait_for(lambda: set(source.nodes()) == {"node1"})
    finally:
        source.stop()
