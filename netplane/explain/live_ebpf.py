"""The eBPF mode's live state: the maps its proxy pinned, read as they are,
into the form the semantic suite's map tracer walks (trace_maps).

Nothing is loaded, attached or written: each pin is opened (BPF_OBJ_GET),
its keys walked and their values looked up through libbcc's thin syscall
wrappers (bcc's BPF class would compile the programs again). A Maglev
table is an inner map: its outer map's value, read from user space, is the
inner map's id, opened by id (BPF_MAP_GET_FD_BY_ID).

The pins live on a bpffs, which is the machine's (or a mount namespace's),
not a network namespace's: what is read is what the proxy that pinned
under that path wrote, whichever network namespace asks. The caller says
which path it read.

The maps change under a running proxy; a read that caught a sync half-way
(a master counting a slot not written yet) is refused, not traced.
"""
import ctypes
import os
import stat
from dataclasses import dataclass

from netplane.errors import OperatorError
from netplane.explain.privilege import CODES, NEEDS_ROOT
from netplane.proxy.ebpf import loader, maglev, view

MAP_INFO_WORDS = 64                  # struct bpf_map_info, with room for the kernel's later fields
# struct bpf_map_info begins: type, id, key_size, value_size (__u32 each)
KEY_SIZE, VALUE_SIZE = 2, 3


class Tables(dict):
    """The Maglev tables: (size, port id) -> the table's bytes (a u32 backend id per slot)."""

    def of(self, port_id: int) -> bytes | None:
        return next((t for (_, i), t in self.items() if i == port_id), None)


@dataclass
class PinnedMaps:
    """What trace_maps reads (the attributes of testing.ebpf.FakeMaps)."""
    pin: str
    services: dict[bytes, bytes]
    backends: dict[bytes, bytes]
    nodeports: dict[bytes, bytes]
    source_ranges: dict[bytes, bytes]
    tables: Tables


def read(pin: str) -> PinnedMaps:
    """Every map the tracer needs, from the pins under `pin`."""
    if not _is_dir(pin):
        raise OperatorError(f"no eBPF maps pinned under {pin}: is the proxy running in ebpf mode with "
                            "this --ebpf-pin-path (ebpf.pinPath)?")
    lib = _libbcc()
    maps = {name: _items(lib, _path(pin, name)) for name in ("services", "backends", "nodeports", "source_ranges")}
    broken = view.consistent(maps["services"], maps["backends"])
    if broken:
        raise OperatorError(f"the eBPF maps under {pin} changed while they were read (a sync?): {broken}; "
                            "run it again")
    return PinnedMaps(pin, tables=_tables(lib, pin), **maps)


def _is_dir(pin: str) -> bool:
    """os.path.isdir, but a bpffs closed to this user (/sys/fs/bpf is root's) says so."""
    try:
        return stat.S_ISDIR(os.stat(pin).st_mode)
    except PermissionError as err:
        raise OperatorError(f"cannot look under {pin}: {err.strerror}; {NEEDS_ROOT}") from None
    except OSError:
        return False


def _path(pin: str, name: str) -> str:
    path = os.path.join(pin, name)
    if not os.path.exists(path):
        raise OperatorError(f"{pin} holds no pinned map {name}: not a netplane eBPF pin directory, "
                            "or one from another version")
    return path


def _libbcc():
    try:
        return loader.bcc().libbcc.lib
    except loader.LoadError as err:
        raise OperatorError(f"reading the eBPF maps: {err}") from None


def _items(lib, path: str) -> dict[bytes, bytes]:
    fd = _open(lib, path)
    try:
        return _walk(lib, fd, path)
    finally:
        os.close(fd)


def _open(lib, path: str) -> int:
    fd = lib.bpf_obj_get(path.encode())
    if fd < 0:
        code = ctypes.get_errno()
        hint = f"; {NEEDS_ROOT}" if code in CODES else ""
        raise OperatorError(f"cannot open the pinned map {path}: {os.strerror(code)}{hint}")
    return fd


def _sizes(lib, fd: int, what: str) -> tuple[int, int]:
    info, size = (ctypes.c_uint32 * MAP_INFO_WORDS)(), ctypes.c_uint32(4 * MAP_INFO_WORDS)
    if lib.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)) != 0:
        raise OperatorError(f"cannot read what map {what} holds: {os.strerror(ctypes.get_errno())}")
    return info[KEY_SIZE], info[VALUE_SIZE]


def _walk(lib, fd: int, what: str) -> dict[bytes, bytes]:
    """key -> value for every key; a key deleted between two steps is skipped."""
    key_size, value_size = _sizes(lib, fd, what)
    key, value = ctypes.create_string_buffer(key_size), ctypes.create_string_buffer(value_size)
    out = {}
    if lib.bpf_get_first_key(fd, key, key_size) != 0:
        return out                                  # empty
    while True:
        if lib.bpf_lookup_elem(fd, key, value) == 0:
            out[key.raw] = value.raw
        following = ctypes.create_string_buffer(key_size)
        if lib.bpf_get_next_key(fd, key, following) != 0:
            return out
        key = following


def _tables(lib, pin: str) -> Tables:
    """Every size's outer map that is pinned (the sizes the proxy loaded):
    port id -> inner map id -> the table in the inner array's element 0."""
    tables = Tables()
    for size in maglev.SIZES:
        path = os.path.join(pin, f"maglev_{size}")
        if not os.path.exists(path):
            continue
        for key, value in _items(lib, path).items():
            port_id, inner_id = int.from_bytes(key, "little"), int.from_bytes(value[:4], "little")
            table = _inner(lib, inner_id, f"the Maglev table of port {port_id}")
            if table is not None:
                tables[size, port_id] = table
    return tables


def _inner(lib, map_id: int, what: str) -> bytes | None:
    fd = lib.bpf_map_get_fd_by_id(map_id)
    if fd < 0:                  # swapped out by a sync since the outer map was read
        return None
    try:
        return _walk(lib, fd, what).get(bytes(4))
    finally:
        os.close(fd)
