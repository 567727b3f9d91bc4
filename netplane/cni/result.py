"""The ADD result: one internal model, printed in whichever version was asked.

Version differences (CNI spec, types/040 and types/100):
- 0.3.x and 0.4.0 put "version": "4"|"6" on each IP; 1.0.0 dropped it.
- 1.1.0 added "mtu" (and socketPath/pciID) to interfaces and
  mtu/advmss/priority/table/scope to routes; older versions must not see them.
prevResult arrives in the config's version and is decoded into the same
model, so CHECK and chained ADDs compare like with like.
"""
from dataclasses import dataclass, field, replace

import netaddr

from netplane.cni import versions
from netplane.cni.errors import INVALID_CONFIG, CniError


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None


@dataclass(frozen=True)
class IPConfig:
    address: str            # "10.244.1.5/24", normalised
    gateway: str = ""
    interface: int | None = None  # index into Result.interfaces

    @property
    def version(self) -> int:
        return netaddr.IPNetwork(self.address).version


@dataclass(frozen=True)
class Route:
    dst: str                # "0.0.0.0/0", normalised
    gw: str = ""


@dataclass(frozen=True)
class Result:
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: dict = field(default_factory=dict)

    def merged_after(self, prev: "Result") -> "Result":
        """This plugin's result appended to an earlier plugin's in a chain."""
        offset = len(prev.interfaces)
        shifted = tuple(replace(ip, interface=None if ip.interface is None else ip.interface + offset)
                        for ip in self.ips)
        return Result(prev.interfaces + self.interfaces, prev.ips + shifted,
                      prev.routes + self.routes, prev.dns or self.dns)


def encode(result: Result, version: str) -> dict:
    legacy = not versions.at_least(version, "1.0.0")
    modern = versions.at_least(version, "1.1.0")
    out = {"cniVersion": version,
           "interfaces": [_encode_interface(i, modern) for i in result.interfaces],
           "ips": [_encode_ip(ip, legacy) for ip in result.ips]}
    if result.routes:
        out["routes"] = [_drop_empty({"dst": r.dst, "gw": r.gw}) for r in result.routes]
    # types040 always printed "dns": {}; types100 drops an empty one.
    if legacy or result.dns:
        out["dns"] = dict(result.dns)
    return out


def _encode_interface(iface: Interface, modern: bool) -> dict:
    out = {"name": iface.name, "mac": iface.mac, "sandbox": iface.sandbox}
    if modern and iface.mtu:
        out["mtu"] = iface.mtu
    return _drop_empty(out)


def _encode_ip(ip: IPConfig, legacy: bool) -> dict:
    out = {"version": str(ip.version)} if legacy else {}
    out.update(address=ip.address, gateway=ip.gateway)
    if ip.interface is not None:
        out["interface"] = ip.interface
    return _drop_empty(out)


def _drop_empty(d: dict) -> dict:
    return {k: v for k, v in d.items() if v not in ("", None)}


def decode(raw: dict) -> Result:
    """Parse a prevResult; any supported version's shape is accepted."""
    try:
        return Result(
            interfaces=tuple(Interface(name=i["name"], mac=i.get("mac", ""), sandbox=i.get("sandbox", ""),
                                       mtu=i.get("mtu")) for i in raw.get("interfaces") or ()),
            ips=tuple(IPConfig(address=_norm_net(ip["address"], keep_host=True),
                               gateway=_norm_ip(ip.get("gateway", "")), interface=ip.get("interface"))
                      for ip in raw.get("ips") or ()),
            routes=tuple(Route(dst=_norm_net(r["dst"]), gw=_norm_ip(r.get("gw", "")))
                         for r in raw.get("routes") or ()),
            dns=raw.get("dns") or {},
        )
    except (KeyError, TypeError, AttributeError, netaddr.AddrFormatError, ValueError) as exc:
        raise CniError(INVALID_CONFIG, "invalid network configuration key 'prevResult'",
                       f"malformed result: {exc!r}") from None


def _norm_net(text: str, keep_host: bool = False) -> str:
    net = netaddr.IPNetwork(text)
    return str(net if keep_host else net.cidr)


def _norm_ip(text: str) -> str:
    return str(netaddr.IPAddress(text)) if text else ""
