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


# A file holds at most this many objects once its Lists are flattened. YAML
# aliases let a few hundred bytes name a List of Lists of ... 10^7 objects
# (a "billion laughs"): the parser shares the nodes, so only the flattening
# would pay, for seconds. A 100k-Service cluster in one file is ~250k objects.
MAX_OBJECTS = 1_000_000


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


def load_file(path: str, problems: list[str] | None = None) -> list[dict]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ManifestError(f"{path}: {err.strerror}") from None
    return load_bytes(data, path, problems)


def load_bytes(data: bytes, origin: str = "<input>", problems: list[str] | None = None) -> list[dict]:
    """Every object in the file. A bad document or List item raises
    ManifestError, or, when `problems` is given, is described there and
    skipped, so the file's good objects still count."""
    documents = documents_of(data, origin)
    flat = _Flattener(origin, problems)
    try:
        for number, doc in enumerate(documents, 1):
            flat.add(doc, number)
    except RecursionError:
        raise ManifestError(f"{origin}: Lists nested too deeply") from None
    return flat.objects


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


class _Flattener:
    """Documents and their Lists' items -> objects, in order."""

    def __init__(self, origin: str, problems: list[str] | None) -> None:
        self.origin, self.problems = origin, problems
        self.objects: list[dict] = []

    def add(self, doc, number: int, path: str = "") -> None:
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if not isinstance(kind, str):
            return self._bad(f"document {number}{path}: not a Kubernetes object (no 'kind')")
        if not kind.endswith("List"):
            return self._take(doc)
        items = doc.get("items")
        if not isinstance(items, list):
            return self._bad(f"document {number}{path}: {kind} without an 'items' list")
        if len(self.objects) + len(items) > MAX_OBJECTS:
            self._too_many()
        for index, item in enumerate(items):
            # the common item, an object that is not a List, without a call or a where-string
            if isinstance(item, dict) and isinstance(k := item.get("kind"), str) and not k.endswith("List"):
                self.objects.append(item)
            else:
                self.add(item, number, f"{path}, item {index}")

    def _take(self, obj: dict) -> None:
        if len(self.objects) >= MAX_OBJECTS:
            self._too_many()
        self.objects.append(obj)

    def _too_many(self):
        raise ManifestError(f"{self.origin}: more than {MAX_OBJECTS:,} objects once its Lists are expanded "
                            "(YAML aliases?)")

    def _bad(self, what: str) -> None:
        if self.problems is None:
            raise ManifestError(f"{self.origin}: {what}")
        self.problems.append(what)
