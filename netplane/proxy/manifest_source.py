"""`--manifests DIR|FILE`: Services and EndpointSlices from files, as changes.

The embedded default source. Every *.yaml, *.yml and *.json file under DIR
is read (hidden files and folders are not), or the one FILE given, whatever its name (several documents per
file and `kind: List` welcome); other kinds of objects (Deployments,
ConfigMaps...) are ignored without a word, so a whole application's
manifests can be given. A scan re-reads only the files whose size, mtime or
inode changed, and turns what they hold into per-object Changes: an object
whose text did not change produces none, so the proxy parses only what did.

Keeping the last good state:
- a file that stops parsing keeps its last good objects and reports why, so
  a half-saved edit never withdraws the services it held;
- a bad item in a `kind: List` is reported and skipped; the file's other
  objects count;
- a deleted file withdraws its objects;
- a deleted DIR (or FILE) withdraws nothing: that is an accident (a
  remount, a volume swap), not an intent. Its objects stay until it is
  back, and are then re-read.
A FILE is followed through its symlinks at every scan (its signature is
its target's), so a ConfigMap volume's swap of `..data` is a change.
An object defined by two files is taken from the last of them, in path
order, and the duplicate is reported.

The same walk, with the same rules, serves the proxy's Node
(nodes.NodeFiles): a ManifestDir of kind Node, which leaves the files'
problems to the Services' reader.
"""
import logging
import os

from netplane.kube import manifests
from netplane.kube.changes import Change, object_key

log = logging.getLogger("netplane.proxy")
SUFFIXES = (".yaml", ".yml", ".json")
KINDS = ("Service", "EndpointSlice")
CLUSTER_SCOPED = frozenset({"Node"})     # keyed by name alone, as the API server keys them
Key = tuple[str, str]                    # (kind, namespace/name)


class ManifestDir:
    """The objects of `kinds` under `path`. `report=False` logs the files'
    problems at debug level only (they stay in `errors`): for a second reader
    of the same files, when the first one reports them."""

    def __init__(self, path: str, kinds: tuple[str, ...] = KINDS, report: bool = True) -> None:
        self.path, self.kinds, self.report = path, kinds, report
        self.errors: dict[str, str] = {}                    # file (or DIR) -> what is wrong with it
        self._files: dict[str, tuple[tuple, dict[Key, dict]]] = {}   # file -> (stat signature, its objects)
        self._defined_by: dict[Key, dict[str, dict]] = {}   # object -> file -> its text there
        self._absent = False                                # PATH is missing (its objects are kept)

    def scan(self) -> list[Change]:
        """Re-read what changed on disk; the changes to the objects."""
        present = dict(self._scan())
        if not present and not os.path.isdir(self.path):    # gone (a FILE, maybe only for a moment)
            self._missing()
            return []
        if self._absent:
            self._absent = False
            self.errors.pop(self.path, None)
            self._log(logging.INFO, "%s is back; reading it again", self.path)
        touched: dict[Key, dict | None] = {}
        for gone in set(self._files) - set(present):
            self._replace(gone, None, touched)
            self.errors.pop(gone, None)
        for path, signature in present.items():
            if self._files.get(path, (None,))[0] != signature:
                self._load(path, signature, touched)
        return self._changes(touched)

    def objects(self, kind: str) -> list[dict]:
        """The current objects of a kind (for one-shot reads), in key order."""
        return [self._winner(key) for key in sorted(self._defined_by) if key[0] == kind]

    def object(self, kind: str, key: str) -> dict | None:
        """One current object: `key` is namespace/name, or the name alone for
        a cluster-scoped kind (a Node)."""
        return self._winner((kind, key))

    def _missing(self) -> None:
        if not self._absent:
            self._log(logging.ERROR, "%s is missing; keeping the %d objects read from it until it is back", self.path,
                      len(self._defined_by))
        self._absent = True
        self.errors[self.path] = "missing; keeping the last good objects"
        for path in list(self._files):          # so that everything is read again when it is back
            self._files[path] = (None, self._files[path][1])

    def _scan(self):
        """(file, its stat signature) for every file to read."""
        if not os.path.isdir(self.path):
            yield from _signed(self.path)          # a FILE: whatever its name
            return
        for root, dirs, files in os.walk(self.path):
            # hidden folders are skipped as hidden files are: a ConfigMap volume's
            # ..2026_12_01... holds the targets of the links beside them
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.endswith(SUFFIXES) and not name.startswith("."):
                    yield from _signed(os.path.join(root, name))

    def _load(self, path: str, signature: tuple, touched: dict) -> None:
        problems: list[str] = []
        try:
            loaded = manifests.load_file(path, problems)
        except manifests.ManifestError as err:
            self._report(path, str(err), "keeping the last good objects of")
            old = self._files.get(path)
            self._files[path] = (signature, old[1] if old else {})
            return
        if problems:
            self._report(path, f"{path}: " + "; ".join(problems), "skipping what is wrong in")
        else:
            self.errors.pop(path, None)
        objects = {}
        for o in loaded:
            if o["kind"] in self.kinds:                    # load_file checked that each has a str kind
                objects[(o["kind"], object_key(o, namespaced=o["kind"] not in CLUSTER_SCOPED))] = o
        self._replace(path, (signature, objects), touched)

    def _report(self, path: str, error: str, what: str) -> None:
        if self.errors.get(path) != error:
            self._log(logging.ERROR, "%s %s: %s", what, path, error)
        self.errors[path] = error

    def _log(self, level: int, message: str, *args) -> None:
        log.log(level if self.report else logging.DEBUG, message, *args)

    def _replace(self, path: str, entry: tuple | None, touched: dict) -> None:
        """Put a file's new objects (None: the file is gone) in place of its old ones."""
        old = self._files.pop(path, (None, {}))[1]
        new = entry[1] if entry else {}
        if entry:
            self._files[path] = entry
        for key in [*new, *(k for k in old if k not in new)]:      # in file order: changes come out in order
            if key not in touched:
                touched[key] = self._winner(key)
            defined = self._defined_by.setdefault(key, {})
            if key in new:
                defined[path] = new[key]
            else:
                defined.pop(path, None)
            if not defined:
                del self._defined_by[key]
            elif len(defined) > 1 and key in new:
                log.warning("%s %s is defined in %s; using %s", key[0], key[1], ", ".join(sorted(defined)),
                            max(defined))

    def _winner(self, key: Key) -> dict | None:
        defined = self._defined_by.get(key)
        return defined[max(defined)] if defined else None

    def _changes(self, touched: dict[Key, dict | None]) -> list[Change]:
        changes = []
        for key, before in touched.items():
            after = self._winner(key)
            if before is not after and before != after:
                changes.append(Change(key[0], key[1], before, after))
        return changes


def _signed(path: str):
    """(path, its signature), or nothing if it is gone. stat() follows
    symlinks: a swapped target (a ConfigMap's `..data`) has another inode."""
    try:
        st = os.stat(path)
    except OSError:
        return                                     # removed while we looked
    yield path, (path, st.st_ino, st.st_mtime_ns, st.st_size)


def problem(path: str) -> str | None:
    """Why PATH cannot be a --manifests source (None: it can)."""
    if not os.path.exists(path):
        return "no such file or directory"
    if not (os.path.isdir(path) or os.path.isfile(path)):
        return "not a file or a directory"
    return None
