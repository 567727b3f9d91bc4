"""The eBPF mode's harness for the semantic suite. A connection from a
socket on the node (the node's own addresses, or a pod: every node runs
the same programs for its pods) is traced through the compiled map
entries, as the socket programs look it up; anything else (another
machine's packets, and SCTP, which the socket programs leave alone)
through the mode's nftables rules, in FakeNft. The compile and the core
are the real ones; no kernel, no bcc."""
import netaddr

from netplane.proxy import modes
from netplane.proxy.dataplane import Dataplane
from netplane.proxy.ebpf import mode as _registers  # noqa: F401  (the mode, until it is a builtin)
from netplane.proxy.nftables.mode import NftablesApplier
from netplane.proxy.nftables.names import FAMILY
from netplane.testing import harness
from netplane.testing.ebpf_trace import SocketTracer
from netplane.testing.nftables import _affinity_set
from netplane.testing.nftables_fake import FakeNft
from netplane.testing.nftables_trace import Tracer


class DictMap(dict):
    """A BPF map in memory, with maps.Map's interface (update, delete)."""

    def delete(self, keys) -> None:
        for key in keys:
            del self[key]


class FakeMaps:
    """What EbpfApplier writes, kept in dicts, through the same ordered steps
    (tests/unit/test_ebpf_compile.py checks the order between any two)."""

    def __init__(self, family: int) -> None:
        self.family = family
        self.fake = FakeNft()
        self.rules = NftablesApplier(family, runner=self.fake, reader=self.fake.reader(family))
        self.services, self.backends, self.nodeports = DictMap(), DictMap(), DictMap()

    def read_back(self):
        return {"sockets": {"services": dict(self.services), "backends": dict(self.backends),
                            "nodeports": dict(self.nodeports)}, "rules": self.rules.read_back()}

    def apply(self, plan, previous) -> None:
        for name, op, entries in plan.sockets.updates.steps():
            getattr(getattr(self, name), op)(entries)
        self.rules.apply(plan.rules, previous and previous.rules)

    def drift(self):
        return self.rules.drift()

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
        maps = self.kernel[family]
        ip = netaddr.IPAddress(src)
        node_origin = src in self.local
        from_pod = any(ip in c for c in self.settings.cluster_cidrs if c.version == family)
        if node_origin or from_pod:
            got = SocketTracer(maps.services, maps.backends, set(maps.nodeports)).connect(
                proto, dst, port, node_origin, affinity_to)
            if got is not None:
                return got
        table = maps.fake.tables[FAMILY[family]]
        affinity = {_affinity_set(table, affinity_to): {src}} if affinity_to else {}
        return Tracer(table, self.local, affinity).trace(src, proto, dst, port)


@harness("ebpf")
class EbpfHarness:
    nodeports_on_primary_ip = True      # its rules for other machines are the nftables mode's
    nodeports_on_localhost = True       # sockets on the node reach node ports on 127.0.0.1 too
    translates_at_connect = True        # nothing is NATed for sockets on the node: no hairpin masquerade

    def program(self, settings, policies: dict, local_addresses) -> Programmed:
        plane = Dataplane(modes.get("ebpf"), settings, applier=lambda family, options: FakeMaps(family),
                          local_addresses=lambda: [netaddr.IPAddress(a) for a in local_addresses],
                          clean_conntrack=lambda *a: None, sweep=False)
        plane.sync(policies, None)
        return Programmed(plane, settings, local_addresses)

