"""--manifests DIR: files in, objects out, and a broken edit loses nothing."""
import json
import os

from netplane.proxy.manifest_source import ManifestDir


def write(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


SERVICE = {"kind": "Service", "metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}
SLICE = {"kind": "EndpointSlice", "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "endpoints": [], "ports": []}


def test_reads_yaml_and_json_lists_and_ignores_other_kinds_and_files(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "web.yaml", f"{json.dumps(SERVICE)}\n---\n{json.dumps(SLICE)}\n---\nkind: ConfigMap\n")
    write(tmp_path / "sub" / "more.json", json.dumps({"kind": "List", "items": [SERVICE | {"metadata": {"name": "api"}}]}))
    write(tmp_path / "notes.txt", "not a manifest")
    source = ManifestDir(str(tmp_path))
    assert source.poll() and source.changed.is_set()
    assert sorted(o["metadata"]["name"] for o in source.objects("Service")) == ["api", "web"]
    assert [o["metadata"]["name"] for o in source.objects("EndpointSlice")] == ["web-1"]
    source.changed.clear()
    assert not source.poll() and not source.changed.is_set()        # nothing changed: nothing re-read


def test_a_broken_edit_keeps_the_last_good_objects_and_a_deleted_file_withdraws_them(tmp_path):
    path = tmp_path / "web.yaml"
    write(path, json.dumps(SERVICE))
    source = ManifestDir(str(tmp_path))
    source.poll()
    write(path, "kind: Service\nspec: [unclosed\n")
    assert not source.poll()
    assert [o["metadata"]["name"] for o in source.objects("Service")] == ["web"]
    assert "invalid YAML" in source.errors[str(path)]
    write(path, json.dumps(SERVICE | {"metadata": {"name": "web2"}}))
    assert source.poll() and source.errors == {}
    assert [o["metadata"]["name"] for o in source.objects("Service")] == ["web2"]
    os.unlink(path)
    assert source.poll() and source.objects("Service") == []
