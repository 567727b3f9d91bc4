"""Where reservations live: the Store interface and its two implementations.

Disk layout under <dataDir>/<network name>/:
    lock                        flock'ed for every read-modify-write
    ips/<address>               one file per reserved address: "<cid>\n<ifname>\n"
    attachments/<cid>:<ifname>  the attachment's addresses, one per line
    last_reserved_ip.<4|6>      where the round-robin search resumes

An address is taken iff its ips/ file exists. The file is written in full
under a temporary name and then hard-linked into place, which fails if the
address is taken, so a reservation appears complete or not at all (a plugin
killed mid-write leaves only a temporary file, which GC removes). The
attachment record lists the owner's addresses so DEL finds them in O(1);
the allocator writes it before the ips/ files, so no taken address is
missing from a record. If a record is lost or empty anyway, DEL falls back
to scanning ips/. ':' can appear in neither a container ID nor an interface
name, so it separates the two; temporary files start with '.', which no
container ID or address does.

Nothing is fsynced, as in host-local: pods do not survive a power loss,
and the runtime's GC after a reboot releases whatever the records say.
"""
import contextlib
import fcntl
import os
import threading
from typing import Iterator, Protocol

from netplane.cni.config import Attachment


class Store(Protocol):
    def locked(self) -> contextlib.AbstractContextManager: ...
    def is_free(self, ip: str) -> bool: ...
    def try_reserve(self, ip: str, owner: Attachment) -> bool: ...
    def unreserve(self, ip: str, owner: Attachment) -> None: ...
    def record(self, owner: Attachment, ips: list[str]) -> None: ...
    def lookup(self, owner: Attachment) -> list[str]: ...
    def forget(self, owner: Attachment) -> None: ...
    def has_record(self, owner: Attachment) -> bool: ...
    def owners(self) -> dict[Attachment, list[str]]: ...
    def last_reserved(self, version: int) -> str | None: ...
    def set_last_reserved(self, version: int, ip: str) -> None: ...
    def discard_debris(self) -> list[str]: ...


class MemoryStore:
    """The same contract in memory, for unit tests and simulations."""

    def __init__(self) -> None:
        self.ips: dict[str, Attachment] = {}
        self.records: dict[Attachment, list[str]] = {}
        self.last: dict[int, str] = {}
        self._lock = threading.Lock()

    def locked(self):
        return self._lock

    def is_free(self, ip):
        return ip not in self.ips

    def try_reserve(self, ip, owner):
        if ip in self.ips:
            return False
        self.ips[ip] = owner
        return True

    def unreserve(self, ip, owner):
        if self.ips.get(ip) == owner:
            del self.ips[ip]

    def record(self, owner, ips):
        self.records[owner] = list(ips)

    def lookup(self, owner):
        if owner in self.records:
            return list(self.records[owner])
        return [ip for ip, o in self.ips.items() if o == owner]

    def forget(self, owner):
        self.records.pop(owner, None)

    def has_record(self, owner):
        return owner in self.records

    def owners(self):
        out: dict[Attachment, list[str]] = {o: [] for o in self.records}
        for ip, owner in self.ips.items():
            out.setdefault(owner, []).append(ip)
        return out

    def last_reserved(self, version):
        return self.last.get(version)

    def set_last_reserved(self, version, ip):
        self.last[version] = ip

    def discard_debris(self):
        return []  # memory writes cannot be interrupted half way


class DiskStore:
    def __init__(self, data_dir: str, network: str) -> None:
        self.root = os.path.join(data_dir, network)
        self.ips_dir = os.path.join(self.root, "ips")
        self.records_dir = os.path.join(self.root, "attachments")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        os.makedirs(self.ips_dir, exist_ok=True)
        os.makedirs(self.records_dir, exist_ok=True)
        fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def is_free(self, ip):
        return not os.path.exists(os.path.join(self.ips_dir, ip))

    def try_reserve(self, ip, owner):
        tmp = os.path.join(self.ips_dir, f".{ip}.tmp")
        _write(tmp, _owner_text(owner), os.O_TRUNC)
        try:
            os.link(tmp, os.path.join(self.ips_dir, ip))
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def unreserve(self, ip, owner):
        path = os.path.join(self.ips_dir, ip)
        if _read(path) == _owner_text(owner):
            os.unlink(path)

    def record(self, owner, ips):
        path = self._record_path(owner)
        tmp = os.path.join(self.records_dir, f".{os.path.basename(path)}.tmp")
        _write(tmp, "".join(ip + "\n" for ip in ips), os.O_TRUNC)
        os.replace(tmp, path)

    def lookup(self, owner):
        ips = (_read(self._record_path(owner)) or "").split()
        return ips or [ip for ip, o in self._scan() if o == owner]

    def forget(self, owner):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._record_path(owner))

    def has_record(self, owner):
        return os.path.exists(self._record_path(owner))

    def owners(self):
        out: dict[Attachment, list[str]] = {}
        for name in _listdir(self.records_dir):
            cid, sep, ifname = name.partition(":")
            if sep and not name.startswith("."):
                out[Attachment(cid, ifname)] = []
        for ip, owner in self._scan():
            out.setdefault(owner, []).append(ip)
        return out

    def last_reserved(self, version):
        text = _read(os.path.join(self.root, f"last_reserved_ip.{version}"))
        return text.strip() if text else None

    def set_last_reserved(self, version, ip):
        _write(os.path.join(self.root, f"last_reserved_ip.{version}"), ip, os.O_TRUNC)

    def _record_path(self, owner: Attachment) -> str:
        return os.path.join(self.records_dir, f"{owner.container_id}:{owner.ifname}")

    def discard_debris(self) -> list[str]:
        """Remove what an interrupted writer left: temporary files, and any
        address file that names no owner. Call only under the lock."""
        removed = []
        for directory in (self.ips_dir, self.records_dir):
            for name in _listdir(directory):
                path = os.path.join(directory, name)
                if name.startswith(".") or (directory == self.ips_dir and _owner_of(path) is None):
                    os.unlink(path)
                    removed.append(path)
        return removed

    def _scan(self) -> Iterator[tuple[str, Attachment]]:
        for ip in _listdir(self.ips_dir):
            owner = None if ip.startswith(".") else _owner_of(os.path.join(self.ips_dir, ip))
            if owner:
                yield ip, owner


def _owner_of(path: str) -> Attachment | None:
    cid, _, ifname = (_read(path) or "").rstrip("\n").partition("\n")
    return Attachment(cid, ifname) if cid and ifname else None


def _owner_text(owner: Attachment) -> str:
    return f"{owner.container_id}\n{owner.ifname}\n"


# Plain os calls below, not open(): a text-mode file object costs ~50 us to
# set up, and an ADD touches five files under the lock.
def _read(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)


def _write(path: str, text: str, mode_flag: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | mode_flag, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
