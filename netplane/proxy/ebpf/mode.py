"""The eBPF mode: sockets on this node (its pods and its own processes) are
load-balanced in cgroup programs at connect() and sendmsg()
(bpf/sock_lb.c), so their traffic is never NATed; packets from other
machines (node ports, external and load-balancer IPs, cluster IPs routed
to the node) in tc programs on the node's devices (bpf/tc_lb.c), with
their own connection tracking, NAT and Maglev. No iptables or nftables
rule is needed. SCTP is not served: its CRC32c checksum covers the ports
and cannot be patched in flight (the log says how many ports that leaves).

A plan is the maps' updates (compile.py), written in their order
(Updates.steps); the Maglev tables are rendered as they are written.
"""
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from netplane import fastpath
from netplane.proxy import modes
from netplane.proxy.ebpf import compile as sock
from netplane.proxy.ebpf import devices, loader, maglev, sockets
from netplane.proxy.ebpf import entries as e
from netplane.proxy.ebpf.context import Context
from netplane.proxy.ebpf.maps import Map
from netplane.proxy.nftables.mode import nodeport_ips
from netplane.proxy.options import OptionError, option
from netplane.proxy.settings import Settings

log = logging.getLogger("netplane.proxy")
LOOPBACK = {4: "127.0.0.1", 6: "::1"}
_tables = fastpath.load("maglev")          # table(): maglev.py's, or ext/maglev.pyx's


@dataclass(frozen=True)
class EbpfOptions:
    cgroup_path: str = option("", key="cgroupPath", flag="--ebpf-cgroup-path",
                              help="the cgroup v2 the socket programs attach to (on a node: the cgroup2 root)")
    pin_path: str = option("/sys/fs/bpf/netplane", key="pinPath", flag="--ebpf-pin-path",
                           help="the bpffs directory holding the programs and maps (found again on restart)")
    kernel_headers: str = option("", key="kernelHeaders", flag="--ebpf-kernel-headers",
                                 help="a kernel header tree for bcc (default: BCC_KERNEL_SOURCE, or the one "
                                      "scripts/bootstrap builds)")
    devices: str = option("", key="devices", flag="--ebpf-devices",
                          help="comma-separated devices for the tc programs (default: those holding the node "
                               "IPs, and those routing to other nodes' pods)")
    services_max: int = option(1 << 20, key="servicesMax",
                               help="entries of the services map: a master and a slot per backend for each address "
                                    "and port (65,536 ports of 10 endpoints need ~720k)")
    backends_max: int = option(1 << 20, key="backendsMax", help="distinct endpoints")
    affinity_max: int = option(1 << 16, key="affinityMax", help="remembered (client, port) pairs (LRU)")
    revnat_max: int = option(1 << 18, key="revnatMax", help="translated sockets remembered for replies (LRU)")
    ct_max: int = option(1 << 18, key="ctMax", help="connection-tracking entries for traffic from other machines "
                                                     "(LRU; 2 or 4 per flow)")
    maglev_table_size: int = option(maglev.DEFAULT_SIZE, key="maglevTableSize",
                                    help=f"slots of each Maglev table, one of {', '.join(map(str, maglev.SIZES))}")
    maglev_compact: bool = option(False, key="maglevCompact",
                                  help="per Service the smallest size >= 100 x its backends (up to "
                                       "maglevTableSize): far less kernel memory, a little more disruption")
    maglev_seed: int = option(0, key="maglevSeed", help="the tables' hash seed: the same on every node")
    nat_port_min: int = option(61000, key="natPortMin", help="SNAT ports, above the kernel's ephemeral range")
    nat_port_max: int = option(65535, key="natPortMax", help="the last SNAT port")
    ct_timeout_tcp: int = option(21600, key="ctTimeoutTCP", help="seconds an idle established TCP flow is kept")
    ct_timeout_other: int = option(60, key="ctTimeoutOther", help="seconds an idle UDP flow is kept")


@dataclass
class Plan:
    context: Context
    sockets: sock.Plan
    compile_s: float = 0.0          # logged with a full sync's writes
    unserved: int = 0               # SCTP ports: not served in this mode


def context(settings: Settings, options: EbpfOptions, family: int, nodeports) -> Context:
    if options.maglev_table_size not in maglev.SIZES:
        raise OptionError(f"ebpf.maglevTableSize {options.maglev_table_size}: choose one of "
                          f"{', '.join(map(str, maglev.SIZES))}")
    if not 1024 <= options.nat_port_min <= options.nat_port_max <= 65535:
        raise OptionError(f"ebpf.natPortMin..natPortMax {options.nat_port_min}..{options.nat_port_max}: "
                          "need 1024 <= min <= max <= 65535")
    # node ports from sockets on this node: on its node-port addresses, and on localhost
    addresses = tuple(nodeport_ips(settings, family, nodeports) or ()) + (LOOPBACK[family],)
    return Context(family, addresses, settings.node.name, options.maglev_table_size, options.maglev_compact,
                   options.maglev_seed, tuple(settings.node_ips), tuple(settings.cluster_cidrs))


def compile_plan(policies, ctx: Context, previous: Plan | None, changed, installed) -> Plan:
    started = time.perf_counter()
    plan = sock.compile_family(policies, ctx, previous and previous.sockets, changed, (installed or {}).get("sockets"))
    unserved = sum(1 for p in policies.values() if p.port.protocol not in sock.PROTO)
    return Plan(ctx, plan, time.perf_counter() - started, unserved)


def render(plan: Plan) -> str:
    u = plan.sockets.updates
    return (f"# eBPF maps (IPv{plan.context.family}): {len(u.masters)} master(s), {len(u.slots)} slot(s), "
            f"{len(u.backends)} backend(s), {len(u.tables)} Maglev table(s), {len(u.ranges)} source range(s) "
            f"written; {len(u.masters_deleted) + len(u.slots_deleted)} service entries, {len(u.backends_deleted)} "
            f"backend(s), {len(u.tables_deleted)} table(s) and {len(u.ranges_deleted)} range(s) deleted\n")


def counts(plan: Plan, full: bool) -> modes.Counts:
    """Entries of the BPF maps the plan's mirror holds (O(1): their sizes),
    and what this sync wrote into them (netplane_proxy_objects{kind})."""
    s, u = plan.sockets, plan.sockets.updates
    held = {"services": len(s.services), "backends": len(s.backends), "maglev_tables": len(s.tables),
            "nodeports": len(plan.context.nodeports)}
    written = {"services": len(u.masters) + len(u.slots), "backends": len(u.backends),
               "maglev_tables": len(u.tables), "deleted": len(u.masters_deleted) + len(u.slots_deleted)
               + len(u.backends_deleted) + len(u.tables_deleted)}
    return modes.Counts(held, written)


class EbpfApplier:
    def __init__(self, family: int, options: EbpfOptions | None = None) -> None:
        self.family, self.options = family, options or EbpfOptions()
        self._loaded = None

    def prepare(self) -> None:
        """The active mode's appliers are made: start bcc's compile, which
        runs while the sources are read (a sweep's appliers never call this)."""
        if self.options.cgroup_path and unavailable() is None:
            _compiling(self.options)

    def loaded(self) -> loader.Loaded:
        """The programs, loaded and attached once per process (both families share them)."""
        if self._loaded is None:
            if not self.options.cgroup_path:
                raise OptionError("ebpf.cgroupPath (--ebpf-cgroup-path) is required: the cgroup whose "
                                  "sockets are balanced (on a node, the cgroup2 root)")
            self._loaded = _shared(self.options)
        return self._loaded

    def read_back(self) -> dict:
        maps = self.loaded().maps
        return {"sockets": {name: Map(maps[kernel]).items() for name, kernel in _READ_BACK.items()}}

    def apply(self, plan: Plan, previous: Plan | None) -> None:
        loaded = self.loaded()
        if previous is None:             # a full sync, maybe after drift: programs detached behind our back
            detached = loader.detached(self.options.cgroup_path, self.options.pin_path)
            if detached:
                loaded.reattach(detached)
            self._attach_devices(loaded, plan.context)
        maps = {name: Map(table) for name, table in loaded.maps.items()}
        u = plan.sockets.updates
        started = time.perf_counter()
        rendered = write(plan, maps, loaded)
        if previous is None:              # the goal: a full sync into the maps (compile and writes)
            written = time.perf_counter() - started
            log.info("IPv%d eBPF maps: full sync in %.0f ms (compile %.0f ms, %d entries and %d Maglev tables "
                     "written in %.0f ms, of which %.0f ms computing tables)", self.family,
                     1000 * (plan.compile_s + written), 1000 * plan.compile_s,
                     len(u.backends) + len(u.slots) + len(u.masters), len(u.tables), 1000 * written, 1000 * rendered)
            if plan.unserved:
                log.warning("IPv%d: %d SCTP service port(s) are not served in ebpf mode", self.family, plan.unserved)
        elif u.tables or u.tables_deleted:      # a change recomputes only the tables of the ports it changed
            log.info("IPv%d eBPF maps: %d Maglev table(s) computed in %.1f ms and rewritten, %d deleted",
                     self.family, len(u.tables), 1000 * rendered, len(u.tables_deleted))
        if u.left or u.gone:
            self._destroy_sockets(maps["revnat"], u.left, u.gone)

    def _attach_devices(self, loaded, ctx: Context) -> None:
        names = tuple(n.strip() for n in self.options.devices.split(",") if n.strip())
        try:
            found = devices.find(names, ctx.node_ips, ctx.cluster_cidrs)
        except ValueError as err:
            raise OptionError(str(err)) from None
        programs = loaded.tc_programs()
        nat = Map(loaded.maps["nat_addresses"])
        for device in found:
            devices.attach(device, programs)
            nat.update({e.nat_key(device.index, f): e.backend(e.address(ip), 0)
                        for f, ip in device.addresses.items() if ip is not None})
        if [d.name for d in found] != [d.name for d in loaded.devices]:     # both families share them
            log.info("tc programs on %s", ", ".join(d.name for d in found) or "no device")
        loaded.devices = found

    def _destroy_sockets(self, revnat: Map, left: list[tuple], gone: list[tuple]) -> None:
        """Sockets left on a backend that went are destroyed, off the sync's
        thread (a child process per network namespace; see sockets.py): UDP
        ones whose backend left their Service, TCP ones whose backend is gone
        for good (an established TCP connection to a live pod may finish)."""
        udp, tcp = sockets.stale(revnat.items(), left, set(gone))
        if not (udp or tcp):
            return

        def run() -> None:
            try:
                n = sockets.destroy(self.options.cgroup_path, udp, tcp)
                log.info("destroyed %d socket(s) left on backends that went", n)
            except Exception as err:          # never fatal: the maps are in
                log.error("destroying sockets left on backends that went failed: %s", err)
        threading.Thread(target=run, daemon=True, name="socket-destroy").start()

    def drift(self) -> str | None:
        missing = loader.detached(self.options.cgroup_path, self.options.pin_path)
        if missing:
            return f"socket program(s) {', '.join(missing)} are no longer attached to {self.options.cgroup_path}"
        for device in self.loaded().devices:
            lost = set(devices.PARENTS) - devices.attached(device.index)
            if lost:
                return f"the tc program(s) of {device.name} ({', '.join(sorted(lost))}) are gone"
        return None

    def present(self) -> bool:
        return os.path.isdir(self.options.pin_path)

    def cleanup(self) -> list[str]:
        """The programs and maps (once: both families share them)."""
        return loader.remove(self.options.cgroup_path, self.options.pin_path) if self.family == 4 else []


def write(plan: Plan, maps: dict, tables) -> float:
    """The plan's updates, in their order (Updates.steps), into `maps` (name
    -> update/delete of bytes) and `tables` (write_tables/delete_tables): the
    kernel's through the applier, dicts through the tests' fake. A table is
    rendered (maglev.table) just before it is written. Returns the seconds
    spent rendering tables."""
    u, seed, rendered = plan.sockets.updates, plan.context.maglev_seed, 0.0
    for name, op, entries in u.steps():
        if name != "tables":
            getattr(maps[name], op)(entries)
        elif op == "update":
            rendered += _write_tables(entries, seed, tables)
            maps["maglev_digests"].update({k: plan.sockets.digests[k] for k in (i.to_bytes(4, "little")
                                                                                 for i in entries)})
        else:
            by_size = {}
            for port_id, size in entries.items():
                by_size.setdefault(size, []).append(port_id)
            for size, port_ids in by_size.items():
                tables.delete_tables(size, port_ids)
            maps["maglev_digests"].delete([i.to_bytes(4, "little") for i in entries if i not in u.tables])
    return rendered


TABLES_AT_ONCE = 256          # rendered, then written in one batch: bounded memory and open map fds


def _write_tables(entries: dict, seed: int, tables) -> float:
    """Render and write tables TABLES_AT_ONCE at a time, per size; returns the seconds spent rendering."""
    rendered, items = 0.0, list(entries.items())
    for start in range(0, len(items), TABLES_AT_ONCE):
        by_size: dict[int, list] = {}
        began = time.perf_counter()
        for port_id, table in items[start:start + TABLES_AT_ONCE]:
            lut = _tables.table([maglev.name(a, p) for a, p, _ in table.endpoints], list(table.ids), table.size, seed)
            by_size.setdefault(table.size, []).append((port_id, lut))
        rendered += time.perf_counter() - began
        for size, written in by_size.items():
            tables.write_tables(size, written)
    return rendered


# what a full compile reads back: the compile's name -> the kernel map's
_READ_BACK = {"services": "services", "backends": "backends", "nodeports": "nodeports",
              "digests": "maglev_digests", "source_ranges": "source_ranges"}
_LOADED: dict[tuple, loader.Loaded] = {}


def _shared(o: EbpfOptions) -> loader.Loaded:
    key = (o.cgroup_path, o.pin_path)
    if key not in _LOADED:
        # kept before attaching: a failed attach is retried by the next sync with the same programs,
        # not compiled again (bcc's objects are never freed: a retry loop would grow without bound)
        _LOADED[key] = _compiling(o).result()
    loaded = _LOADED[key]
    if not loaded.attached:
        loaded.attach()
        log.info("socket load balancing: programs attached to %s, pinned under %s", o.cgroup_path, o.pin_path)
    return loaded


_COMPILING: dict[tuple, Future] = {}


def _compiling(o: EbpfOptions) -> Future:
    """bcc's compile (about 1 s), started when the applier is made: it runs
    in a thread while the sources are read and the first compile of the
    Services runs (ctypes lets go of the GIL inside LLVM), and the first
    sync waits for it. A failure is raised there, and the next sync
    compiles again."""
    key = (o.cgroup_path, o.pin_path)
    future = _COMPILING.get(key)
    if future is None or (future.done() and future.exception() is not None):
        future = _COMPILING[key] = Future()
        threading.Thread(target=_compile, args=(o, future), daemon=True, name="bpf-compile").start()
    return future


def _compile(o: EbpfOptions, future: Future) -> None:
    sizes = {"services": o.services_max, "backends": o.backends_max, "affinity": o.affinity_max,
             "revnat": o.revnat_max, "ct": o.ct_max}
    settings = {"NAT_PORT_MIN": o.nat_port_min, "NAT_PORT_MAX": o.nat_port_max, "MAGLEV_SEED": o.maglev_seed,
                "CT_TCP": o.ct_timeout_tcp, "CT_OTHER": o.ct_timeout_other}
    tables = tuple(m for m in maglev.SIZES if m <= o.maglev_table_size) if o.maglev_compact else \
        (o.maglev_table_size,)
    try:
        future.set_result(loader.Loaded(o.cgroup_path, o.pin_path, sizes, o.kernel_headers or _bootstrap_headers(),
                                        settings, tables))
    except BaseException as err:          # raised where the first sync waits for it
        future.set_exception(err)


def _bootstrap_headers() -> str:
    """The private header tree scripts/bootstrap builds beside the venv."""
    import sys
    tree = os.path.join(sys.prefix, "share", "netplane", "kernel-headers")
    return tree if os.path.isdir(tree) else ""


def unavailable() -> str | None:
    """Why this machine cannot run the mode (None: it can)."""
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc is not installed (Debian's python3-bpfcc; scripts/bootstrap installs it)"
    if not (os.environ.get("BCC_KERNEL_SOURCE") or _bootstrap_headers()
            or os.path.isdir(f"/lib/modules/{os.uname().release}/build")):
        return "bcc finds no kernel headers (scripts/bootstrap builds a private tree)"
    return None


MODE = modes.register(modes.Mode(
    name="ebpf", options=EbpfOptions, section="ebpf", context=context, compile=compile_plan,
    applier=EbpfApplier, render=render, unavailable=unavailable, translates_at_connect=True,
    snat_local_endpoints=False, counts=counts))
