import json
import subprocess
import sys

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


DEEP_YAML = [
    b"a: " + b"[" * 100_000 + b"]" * 100_000,      # yaml.CSafeLoader dies of SIGSEGV on this
    b"- " * 100_000 + b"x",
]


@pytest.mark.parametrize("text", DEEP_YAML, ids=["flow", "block"])
def test_yaml_nested_past_the_parser_is_refused_without_a_crash(tmp_path, text):
    """What matters is a one-line ManifestError naming the file, from a
    process that lives: the wording of the parser's own complaint varies
    between PyYAML releases, so it is not asserted. A child process holds
    the attempt, so a regression to a crashing loader fails this test
    instead of killing the run."""
    path = tmp_path / "deep.yaml"
    path.write_bytes(text)
    child = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "from netplane.kube.manifests import ManifestError, load_file\n"
        "try:\n    load_file(sys.argv[1])\n"
        "except ManifestError as err:\n    print(err)\n    sys.exit(3)\n"), str(path)],
        capture_output=True, text=True, timeout=60)
    assert child.returncode == 3, f"exit {child.returncode}: {child.stderr[-300:]}"
    message = child.stdout.strip()
    assert "\n" not in message and message.startswith(f"{path}: invalid YAML")


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
