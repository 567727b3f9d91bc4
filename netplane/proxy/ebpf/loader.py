"""The programs in the kernel: compiled by bcc, the socket programs
attached to a cgroup, the tc programs to the node's devices (devices.py),
maps pinned in bpffs, and all found again after a restart.

Theory of operation.
1. bcc compiles one text (0.5-1.5 s): bpf/sock_lb.c, bpf/icmp_reply.h,
   the Maglev maps for maglev.SIZES (maglev_text(): bcc cannot expand a
   map call inside a macro) and bpf/tc_lb.c, with the pin directory, map
   sizes and the datapath's settings as macros. Its maps are declared pinned: when the pins exist
   (a restart), bcc opens those maps instead of making new ones, so what
   the last proxy wrote (services, affinity, reverse translations) stays.
2. Each program is attached to the cgroup with BPF_F_ALLOW_MULTI next to
   the one a previous proxy left (found by its pin), and only then is the
   old one detached and the new one pinned in its place: the cgroup is
   never without a program, so new connections are translated throughout
   a restart.
3. bcc needs kernel headers: BCC_KERNEL_SOURCE names a private tree
   (scripts/bootstrap builds one from Debian's headers), so nothing under
   /lib/modules is touched.
"""
import ctypes
import os
from pathlib import Path

from netplane.proxy.ebpf import maglev

BPF_F_ALLOW_MULTI = 2
BPF_MAP_TYPE_ARRAY = 2
BPF_DIR = Path(__file__).parent / "bpf"
SOURCE = BPF_DIR / "sock_lb.c"
# program -> its attach type's name in bcc's BPFAttachType
PROGRAMS = {
    "connect4": "CGROUP_INET4_CONNECT", "connect6": "CGROUP_INET6_CONNECT",
    "sendmsg4": "CGROUP_UDP4_SENDMSG", "sendmsg6": "CGROUP_UDP6_SENDMSG",
    "recvmsg4": "CGROUP_UDP4_RECVMSG", "recvmsg6": "CGROUP_UDP6_RECVMSG",
    "getpeername4": "CGROUP_INET4_GETPEERNAME", "getpeername6": "CGROUP_INET6_GETPEERNAME",
}
MAPS = ("services", "backends", "nodeports", "affinity", "revnat", "ct", "frags", "ext_affinity", "source_ranges",
        "nat_addresses", "maglev_digests")
TABLE_MAPS = tuple(f"maglev_{m}" for m in maglev.SIZES)     # those of the sizes in use are loaded
TC_PROGRAMS = {"ingress": "tc_ingress", "egress": "tc_egress"}


def maglev_text(sizes=maglev.SIZES) -> str:
    """Per table size in use: the table's struct, a template inner map, the
    pinned outer map; and maglev_pick(), switching on the size class (the
    index in maglev.SIZES). Only the sizes in use: clang takes ~0.6 s per
    size class (6 s for all nine)."""
    decl, cases = [], []
    for m in sizes:
        size_class = maglev.size_class(m)
        decl.append(f"struct lut_{m} {{ __u32 slot[{m}]; }};\n"
                    f"BPF_ARRAY(lut_shape_{m}, struct lut_{m}, 1);\n"
                    f'BPF_F_TABLE("hash_of_maps$lut_shape_{m}:" PIN "/maglev_{m}", __u32, int, maglev_{m}, '
                    f"TABLES_MAX, 0);\n")
        cases.append(f"""    case {size_class}: {{
        void *inner = maglev_{m}.lookup(&id);
        if (!inner)
            return 0;
        struct lut_{m} *lut = bpf_map_lookup_elem(inner, &zero);
        if (!lut)
            return 0;
        __u32 i = hash % {m};
        asm volatile("" : "+r"(i));      /* keep the bound check the verifier needs */
        if (i >= {m})
            return 0;
        return lut->slot[i];
    }}
""")
    return ("#ifndef TABLES_MAX\n#define TABLES_MAX 65536\n#endif\n" + "".join(decl)
            + "/* The backend id at the flow's slot of the port's Maglev table (0: none). */\n"
            "static __always_inline __u32 maglev_pick(__u32 id, __u32 size_class, __u32 hash)\n{\n"
            "    __u32 zero = 0;\n    switch (size_class) {\n" + "".join(cases) + "    }\n    return 0;\n}\n")


def program_text(table_sizes=maglev.SIZES) -> str:
    return "\n".join([SOURCE.read_text(), (BPF_DIR / "icmp_reply.h").read_text(), maglev_text(table_sizes),
                      (BPF_DIR / "tc_lb.c").read_text()])


class LoadError(RuntimeError):
    pass


def bcc():
    """bcc's module (Debian's python3-bpfcc; scripts/bootstrap links it into the venv)."""
    try:
        import bcc as module
    except ImportError:
        raise LoadError("the eBPF mode needs bcc: install python3-bpfcc (scripts/bootstrap does)") from None
    return module


class Loaded:
    """The programs and maps of one proxy, attached to `cgroup`, pinned under `pin`."""

    def __init__(self, cgroup: str, pin: str, sizes: dict[str, int], headers: str = "",
                 settings: dict[str, int] | None = None, table_sizes: tuple[int, ...] = (maglev.DEFAULT_SIZE,)) -> None:
        self.cgroup, self.pin = cgroup, pin
        if headers:
            os.environ.setdefault("BCC_KERNEL_SOURCE", headers)
        module = bcc()
        _check_bpffs(pin)
        os.makedirs(pin, exist_ok=True)
        cflags = [f'-DPIN="{pin}"'] + [f"-D{name.upper()}_MAX={n}" for name, n in sizes.items()]
        cflags += [f"-D{name}={value}" for name, value in (settings or {}).items()]
        try:
            self.bpf = module.BPF(text=program_text(table_sizes), cflags=cflags)
        except Exception as err:
            raise LoadError(f"compiling {SOURCE.name} and tc_lb.c failed: {err}") from None
        self.module = module
        self.maps = {name: self.bpf[name] for name in MAPS + tuple(f"maglev_{m}" for m in table_sizes)}
        self._tc = None
        self.devices = []              # where the tc programs are (devices.Device), as the last full sync found
        self.attached = False

    def tc_programs(self) -> dict[str, int]:
        """hook -> the loaded tc program's fd (loaded once)."""
        if self._tc is None:
            self._tc = {hook: self.bpf.load_func(name, self.module.BPF.SCHED_CLS).fd
                        for hook, name in TC_PROGRAMS.items()}
        return self._tc

    def write_tables(self, size: int, tables: list[tuple[int, bytes]]) -> None:
        """Maglev tables of one size, each into a new inner map, swapped in
        for the ports' old ones (a lookup sees one or the other) by one
        batch update of the outer map: the kernel waits for an RCU grace
        period after every map-of-maps update from user space (~20 ms
        here), so one by one, 10k tables would take 200 s."""
        lib, outer, fds = self._lib(), self.maps[f"maglev_{size}"], []
        try:
            zero = ctypes.c_uint32(0)
            for _, table in tables:
                fd = lib.bcc_create_map(BPF_MAP_TYPE_ARRAY, b"np_lut", 4, 4 * size, 1, 0)
                if fd < 0:
                    raise LoadError(f"creating a Maglev table of {size} slots failed: {os.strerror(-fd)}")
                fds.append(fd)
                if lib.bpf_update_elem(fd, ctypes.byref(zero), ctypes.c_char_p(table), 0) != 0:
                    raise LoadError(f"writing a Maglev table failed: {os.strerror(ctypes.get_errno())}")
            n = len(fds)
            outer.items_update_batch((outer.Key * n)(*(i for i, _ in tables)), (outer.Leaf * n)(*fds))
        finally:
            for fd in fds:             # the outer map holds the tables now
                os.close(fd)

    def delete_tables(self, size: int, port_ids: list[int]) -> None:
        outer = self.maps.get(f"maglev_{size}")
        if outer is None or not port_ids:      # a size no longer in use: its map goes with --cleanup
            return
        held = [i for i in port_ids if outer.Key(i) in outer]      # a batch stops at the first missing key
        if held:
            outer.items_delete_batch((outer.Key * len(held))(*held))

    def attach(self) -> None:
        """Attach every program, replacing what a previous proxy left."""
        fd = os.open(self.cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name, kind in PROGRAMS.items():
                attach_type = getattr(self.module.BPFAttachType, kind)
                fn = self.bpf.load_func(name, self.module.BPF.CGROUP_SOCK_ADDR, attach_type=attach_type)
                self.bpf.attach_func(fn, fd, attach_type, BPF_F_ALLOW_MULTI)
                old = self._pinned(name)
                if old is not None:
                    self._lib().bpf_prog_detach2(old, fd, attach_type)
                    os.close(old)
                    os.unlink(self._prog_pin(name))
                if self._lib().bpf_obj_pin(fn.fd, self._prog_pin(name).encode()) != 0:
                    raise LoadError(f"pinning {name} at {self._prog_pin(name)} failed: {os.strerror(ctypes.get_errno())}")
            self.attached = True
        finally:
            os.close(fd)

    def reattach(self, names: list[str]) -> None:
        """Attach again what was detached behind our back (drift): this
        proxy's own programs, already pinned."""
        fd = os.open(self.cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in names:
                attach_type = getattr(self.module.BPFAttachType, PROGRAMS[name])
                fn = self.bpf.load_func(name, self.module.BPF.CGROUP_SOCK_ADDR, attach_type=attach_type)
                self.bpf.attach_func(fn, fd, attach_type, BPF_F_ALLOW_MULTI)
        finally:
            os.close(fd)

    def _lib(self):
        return self.module.libbcc.lib

    def _prog_pin(self, name: str) -> str:
        return os.path.join(self.pin, f"prog_{name}")

    def _pinned(self, name: str) -> int | None:
        path = self._prog_pin(name)
        if not os.path.exists(path):
            return None
        fd = self._lib().bpf_obj_get(path.encode())
        return fd if fd >= 0 else None


def detached(cgroup: str, pin: str) -> list[str]:
    """The pinned programs that are not attached to the cgroup (drift): the
    cgroup's attachments asked of the kernel (BPF_PROG_QUERY, a few syscalls
    a program, no process started: this runs before every partial sync)."""
    module = bcc()
    lib = module.libbcc.lib
    missing = []
    try:
        cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return list(PROGRAMS)
    try:
        for name, kind in PROGRAMS.items():
            prog = lib.bpf_obj_get(os.path.join(pin, f"prog_{name}").encode())
            if prog < 0:
                missing.append(name)
                continue
            try:
                ids = _attached_ids(lib, cg, getattr(module.BPFAttachType, kind))
                if _prog_id(lib, prog) not in ids:
                    missing.append(name)
            finally:
                os.close(prog)
    finally:
        os.close(cg)
    return missing


def _attached_ids(lib, cgroup_fd: int, attach_type: int) -> set[int]:
    ids, count, flags = (ctypes.c_uint32 * 64)(), ctypes.c_uint32(64), ctypes.c_uint32(0)
    if lib.bpf_prog_query(cgroup_fd, attach_type, 0, ctypes.byref(flags), ids, ctypes.byref(count)) != 0:
        return set()
    return set(ids[:count.value])


def _prog_id(lib, prog_fd: int) -> int:
    """struct bpf_prog_info begins (type, id), both __u32."""
    info, size = (ctypes.c_uint32 * 64)(), ctypes.c_uint32(256)
    if lib.bpf_obj_get_info_by_fd(prog_fd, info, ctypes.byref(size)) != 0:
        return -1
    return info[1]


def remove(cgroup: str, pin: str) -> list[str]:
    """Detach and unpin everything a proxy left (--cleanup): the tc programs
    of this network namespace's devices too."""
    from netplane.proxy.ebpf import devices
    removed = [f"tc programs on {name}" for index, name in devices.ours() if devices.detach(index)]
    if not os.path.isdir(pin):
        return removed
    module = bcc()
    lib = module.libbcc.lib
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY) if os.path.isdir(cgroup) else None
    try:
        for name, kind in PROGRAMS.items():
            path = os.path.join(pin, f"prog_{name}")
            if not os.path.exists(path):
                continue
            prog = lib.bpf_obj_get(path.encode())
            if prog >= 0 and fd is not None:
                lib.bpf_prog_detach2(prog, fd, getattr(module.BPFAttachType, kind))
            if prog >= 0:
                os.close(prog)
            os.unlink(path)
            removed.append(f"program {name} ({cgroup})")
    finally:
        if fd is not None:
            os.close(fd)
    for name in MAPS + TABLE_MAPS:
        path = os.path.join(pin, name)
        if os.path.exists(path):
            os.unlink(path)
            removed.append(f"map {name} ({path})")
    try:
        os.rmdir(pin)
    except OSError:
        pass
    return removed


def _check_bpffs(pin: str) -> None:
    """Pins live on a bpffs: say so plainly, instead of bcc's failure later."""
    where = os.path.realpath(pin)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    # the mount holding `where`: the longest mount point that is a prefix of it
    best = max((m for m in mounts if where == m[4] or where.startswith(m[4].rstrip("/") + "/")),
               key=lambda m: len(m[4]), default=None)
    if best is None or best[best.index("-") + 1] != "bpf":
        raise LoadError(f"{pin} is not on a bpffs (mount one there: mount -t bpf bpf DIR)")
