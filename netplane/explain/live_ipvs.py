"""The IPVS mode's live virtual servers, in the form IpvsTracer reads
(testing/ipvs_fake.FakeIpvs's `services` and `real`).

They are read as the mode's full sync reads them (IpvsApplier.read_back:
an IPVS dump over generic netlink, np-ipvs0's addresses, the node-port
servers recorded in the `nodeport-servers` set), and only the mode's own
are kept (compile.ours): IPVS is shared with whatever else runs on the
node (an admin's keepalived), and this explains what the proxy does.
The nftables table around them is read by live.nft_table.
"""
from dataclasses import dataclass

from netplane.errors import OperatorError
from netplane.explain.privilege import NEEDS_ROOT, denied
from netplane.proxy import modes
from netplane.proxy.ipvs import compile as ipvs_compile
from netplane.proxy.ipvs.plan import Dest, Key, VirtualServer


@dataclass
class HeldIpvs:
    services: dict[Key, VirtualServer]
    real: dict[Key, dict[Dest, tuple[int, int, int]]]      # dest -> (weight, active, inactive)


def held(installed: dict) -> HeldIpvs:
    """`installed`: read_back()'s {"servers": {key: (server, {dest: counts})},
    "addresses": np-ipvs0's, "recorded": the node-port keys}."""
    ours = {key: found for key, found in installed["servers"].items() if ipvs_compile.ours(key, installed)}
    return HeldIpvs({key: server for key, (server, _) in ours.items()},
                    {key: dict(dests) for key, (_, dests) in ours.items()})


def read(family: int, options) -> HeldIpvs:
    """The mode's virtual servers in this network namespace."""
    from netplane.proxy.ipvs.kernel import IpvsError

    applier = modes.get("ipvs").applier(family, options)
    try:
        installed = applier.read_back()
    except IpvsError as err:
        raise OperatorError(f"reading IPVS: {err}" + (f"; {NEEDS_ROOT}" if denied(err) else "")) from None
    except OSError as err:
        raise OperatorError(f"reading IPVS or np-ipvs0: {err.strerror or err}"
                            + (f"; {NEEDS_ROOT}" if denied(err) else "")) from None
    return held(installed)
