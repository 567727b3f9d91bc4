"""`--manifests DIR`: Services and EndpointSlices from files, watched for changes.

The embedded default source. Every *.yaml, *.yml and *.json file under DIR
is read (several documents per file and `kind: List` welcome); other kinds
of objects are ignored. The directory is polled: a file is re-read only
when its size, mtime or inode changed. A file that stops parsing keeps its
last good objects and reports the error, so a half-saved edit never
withdraws the services it held; a deleted file withdraws them.
"""
import logging
import os
import threading

from netplane.kube import manifests

log = logging.getLogger("netplane.proxy")
SUFFIXES = (".yaml", ".yml", ".json")
KINDS = ("Service", "EndpointSlice")


class ManifestDir:
    def __init__(self, path: str) -> None:
        self.path = path
        self.changed = threading.Event()
        self.errors: dict[str, str] = {}                   # file -> why its last read failed
        self._files: dict[str, tuple[tuple, dict[str, list[dict]]]] = {}   # file -> (stat signature, kind -> objects)

    def poll(self) -> bool:
        """Re-read what changed; True (and `changed` set) if the objects may differ."""
        present = dict(self._scan())
        dirty = False
        for gone in set(self._files) - set(present):
            del self._files[gone]
            self.errors.pop(gone, None)
            dirty = True
        for path, signature in present.items():
            if self._files.get(path, (None,))[0] != signature:
                dirty |= self._load(path, signature)
        if dirty:
            self.changed.set()
        return dirty

    def objects(self, kind: str) -> list[dict]:
        found = []
        for path in sorted(self._files):
            found += self._files[path][1].get(kind, ())
        return found

    def _scan(self):
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(SUFFIXES) and not name.startswith("."):
                    path = os.path.join(root, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue                           # removed while we looked
                    yield path, (path, st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, path: str, signature: tuple) -> bool:
        try:
            loaded = manifests.load_file(path)
        except manifests.ManifestError as err:
            if self.errors.get(path) != str(err):
                log.error("keeping the last good objects of %s: %s", path, err)
            self.errors[path] = str(err)
            old = self._files.get(path)
            self._files[path] = (signature, old[1] if old else {})
            return False
        objects: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        for o in loaded:
            mine = objects.get(o["kind"])                 # load_file checked that each has a str kind
            if mine is not None:
                mine.append(o)
        self.errors.pop(path, None)
        self._files[path] = (signature, objects)
        return True
