"""The iptables mode's harness for the semantic suite: the real compile,
core and applier over FakeIptables, and the packet tracer over its tables.
One harness per rule layout: both must pass every semantic check."""
import shlex

import netaddr

from netplane.proxy.iptables.rules import LAYOUTS
from netplane.testing import harness
from netplane.testing.iptables_fake import fake_dataplane
from netplane.testing.iptables_trace import Tracer


class Programmed:
    def __init__(self, plane, local) -> None:
        self.local = local
        self.kernel = {f: a.runner for f, a in plane.appliers.items()}

    def trace(self, src: str, proto: str, dst: str, port: int, affinity_to: str | None = None):
        family = 4 if ":" not in dst else 6
        tables = self.kernel[family].tables
        recent = [_affinity_list(tables, affinity_to)] if affinity_to else []
        return Tracer(tables, self.local, recent).trace(src, proto, dst, port)


class IptablesHarness:
    nodeports_on_primary_ip = False        # node ports answer on every local address
    nodeports_on_localhost = True          # loopback too, for IPv4 (localhostNodePorts, kube-proxy's default)

    def __init__(self, layout: str) -> None:
        self.layout = layout

    def program(self, settings, policies: dict, local_addresses) -> Programmed:
        plane = fake_dataplane(settings, self.layout,
                               local_addresses=lambda: [netaddr.IPAddress(a) for a in local_addresses])
        plane.sync(policies, None)
        return Programmed(plane, local_addresses)


def _affinity_list(tables, endpoint: str) -> str:
    """The recent list that remembers clients sent to `endpoint`: named after
    its SEP chain, which the compact layout may not create (the DNAT then
    sits in the SVC chain, beside the --set)."""
    for rules in tables["nat"].values():
        for rule in rules:
            words = shlex.split(rule)
            if "--set" in words and "DNAT" in words and words[words.index("--to-destination") + 1] == endpoint:
                return words[words.index("--name") + 1]
    raise AssertionError(f"no affinity list for {endpoint}")


for _layout in LAYOUTS:
    harness(f"iptables/{_layout}")(lambda layout=_layout: IptablesHarness(layout))
