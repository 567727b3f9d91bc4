import json

import pytest
import yaml

from netplane.kube.manifests import ManifestError, load_bytes, load_file


def test_yaml_documents_and_lists_are_flattened():
    text = b"""
kind: Node
metadata: {name: a}
---
---
kind: List
items:
- {kind: Node, metadata: {name: b}}
- {kind: NodeList, items: [{kind: Node, metadata: {name: c}}]}
"""
    assert [o["metadata"]["name"] for o in load_bytes(text)] == ["a", "b", "c"]


def test_json_object_and_array():
    assert len(load_bytes(b'{"kind": "Node", "metadata": {"name": "a"}}')) == 1
    assert len(load_bytes(b' [{"kind": "Node"}, {"kind": "Service"}]')) == 2


@pytest.mark.parametrize("text, phrase", [
    (b"{nope", "invalid JSON: unexpected character"),
    (b'{"kind": "Service"} trailing', "invalid JSON"),
    (b"[" * 100_000, "invalid JSON"),                 # orjson's depth limit; the YAML retry stops too
    (b"a: " + b"[" * 100_000 + b"]" * 100_000, "invalid YAML: nested too deeply"),   # CSafeLoader: SIGSEGV
    (b"- " * 100_000 + b"x", "invalid YAML: nested too deeply"),
    (b"kind: Service\nmetadata: {creationTimestamp: 2001-02-30}", "invalid YAML: day is out of range"),
    (b"kind: Service\nspec: {port: !!int 0x}", "invalid YAML"),
    (b"a: [1,", "invalid YAML"),
    (b"just a string", "no 'kind'"),
    (b"kind: List\nitems: 3", "without an 'items' list"),
    (b"kind: List\nitems: [{metadata: {}}]", "item 0"),
])
def test_errors_name_the_origin_and_the_document(text, phrase):
    with pytest.raises(ManifestError, match=phrase) as err:
        load_bytes(text, "nodes.yaml")
    assert str(err.value).startswith("nodes.yaml")


def test_unreadable_file(tmp_path):
    with pytest.raises(ManifestError, match="No such file"):
        load_file(str(tmp_path / "absent.yaml"))


def test_json_and_json_looking_yaml_read_the_same():
    objects = [{"kind": "Service", "metadata": {"name": "a", "labels": {"x": "é"}}, "spec": {"ports": [{"port": 80}]}},
               {"kind": "EndpointSlice", "endpoints": [{"conditions": {"ready": False, "x": None}}], "n": 1.5}]
    as_json = json.dumps({"kind": "List", "items": objects}).encode()
    assert load_bytes(as_json) == objects
    assert load_bytes(as_json.replace(b"{", b"\n{", 1)) == objects         # leading whitespace
    assert load_bytes(b"\n---\n".join(json.dumps(o).encode() for o in objects), "two.json") == objects
    assert load_bytes(yaml.safe_dump_all(objects).encode()) == objects


def test_lists_in_lists_flatten_as_deep_as_the_parsers_go():
    deep = b'{"kind": "List", "items": [{"kind": "Node"}, ' * 500 + b'{"kind": "Service"}' + b"]}" * 500
    assert [o["kind"] for o in load_bytes(deep)] == ["Node"] * 500 + ["Service"]
