"""Where reservations live: the Store interface and its two implementations.

Disk layout under <dataDir>/<network name>/:
    lock                        flock'ed for every read-modify-write
    ips/<address>               one file per reserved address: "<cid>\n<ifname>\n"
    attachments/<cid>:<ifname>  the attachment's addresses, one per line
    last_reserved_ip.<4|6>      where the round-robin search resumes

An address is taken iff its ips/ file exists (created with O_EXCL), and the
file names its owner. The attachment record lists the owner's addresses so
DEL finds them in O(1); the allocator writes it before the ips/ files, so
no taken address is ever missing from a record. Should a record be lost
anyway, DEL falls back to scanning ips/. ':' can appear in neither a
container ID nor an interface name, so it separates the two.
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
        try:
            _write(os.path.join(self.ips_dir, ip), _owner_text(owner), os.O_EXCL)
        except FileExistsError:
            return False
        return True

    def unreserve(self, ip, owner):
        path = os.path.join(self.ips_dir, ip)
        if _read(path) == _owner_text(owner):
            os.unlink(path)

    def record(self, owner, ips):
        path = self._record_path(owner)
        tmp = path + ".tmp"
        _write(tmp, "".join(ip + "\n" for ip in ips), os.O_TRUNC)
        os.replace(tmp, path)

    def lookup(self, owner):
        text = _read(self._record_path(owner))
        if text is not None:
            return text.split()
        return [ip for ip, o in self._scan() if o == owner]

    def forget(self, owner):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._record_path(owner))

    def has_record(self, owner):
        return os.path.exists(self._record_path(owner))

    def owners(self):
        out: dict[Attachment, list[str]] = {}
        for name in _listdir(self.records_dir):
            cid, sep, ifname = name.partition(":")
            if sep and not name.endswith(".tmp"):
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

    def _scan(self) -> Iterator[tuple[str, Attachment]]:
        for ip in _listdir(self.ips_dir):
            text = _read(os.path.join(self.ips_dir, ip))
            cid, _, ifname = (text or "").rstrip("\n").partition("\n")
            if cid and ifname:
                yield ip, Attachment(cid, ifname)


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
