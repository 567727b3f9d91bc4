import pytest

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
    (b"{nope", "invalid JSON"),
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
