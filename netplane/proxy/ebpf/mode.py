"""The eBPF mode, part 1: sockets on this node (its pods and its own
processes) are load-balanced in cgroup programs at connect() and sendmsg()
(bpf/sock_lb.c), so their traffic is never NATed. Packets from other
machines (node ports, external and load-balancer IPs, cluster IPs routed
to the node) and SCTP are served by the nftables mode's rules, compiled in
the same sync: the socket programs cannot see them. A socket's traffic,
translated at connect(), never matches those rules: its destination is
already the backend.

A plan is both: the maps' updates (compile.py) and the nftables
transaction. The applier writes the maps first, then the rules.
"""
import logging
import os
import threading
import time
from dataclasses import dataclass

from netplane.proxy import modes
from netplane.proxy.ebpf import compile as sock
from netplane.proxy.ebpf import loader, sockets
from netplane.proxy.ebpf.context import Context as SockContext
from netplane.proxy.ebpf.maps import Map
from netplane.proxy.nftables import mode as nft_mode
from netplane.proxy.nftables.compile import compile_family as nft_compile
from netplane.proxy.options import OptionError, option
from netplane.proxy.settings import Settings

log = logging.getLogger("netplane.proxy")
LOOPBACK = {4: "127.0.0.1", 6: "::1"}


@dataclass(frozen=True)
class EbpfOptions:
    cgroup_path: str = option("", key="cgroupPath", flag="--ebpf-cgroup-path",
                              help="the cgroup v2 the socket programs attach to (on a node: the cgroup2 root)")
    pin_path: str = option("/sys/fs/bpf/netplane", key="pinPath", flag="--ebpf-pin-path",
                           help="the bpffs directory holding the programs and maps (found again on restart)")
    kernel_headers: str = option("", key="kernelHeaders", flag="--ebpf-kernel-headers",
                                 help="a kernel header tree for bcc (default: BCC_KERNEL_SOURCE, or the one "
                                      "scripts/bootstrap builds)")
    services_max: int = option(1 << 20, key="servicesMax",
                               help="entries of the services map: a master and a slot per backend for each address "
                                    "and port (65,536 ports of 10 endpoints need ~720k)")
    backends_max: int = option(1 << 20, key="backendsMax", help="distinct endpoints")
    affinity_max: int = option(1 << 16, key="affinityMax", help="remembered (client, port) pairs (LRU)")
    revnat_max: int = option(1 << 18, key="revnatMax", help="translated sockets remembered for replies (LRU)")


@dataclass(frozen=True)
class Context:
    sockets: SockContext
    rules: object                   # the nftables mode's Context, for traffic from elsewhere


@dataclass
class Plan:
    context: Context
    sockets: sock.Plan
    rules: object                   # the nftables mode's Plan
    compile_s: float = 0.0          # the maps' share of the compile (logged with a full sync's writes)


def context(settings: Settings, options: EbpfOptions, family: int, nodeports) -> Context:
    rules = nft_mode.context(settings, nft_mode.NftablesOptions(), family, nodeports)
    # node ports from sockets on this node: on its node-port addresses, and on localhost
    addresses = tuple(rules.nodeports or ()) + (LOOPBACK[family],)
    return Context(SockContext(family, addresses), rules)


def compile_plan(policies, ctx: Context, previous: Plan | None, changed, installed) -> Plan:
    installed = installed or {}
    started = time.perf_counter()
    sockets_plan = sock.compile_family(policies, ctx.sockets, previous and previous.sockets, changed,
                                       installed.get("sockets"))
    compiled = time.perf_counter() - started
    return Plan(ctx, sockets_plan,
                nft_compile(policies, ctx.rules, previous and previous.rules, changed, installed.get("rules")),
                compiled)


def render(plan: Plan) -> str:
    u = plan.sockets.updates
    lines = [f"# eBPF maps (IPv{plan.context.sockets.family}): {len(u.masters)} master(s), {len(u.slots)} slot(s), "
             f"{len(u.backends)} backend(s) written; {len(u.masters_deleted) + len(u.slots_deleted)} service "
             f"entries and {len(u.backends_deleted)} backend(s) deleted"]
    return "\n".join(lines) + "\n" + nft_mode.render_plan(plan.rules)


class EbpfApplier:
    def __init__(self, family: int, options: EbpfOptions | None = None) -> None:
        self.family, self.options = family, options or EbpfOptions()
        self.rules = nft_mode.NftablesApplier(family)
        self._loaded = None

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
        return {"sockets": {"services": Map(maps["services"]).items(), "backends": Map(maps["backends"]).items(),
                            "nodeports": Map(maps["nodeports"]).items()},
                "rules": self.rules.read_back()}

    def apply(self, plan: Plan, previous: Plan | None) -> None:
        loaded = self.loaded()
        if previous is None:             # a full sync, maybe after drift: programs detached behind our back
            detached = loader.detached(self.options.cgroup_path, self.options.pin_path)
            if detached:
                loaded.reattach(detached)
        maps = {name: Map(table) for name, table in loaded.maps.items()}
        u = plan.sockets.updates
        started = time.perf_counter()
        for name, op, entries in u.steps():    # in the order no lookup sees a dangling slot or backend
            getattr(maps[name], op)(entries)
        if previous is None:              # the goal: a full sync into the maps (compile and writes)
            written = time.perf_counter() - started
            log.info("IPv%d eBPF maps: full sync in %.0f ms (compile %.0f ms, %d entries written in %.0f ms)",
                     self.family, 1000 * (plan.compile_s + written), 1000 * plan.compile_s,
                     len(u.backends) + len(u.slots) + len(u.masters), 1000 * written)
        self.rules.apply(plan.rules, previous and previous.rules)
        if u.left or u.gone:
            self._destroy_sockets(maps["revnat"], u.left, u.gone)

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
        return self.rules.drift()

    def present(self) -> bool:
        """Only the programs and maps: the nftables table is the nftables
        mode's to sweep (a switch to it keeps and rewrites the table)."""
        return os.path.isdir(self.options.pin_path)

    def cleanup(self) -> list[str]:
        """The programs and maps (once: both families share them); `--cleanup`
        removes the rules through the nftables mode's sweep."""
        return loader.remove(self.options.cgroup_path, self.options.pin_path) if self.family == 4 else []


_LOADED: dict[tuple, loader.Loaded] = {}


def _shared(o: EbpfOptions) -> loader.Loaded:
    key = (o.cgroup_path, o.pin_path)
    if key not in _LOADED:
        sizes = {"services": o.services_max, "backends": o.backends_max, "affinity": o.affinity_max,
                 "revnat": o.revnat_max}
        loaded = loader.Loaded(o.cgroup_path, o.pin_path, sizes, o.kernel_headers or _bootstrap_headers())
        loaded.attach()
        log.info("socket load balancing: programs attached to %s, pinned under %s; traffic from other "
                 "machines is served by nftables rules until the eBPF mode's part 2", o.cgroup_path, o.pin_path)
        _LOADED[key] = loaded
    return _LOADED[key]


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
    applier=EbpfApplier, render=render, keeps=("nftables",), unavailable=unavailable,
    translates_at_connect=True))
