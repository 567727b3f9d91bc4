"""Kubernetes objects from manifest files: YAML or JSON, several documents
per file, and `kind: List` flattened into its items.

Used wherever netplane reads objects from disk instead of the API server:
the lab's nodes file, and the proxy's --manifests directory. A file that
cannot be read or parsed raises ManifestError naming the file and the
document, so the caller can skip it and keep its last good state.
"""
import json

import yaml


class ManifestError(ValueError):
    pass


def load_file(path: str) -> list[dict]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ManifestError(f"{path}: {err.strerror}") from None
    return load_bytes(data, path)


def load_bytes(data: bytes, origin: str = "<input>") -> list[dict]:
    documents = documents_of(data, origin)
    objects = []
    for number, doc in enumerate(documents, 1):
        objects += _flatten(doc, f"{origin}: document {number}")
    return objects


def documents_of(data: bytes, origin: str = "<input>") -> list:
    """The documents of a YAML or JSON file, whatever they hold."""
    return _json_or_yaml(data, origin) if data.lstrip()[:1] in (b"{", b"[") else _yaml(data, origin)


def _json_or_yaml(data: bytes, origin: str) -> list:
    """JSON first (it is fast); YAML also covers JSON-looking multi-document files."""
    try:
        doc = json.loads(data)
    except ValueError as err:
        try:
            return _yaml(data, origin)
        except ManifestError:
            raise ManifestError(f"{origin}: invalid JSON: {err}") from None
    return doc if isinstance(doc, list) else [doc]


def _yaml(data: bytes, origin: str) -> list:
    try:
        return [doc for doc in yaml.safe_load_all(data) if doc is not None]
    except yaml.YAMLError as err:
        raise ManifestError(f"{origin}: invalid YAML: {str(err).splitlines()[0]}") from None


def _flatten(doc, where: str) -> list[dict]:
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        raise ManifestError(f"{where}: not a Kubernetes object (no 'kind')")
    if doc["kind"] != "List" and not doc["kind"].endswith("List"):
        return [doc]
    items = doc.get("items")
    if not isinstance(items, list):
        raise ManifestError(f"{where}: {doc['kind']} without an 'items' list")
    flat = []
    for index, item in enumerate(items):
        flat += _flatten(item, f"{where}, item {index}")
    return flat
