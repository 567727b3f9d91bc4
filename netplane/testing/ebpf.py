"""The eBPF mode's harness for the semantic suite. A connection from a
socket on the node (the node's own addresses, or a pod: every node runs
the same programs for its pods) is traced through the compiled map
entries as the socket programs look it up (SocketTracer); anything else
(another machine's packets) as the tc programs do (PacketTracer). The
compile, the core and the writes (mode.write, in Updates.steps' order) are
the real ones; the maps are dicts, the Maglev tables rendered bytes. No
kernel, no bcc."""
import netaddr

from netplane.proxy import modes
from netplane.proxy.dataplane import Dataplane
from netplane.proxy.ebpf import mode as ebpf_mode
from netplane.testing import harness
from netplane.testing.ebpf_trace import PacketTracer, SocketTracer

MAPS = ("services", "backends", "nodeports", "source_ranges", "maglev_digests")


class DictMap(dict):
    """A BPF map in memory, with maps.Map's interface (update, delete)."""

    def delete(self, keys) -> None:
        for key in keys:
            del self[key]


class FakeTables(dict):
    """The Maglev maps of maps: (size, port id) -> the table's bytes."""

    def write_tables(self, size: int, tables: list[tuple[int, bytes]]) -> None:
        for port_id, table in tables:
            assert len(table) == 4 * size
            self[size, port_id] = table

    def delete_tables(self, size: int, port_ids: list[int]) -> None:
        for port_id in port_ids:
            self.pop((size, port_id), None)

    def of(self, port_id: int) -> bytes | None:
        return next((t for (_, i), t in self.items() if i == port_id), None)


class FakeMaps:
    """What EbpfApplier writes, kept in dicts, through the same write()."""

    def __init__(self, family: int) -> None:
        self.family = family
        self.maps = {name: DictMap() for name in MAPS}
        self.tables = FakeTables()

    def __getattr__(self, name):
        if name in MAPS:
            return self.maps[name]
        raise AttributeError(name)

    def read_back(self):
        return {"sockets": {"services": dict(self.services), "backends": dict(self.backends),
                            "nodeports": dict(self.nodeports), "digests": dict(self.maglev_digests),
                            "source_ranges": dict(self.source_ranges)}}

    def apply(self, plan, previous) -> None:
        ebpf_mode.write(plan, self.maps, self.tables)

    def drift(self):
        return None

    def present(self) -> bool:
        return bool(self.services)

    def cleanup(self) -> list[str]:
        return []


class Programmed:
    def __init__(self, plane, settings, local) -> None:
        self.local, self.settings = local, settings
        self.kernel = plane.appliers

    def trace(self, src: str, proto: str, dst: str, port: int, affinity_to: str | None = None):
        family = 4 if ":" not in dst else 6
        return trace_maps(self.kernel[family], self.settings.cluster_cidrs, self.local,
                          src, proto, dst, port, affinity_to)


def trace_maps(maps, cluster_cidrs, local, src: str, proto: str, dst: str, port: int, affinity_to=None):
    """A connection through maps (FakeMaps, or the kernel's read into the
    same attributes: `netplane explain`): from a socket on the node (the
    node's own addresses, or a pod in `cluster_cidrs`) as the socket
    programs look it up, else as the tc programs do."""
    ip = netaddr.IPAddress(src)
    node_origin = src in local
    from_pod = any(ip in c for c in cluster_cidrs if c.version == ip.version)
    if node_origin or from_pod:
        return SocketTracer(maps.services, maps.backends, set(maps.nodeports)).connect(
            proto, dst, port, node_origin, affinity_to)
    return PacketTracer(maps.services, maps.backends, set(maps.nodeports), maps.source_ranges,
                        maps.tables).arrive(src, proto, dst, port, affinity_to)


@harness("ebpf")
class EbpfHarness:
    nodeports_on_primary_ip = True      # as the nftables mode: kube-proxy's default there
    nodeports_on_localhost = True       # sockets on the node reach node ports on 127.0.0.1 too
    translates_at_connect = True        # nothing is NATed for sockets on the node: no hairpin masquerade
    snat_local_endpoints = False        # external traffic to an endpoint on this node keeps its client
    protocols = ("tcp", "udp")          # SCTP is not served

    def program(self, settings, policies: dict, local_addresses) -> Programmed:
        plane = Dataplane(modes.get("ebpf"), settings, applier=lambda family, options: FakeMaps(family),
                          local_addresses=lambda: [netaddr.IPAddress(a) for a in local_addresses],
                          clean_conntrack=lambda *a: None, sweep=False)
        plane.sync(policies, None)
        return Programmed(plane, settings, local_addresses)
