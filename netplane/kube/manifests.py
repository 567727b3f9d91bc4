"""Kubernetes objects from manifest files: YAML or JSON, several documents
per file, and `kind: List` flattened into its items.

Used wherever netplane reads objects from disk instead of the API server:
the lab's nodes file, the proxy's --manifests directory and its config
file. A file that cannot be read or parsed raises ManifestError naming the
file and the document, so the caller can skip it and keep its last good
state; no other exception escapes, whatever the bytes.

JSON goes through orjson (a 17 MB list of 10k Services and their slices:
~110 ms). YAML goes through libyaml's C parser when PyYAML has it, under
PyYAML's own composer and safe constructor: yaml.CSafeLoader would be twice
as fast again, but composes nodes by C recursion and crashes the process
(SIGSEGV) on some 20k levels of nesting, such as a line of `[[[[...`; the
Python composer stops at the interpreter's recursion limit instead.
"""
import orjson
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

try:
    from yaml.cyaml import CParser
except ImportError:                                        # PyYAML built without libyaml
    CParser = None


class ManifestError(ValueError):
    pass


if CParser is not None:
    class _Loader(Composer, CParser, SafeConstructor, Resolver):
        """yaml.SafeLoader's results, parsed in C."""

        def __init__(self, stream) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
else:
    _Loader = yaml.SafeLoader


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
    try:
        for number, doc in enumerate(documents, 1):
            objects += _flatten(doc, origin, number)
    except RecursionError:
        raise ManifestError(f"{origin}: Lists nested too deeply") from None
    return objects


def documents_of(data: bytes, origin: str = "<input>") -> list:
    """The documents of a YAML or JSON file, whatever they hold."""
    return _json_or_yaml(data, origin) if data.lstrip()[:1] in (b"{", b"[") else _yaml(data, origin)


def _json_or_yaml(data: bytes, origin: str) -> list:
    """JSON first (it is fast); YAML also covers JSON-looking multi-document files."""
    try:
        doc = orjson.loads(data)
    except ValueError as err:                              # orjson.JSONDecodeError
        try:
            return _yaml(data, origin)
        except ManifestError:
            raise ManifestError(f"{origin}: invalid JSON: {err}") from None
    return doc if isinstance(doc, list) else [doc]


def _yaml(data: bytes, origin: str) -> list:
    try:
        return [doc for doc in yaml.load_all(data, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as err:
        raise ManifestError(f"{origin}: invalid YAML: {str(err).splitlines()[0]}") from None
    except RecursionError:
        raise ManifestError(f"{origin}: invalid YAML: nested too deeply") from None
    except ValueError as err:                              # the constructor's: a 2001-02-30 timestamp, !!int 0x
        raise ManifestError(f"{origin}: invalid YAML: {err}") from None


def _flatten(doc, origin: str, number: int, path: str = "") -> list[dict]:
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if not isinstance(kind, str):
        raise ManifestError(f"{origin}: document {number}{path}: not a Kubernetes object (no 'kind')")
    if not kind.endswith("List"):
        return [doc]
    items = doc.get("items")
    if not isinstance(items, list):
        raise ManifestError(f"{origin}: document {number}{path}: {kind} without an 'items' list")
    flat = []
    for index, item in enumerate(items):
        # the common item, an object that is not a List, without a call or a where-string
        if isinstance(item, dict) and isinstance(k := item.get("kind"), str) and not k.endswith("List"):
            flat.append(item)
        else:
            flat += _flatten(item, origin, number, f"{path}, item {index}")
    return flat
