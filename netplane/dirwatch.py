"""A thread that calls `scan()` when files under a directory, or one file, change.

Theory of operation. inotify (through inotify_simple, a thin binding that
hands events over as the kernel gives them) wakes the thread within a
millisecond of a write being closed, a file being renamed into place (as
editors, kubectl and ConfigMap volumes do), or a file or folder being
created or removed. The thread does not interpret events: any event means
"scan now", and scan() itself compares what is there with what it knew.
(watchdog, the usual library, holds a rename back for up to half a second
to pair its halves: measured here, 370 ms added to every atomic replace.)

One file (a `--manifests FILE`) is watched through its directory, for
events that name it: a file replaced by a rename (editors, kubectl) is a
new inode, which a watch on the file itself would lose. When the file is a
symlink into its own directory, the link's first step is watched too: a
ConfigMap volume holds `f -> ..data/f` and updates by renaming a new
`..data` over the old one, which never touches `f`. A symlink to another
directory is seen at the slow rescan.

Polling stays only as the fallback:
- while the directory (a file's: its directory) is missing (it is watched
  again once it is back);
- when inotify cannot be had (no instances or watches left);
- and a slow rescan every `rescan` seconds, against events lost to an
  overflowing queue.
"""
import logging
import os
import time

from inotify_simple import INotify, flags

from netplane.polling import Poller

log = logging.getLogger("netplane")
WAKE = 0.5                      # seconds: how soon stop() is noticed while nothing happens
EVENTS = (flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM | flags.CREATE | flags.DELETE | flags.ATTRIB
          | flags.DELETE_SELF | flags.MOVE_SELF)


class DirWatcher(Poller):
    """A Poller (start, stop, the thread) whose loop waits for inotify events
    instead of the clock while the directory can be watched."""

    def __init__(self, path: str, scan, name: str, poll: float = 1.0, rescan: float = 30.0) -> None:
        super().__init__(poll, name)
        self.path, self.scan, self.rescan = path, scan, rescan
        self._inotify: INotify | None = None
        self._watches: dict[int, str] = {}
        self._one_file = False          # path is a file, watched through its directory (once seen a file)

    @property
    def watching(self) -> bool:
        return bool(self._watches)

    def poll(self) -> None:
        self.scan()

    def start(self) -> "DirWatcher":
        self._arm()                     # before the first scan, so that no write falls between them
        return super().start()

    def stop(self) -> None:
        super().stop()
        self._disarm()

    def _loop(self) -> None:
        rescan_at = time.monotonic() + self.rescan       # the safety rescan, against lost events
        while not self._stop.is_set():
            if not self._watches:       # the fallback: poll, and watch again when possible
                if self._stop.wait(self.interval):
                    break
                self._arm()
                self.scan()
                continue
            events = self._read(WAKE)
            if self._follow(events) or time.monotonic() >= rescan_at:
                rescan_at = time.monotonic() + self.rescan
                if not self._stop.is_set():
                    self.scan()

    def _read(self, timeout: float) -> list:
        try:
            return self._inotify.read(timeout=int(timeout * 1000))
        except OSError as err:
            log.warning("watching %s failed (%s); polling instead", self.path, err)
            self._disarm()
            return []

    def _follow(self, events) -> bool:
        """Keep the watches on the tree, and say whether the events call for
        a scan. New folders join; a moved or deleted root (or a lost event)
        means watching it all anew. A file's directory: only events naming it count."""
        if any(e.mask & (flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF | flags.Q_OVERFLOW) for e in events):
            self._disarm()
            self._arm()
            return True
        if self._one_file:
            names = self._file_names()
            return any(e.name in names for e in events)
        self._watch_new_folders(events)
        return bool(events)

    def _file_names(self) -> set[str]:
        """The names in the file's directory whose change is the file's: its
        own, and the first step of its symlink (a ConfigMap's `..data`)."""
        names = {os.path.basename(self.path)}
        try:
            target = os.readlink(self.path)
        except OSError:
            return names                # not a symlink (or gone: its own name says when it is back)
        if not os.path.isabs(target):
            names.add(os.path.normpath(target).split(os.sep)[0])
        return names

    def _arm(self) -> bool:
        """Watch the directory and every folder under it (a file: its
        directory); False while it is missing."""
        self._one_file = self._one_file or os.path.isfile(self.path)
        folder = os.path.dirname(os.path.abspath(self.path)) if self._one_file else self.path
        if not os.path.isdir(folder):
            return False
        try:
            self._inotify = self._inotify or INotify()
            for each in [folder] if self._one_file else [root for root, _, _ in os.walk(folder)]:
                self._add(each)
        except OSError as err:
            log.warning("cannot watch %s (%s); polling every %.0f s", self.path, err, self.interval)
            self._disarm()
            return False
        return True

    def _add(self, folder: str) -> None:
        self._watches[self._inotify.add_watch(folder, EVENTS)] = folder

    def _watch_new_folders(self, events) -> None:
        for e in events:
            if e.mask & flags.ISDIR and e.mask & (flags.CREATE | flags.MOVED_TO) and e.wd in self._watches:
                try:
                    self._add(os.path.join(self._watches[e.wd], e.name))
                except OSError:
                    pass                # gone again already: the scan sees that

    def _disarm(self) -> None:
        self._watches.clear()
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
