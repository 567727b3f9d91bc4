"""--manifests DIR: files in, per-object changes out, and a broken edit,
a bad List item or a vanished directory loses nothing."""
import json
import logging
import os
import shutil
import threading
import time

from netplane.dirwatch import DirWatcher
from netplane.proxy.manifest_source import ManifestDir


def write(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


SERVICE = {"kind": "Service", "metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}
SLICE = {"kind": "EndpointSlice", "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "endpoints": [], "ports": []}


def named(name, obj=SERVICE):
    return obj | {"metadata": {"name": name}}


def summary(changes):
    return sorted((c.kind, c.key, c.old is not None, c.new is not None) for c in changes)


def test_reads_yaml_and_json_lists_and_ignores_other_kinds_and_files(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "web.yaml", f"{json.dumps(SERVICE)}\n---\n{json.dumps(SLICE)}\n---\nkind: ConfigMap\n")
    write(tmp_path / "sub" / "more.json", json.dumps({"kind": "List", "items": [named("api")]}))
    write(tmp_path / "notes.txt", "not a manifest")
    source = ManifestDir(str(tmp_path))
    assert summary(source.scan()) == [("EndpointSlice", "default/web-1", False, True),
                                      ("Service", "default/api", False, True),
                                      ("Service", "default/web", False, True)]
    assert sorted(o["metadata"]["name"] for o in source.objects("Service")) == ["api", "web"]
    assert [o["metadata"]["name"] for o in source.objects("EndpointSlice")] == ["web-1"]
    assert source.scan() == []                                     # nothing changed: nothing re-read


def test_only_the_objects_whose_text_changed_are_changes(tmp_path):
    write(tmp_path / "all.json", json.dumps({"kind": "List", "items": [named(f"s{i}") for i in range(20)]}))
    source = ManifestDir(str(tmp_path))
    assert len(source.scan()) == 20
    items = [named(f"s{i}") for i in range(20) if i != 3]
    items[5] = items[5] | {"spec": {"clusterIP": "10.96.0.99", "ports": [{"port": 80}]}}
    write(tmp_path / "all.json", json.dumps({"kind": "List", "items": items + [named("new")]}))
    assert summary(source.scan()) == [("Service", "default/new", False, True), ("Service", "default/s3", True, False),
                                      ("Service", "default/s6", True, True)]


def test_a_broken_edit_keeps_the_last_good_objects_and_a_deleted_file_withdraws_them(tmp_path):
    path = tmp_path / "web.yaml"
    write(path, json.dumps(SERVICE))
    source = ManifestDir(str(tmp_path))
    source.scan()
    write(path, "kind: Service\nspec: [unclosed\n")
    assert source.scan() == []
    assert [o["metadata"]["name"] for o in source.objects("Service")] == ["web"]
    assert "invalid YAML" in source.errors[str(path)]
    write(path, json.dumps(named("web2")))
    assert summary(source.scan()) == [("Service", "default/web", True, False), ("Service", "default/web2", False, True)]
    assert source.errors == {}
    os.unlink(path)
    assert summary(source.scan()) == [("Service", "default/web2", True, False)] and source.objects("Service") == []


def test_a_null_list_item_is_reported_and_the_files_other_objects_count(tmp_path):
    path = tmp_path / "list.yaml"
    write(path, json.dumps({"kind": "List", "items": [named("a"), None, named("b")]}))
    source = ManifestDir(str(tmp_path))
    assert [c.key for c in source.scan()] == ["default/a", "default/b"]
    assert "item 1" in source.errors[str(path)] and str(path) in source.errors[str(path)]


def test_a_deleted_directory_keeps_the_last_good_objects_until_it_is_back(tmp_path):
    folder = tmp_path / "manifests"
    folder.mkdir()
    write(folder / "web.json", json.dumps(SERVICE))
    source = ManifestDir(str(folder))
    source.scan()
    shutil.rmtree(folder)
    assert source.scan() == [] and [o["metadata"]["name"] for o in source.objects("Service")] == ["web"]
    assert "missing" in source.errors[str(folder)]
    folder.mkdir()
    write(folder / "web.json", json.dumps(named("web2")))
    assert summary(source.scan()) == [("Service", "default/web", True, False), ("Service", "default/web2", False, True)]
    assert source.errors == {}


def test_the_same_object_in_two_files_is_taken_from_the_last(tmp_path):
    write(tmp_path / "a.json", json.dumps(SERVICE | {"spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}}))
    write(tmp_path / "b.json", json.dumps(SERVICE))
    source = ManifestDir(str(tmp_path))
    [change] = source.scan()
    assert change.new["spec"]["clusterIP"] == "10.96.0.10"
    os.unlink(tmp_path / "b.json")
    [change] = source.scan()
    assert change.old["spec"]["clusterIP"] == "10.96.0.10" and change.new["spec"]["clusterIP"] == "10.96.0.1"


def test_the_watcher_scans_on_a_write_without_polling_and_follows_a_recreated_directory(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    scans = []
    seen = threading.Event()

    def scan():
        scans.append(time.monotonic())
        seen.set()

    watcher = DirWatcher(str(folder), scan, "test", poll=0.05, rescan=3600).start()
    try:
        assert watcher.watching and len(scans) == 1
        for _ in range(3):
            seen.clear()
            written = time.monotonic()
            write(folder / "a.json", "{}")
            assert seen.wait(2) and scans[-1] - written < 0.5
        shutil.rmtree(folder)
        folder.mkdir()
        (folder / "sub").mkdir()
        deadline = time.monotonic() + 5
        while not watcher.watching:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)
        seen.clear()
        write(folder / "sub" / "b.json", "{}")
        assert seen.wait(2)
    finally:
        watcher.stop()


# --manifests FILE: one file, read as a directory's files are, and watched through its directory.

DEPLOYMENT = {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}}


def names(source, kind="Service"):
    return [o["metadata"]["name"] for o in source.objects(kind)]


def test_a_file_source_reads_its_services_and_slices_and_skips_other_kinds_silently(tmp_path, caplog):
    path = tmp_path / "app"                     # any name: the file was given, not found by its suffix
    write(path, "\n---\n".join(json.dumps(o) for o in (DEPLOYMENT, SERVICE, {"kind": "ConfigMap"}, SLICE)))
    (tmp_path / "other.yaml").write_text(json.dumps(named("not-mine")))
    source = ManifestDir(str(path))
    assert summary(source.scan()) == [("EndpointSlice", "default/web-1", False, True),
                                      ("Service", "default/web", False, True)]
    assert names(source) == ["web"] and source.errors == {} and not caplog.records


def test_a_file_rewritten_by_rename_is_seen(tmp_path):
    path = tmp_path / "services.yaml"
    write(path, json.dumps(SERVICE))
    source = ManifestDir(str(path))
    source.scan()
    write(path, json.dumps(named("web2")))      # write() writes a temporary file and renames it over
    assert summary(source.scan()) == [("Service", "default/web", True, False), ("Service", "default/web2", False, True)]


def configmap_volume(folder, version, text):
    """What kubelet's atomic writer does: the keys in a fresh ..<version>
    folder, `..data` swapped to it by a rename, the old folder removed."""
    (folder / f"..{version}").mkdir()
    (folder / f"..{version}" / "services.yaml").write_text(text)
    os.symlink(f"..{version}", folder / "..data_tmp")
    old = os.readlink(folder / "..data") if os.path.lexists(folder / "..data") else None
    os.replace(folder / "..data_tmp", folder / "..data")
    if old:
        shutil.rmtree(folder / old)
    if not os.path.lexists(folder / "services.yaml"):
        os.symlink("..data/services.yaml", folder / "services.yaml")


def test_a_configmap_volumes_symlink_swap_is_seen_in_a_file_and_in_its_directory(tmp_path):
    configmap_volume(tmp_path, "v1", json.dumps(SERVICE))
    one_file, folder = ManifestDir(str(tmp_path / "services.yaml")), ManifestDir(str(tmp_path))
    assert names(one_file) == [] and summary(one_file.scan()) == [("Service", "default/web", False, True)]
    assert summary(folder.scan()) == [("Service", "default/web", False, True)]    # ..v1 is not read twice
    configmap_volume(tmp_path, "v2", json.dumps(named("web2")))
    expected = [("Service", "default/web", True, False), ("Service", "default/web2", False, True)]
    assert summary(one_file.scan()) == expected and summary(folder.scan()) == expected
    assert one_file.errors == {} and folder.errors == {}


def test_a_file_that_goes_bad_or_away_keeps_its_last_good_objects(tmp_path):
    path = tmp_path / "services.json"
    write(path, json.dumps({"kind": "List", "items": [SERVICE, SLICE]}))
    source = ManifestDir(str(path))
    source.scan()
    write(path, "{not json")
    assert source.scan() == [] and names(source) == ["web"] and names(source, "EndpointSlice") == ["web-1"]
    assert str(path) in source.errors[str(path)]
    os.unlink(path)                             # unlike a file in a directory: the source itself is gone
    assert source.scan() == [] and names(source) == ["web"] and "missing" in source.errors[str(path)]
    write(path, json.dumps(named("web2")))
    assert summary(source.scan()) == [("EndpointSlice", "default/web-1", True, False),
                                      ("Service", "default/web", True, False), ("Service", "default/web2", False, True)]
    assert source.errors == {}


def events_call_for_a_scan(watcher):
    return watcher._follow(watcher._inotify.read(timeout=2000))


def test_a_watched_file_wakes_the_watcher_for_its_own_name_and_its_links_first_step_only(tmp_path):
    configmap_volume(tmp_path, "v1", json.dumps(SERVICE))
    watcher = DirWatcher(str(tmp_path / "services.yaml"), lambda: None, "test")
    assert watcher._arm() and list(watcher._watches.values()) == [str(tmp_path)]
    try:
        (tmp_path / "unrelated.yaml").write_text("{}")
        assert not events_call_for_a_scan(watcher)
        configmap_volume(tmp_path, "v2", "{}")      # touches ..v2, ..data_tmp, ..data, ..v1: ..data counts
        assert events_call_for_a_scan(watcher)
    finally:
        watcher._disarm()
    plain = tmp_path / "plain.yaml"
    write(plain, "{}")
    watcher = DirWatcher(str(plain), lambda: None, "test")
    assert watcher._arm()
    try:
        write(plain, "{}")                           # a rename over it: a new inode, still seen
        assert events_call_for_a_scan(watcher)
    finally:
        watcher._disarm()


def test_the_watcher_scans_a_file_rewritten_by_rename(tmp_path):
    path = tmp_path / "services.yaml"
    write(path, "{}")
    seen = threading.Event()
    # no polling and no rescan within the test: only an inotify event can call scan() again
    watcher = DirWatcher(str(path), seen.set, "test", poll=3600, rescan=3600).start()
    try:
        assert watcher.watching and seen.is_set()
        for _ in range(2):
            seen.clear()
            write(path, json.dumps(SERVICE))
            assert seen.wait(5)
    finally:
        watcher.stop()


def test_a_reader_of_other_kinds_keys_a_node_by_its_name_and_reports_problems_only_at_debug(tmp_path, caplog):
    node = {"kind": "Node", "metadata": {"name": "n1", "namespace": "ignored"}}
    write(tmp_path / "all.yaml", "\n---\n".join(json.dumps(o) for o in (SERVICE, node)))
    assert summary(ManifestDir(str(tmp_path)).scan()) == [("Service", "default/web", False, True)]   # no Node
    nodes = ManifestDir(str(tmp_path), kinds=("Node",), report=False)
    assert summary(nodes.scan()) == [("Node", "n1", False, True)]       # cluster-scoped: no namespace in its key
    assert nodes.object("Node", "n1") == node and nodes.object("Node", "n2") is None
    with caplog.at_level(logging.INFO, "netplane.proxy"):
        write(tmp_path / "all.yaml", "kind: [")                 # a file that stops parsing
        assert nodes.scan() == [] and list(nodes.errors) == [str(tmp_path / "all.yaml")]
        shutil.rmtree(tmp_path)                                 # and the whole directory gone
        assert nodes.scan() == [] and str(tmp_path) in nodes.errors
    assert nodes.object("Node", "n1") == node and not caplog.records
