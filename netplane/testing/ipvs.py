"""The IPVS mode's harness for the semantic suite: the real compile, core
and applier over FakeIpvs, FakeDevice and FakeNft, and IpvsTracer over
them. The node's local addresses include np-ipvs0's, as in the kernel."""
import netaddr

from netplane.proxy import modes
from netplane.proxy.dataplane import Dataplane
from netplane.proxy.ipvs import names as n
from netplane.proxy.ipvs.mode import IpvsApplier
from netplane.proxy.nftables.names import FAMILY
from netplane.testing import harness
from netplane.testing.ipvs_fake import FakeDevice, FakeIpvs
from netplane.testing.ipvs_trace import IpvsTracer
from netplane.testing.nftables_fake import FakeNft


class Programmed:
    def __init__(self, plane, local) -> None:
        self.local = local
        self.kernel = plane.appliers

    def trace(self, src: str, proto: str, dst: str, port: int, affinity_to: str | None = None):
        family = 4 if ":" not in dst else 6
        applier = self.kernel[family]
        table = applier.nft.tables[FAMILY[family]]
        local = list(self.local) + sorted(applier.device.addresses(family))
        return IpvsTracer(table, local, applier.kernel, affinity_to).trace(src, proto, dst, port)


@harness("ipvs")
class IpvsHarness:
    nodeports_on_primary_ip = True       # as the nftables mode: node ports on the node IP by default

    def program(self, settings, policies: dict, local_addresses) -> Programmed:
        plane = fake_dataplane(settings, local_addresses=lambda: [netaddr.IPAddress(a) for a in local_addresses])
        plane.sync(policies, None)
        return Programmed(plane, local_addresses)


def fake_dataplane(settings, local_addresses=None, options=None) -> Dataplane:
    """The IPVS mode over fakes: `plane.appliers[family]` has .kernel
    (FakeIpvs), .device (FakeDevice, shared by the families) and .nft."""
    device = FakeDevice()

    def applier(family: int, opts) -> IpvsApplier:
        fake = FakeNft(n.TABLE)
        return IpvsApplier(family, opts, kernel=FakeIpvs(family), device=device, runner=fake,
                           reader=fake.reader(family), write_sysctls=lambda values: None)
    return Dataplane(modes.get("ipvs"), settings, options, applier=applier,
                     local_addresses=local_addresses or (lambda: []), clean_conntrack=lambda *a: None, sweep=False)
