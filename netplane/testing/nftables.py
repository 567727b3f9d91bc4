"""The nftables mode's harness for the semantic suite: the real compile,
core and applier over FakeNft, and the packet tracer over its table."""
import netaddr

from netplane.proxy import modes
from netplane.proxy.dataplane import Dataplane
from netplane.proxy.nftables.mode import NftablesApplier
from netplane.proxy.nftables.names import FAMILY
from netplane.testing import harness
from netplane.testing.nftables_fake import FakeNft
from netplane.testing.nftables_trace import Tracer


class Programmed:
    def __init__(self, plane, local) -> None:
        self.local = local
        self.kernel = {f: a.nft for f, a in plane.appliers.items()}

    def trace(self, src: str, proto: str, dst: str, port: int, affinity_to: str | None = None):
        family = 4 if ":" not in dst else 6
        table = self.kernel[family].tables[FAMILY[family]]
        affinity = {_affinity_set(table, affinity_to): {src}} if affinity_to else {}
        return Tracer(table, self.local, affinity).trace(src, proto, dst, port)


@harness("nftables")
class NftablesHarness:
    # kube-proxy's nftables mode: node ports answer on the node's primary IP
    # by default, not on every local address
    nodeports_on_primary_ip = True

    def program(self, settings, policies: dict, local_addresses) -> Programmed:
        plane = fake_dataplane(settings, local_addresses=lambda: [netaddr.IPAddress(a) for a in local_addresses])
        plane.sync(policies, None)
        return Programmed(plane, local_addresses)


def fake_dataplane(settings, local_addresses=None) -> Dataplane:
    """The nftables mode over FakeNft: the real compile, core and applier,
    with the kernel in memory (`plane.appliers[family].nft`)."""
    return Dataplane(modes.get("nftables"), settings,
                     applier=_fake_applier,
                     local_addresses=local_addresses or (lambda: []), clean_conntrack=lambda *a: None, sweep=False)


def _fake_applier(family: int, options) -> NftablesApplier:
    fake = FakeNft()
    return NftablesApplier(family, options, runner=fake, reader=fake.reader(family))


def _affinity_set(table: dict, endpoint: str) -> str:
    """The dynamic set that remembers clients sent to `endpoint`: the one
    its endpoint chain updates beside the DNAT."""
    for rules in table["chains"].values():
        dnat = any(rule.split()[-1] == endpoint and " dnat " in f" {rule}" for rule in rules)
        for rule in rules if dnat else ():
            if rule.startswith("update @"):
                return rule.split()[1][1:]
    raise AssertionError(f"no affinity set for {endpoint}")
