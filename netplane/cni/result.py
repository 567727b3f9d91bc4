"""The ADD result: one internal model, printed in whichever version was asked.

Version differences (CNI spec, types/040 and types/100):
- 0.3.x and 0.4.0 put "version": "4"|"6" on each IP; 1.0.0 dropped it.
- 1.1.0 added "mtu" (and socketPath/pciID) to interfaces and
  mtu/advmss/priority/table/scope to routes; older versions must not see them.
prevResult arrives in the config's version and is decoded into the same
model, so CHECK and chained ADDs compare like with like.
"""
import ipaddress
from dataclasses import dataclass, field, replace

from netplane.cni import versions
from netplane.cni.config import strict_cidr
from netplane.cni.errors import INVALID_CONFIG, CniError
from netplane.cni.invocation import shown


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
        return ipaddress.ip_interface(self.address).version


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
    """Parse and check a prevResult; any supported version's shape is accepted.

    Every member we read or print back is checked here, before an address
    is taken or a link touched, so a malformed prevResult is one error
    naming its key path (code 7) rather than a failure after the pod is
    wired. Members are optional unless the spec requires them, and null
    counts as absent, as it does for the reference Go types.
    """
    if not isinstance(raw, dict):
        raise _bad("prevResult", f"must be an object, got {shown(raw)}")
    _string(raw, "cniVersion", "")
    interfaces = tuple(_interface(item, path) for path, item in _objects(raw, "interfaces"))
    return Result(
        interfaces=interfaces,
        ips=tuple(_ip(item, path, len(interfaces)) for path, item in _objects(raw, "ips")),
        routes=tuple(_route(item, path) for path, item in _objects(raw, "routes")),
        dns=_dns(raw.get("dns")),
    )


def _bad(path: str, why: str) -> CniError:
    return CniError(INVALID_CONFIG, "invalid network configuration key 'prevResult'", f"{path}: {why}")


def _objects(raw: dict, key: str) -> list[tuple[str, dict]]:
    """The list raw[key] as (key path, member) pairs, each member an object."""
    items = raw.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise _bad(key, f"must be a list, got {shown(items)}")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(f"{key}[{n}]", f"must be an object, got {shown(item)}")
        out.append((f"{key}[{n}]", item))
    return out


def _string(obj: dict, key: str, path: str, required: bool = False) -> str:
    value = obj.get(key)
    where = f"{path}.{key}" if path else key
    if value is None or (required and value == ""):
        if required:
            raise _bad(where, "is required (a non-empty string)")
        return ""
    if not isinstance(value, str):
        raise _bad(where, f"must be a {'non-empty ' if required else ''}string, got {shown(value)}")
    return value


def _integer(obj: dict, key: str, path: str) -> int | None:
    value = obj.get(key)
    # bool is an int to Python, never to JSON.
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise _bad(f"{path}.{key}", f"must be a non-negative integer, got {shown(value)}")
    return value


def _interface(item: dict, path: str) -> Interface:
    name = _string(item, "name", path, required=True)
    for key in ("socketPath", "pciID"):   # 1.1.0 members we do not keep, checked all the same
        _string(item, key, path)
    return Interface(name=name, mac=_string(item, "mac", path), sandbox=_string(item, "sandbox", path),
                     mtu=_integer(item, "mtu", path))


def _ip(item: dict, path: str, interfaces: int) -> IPConfig:
    if item.get("version") not in (None, "4", "6"):  # 0.3.x/0.4.0 only
        raise _bad(f"{path}.version", f"must be \"4\" or \"6\", got {shown(item['version'])}")
    index = _integer(item, "interface", path)
    if index is not None and index >= interfaces:
        raise _bad(f"{path}.interface", f"is {index}, but prevResult has {interfaces} interface(s)")
    return IPConfig(address=_cidr(_string(item, "address", path, required=True), f"{path}.address", keep_host=True),
                    gateway=_address(_string(item, "gateway", path), f"{path}.gateway"),
                    interface=index)


def _route(item: dict, path: str) -> Route:
    for key in ("mtu", "advmss", "priority", "table", "scope"):  # 1.1.0 members we do not keep
        _integer(item, key, path)
    return Route(dst=_cidr(_string(item, "dst", path, required=True), f"{path}.dst"),
                 gw=_address(_string(item, "gw", path), f"{path}.gw"))


# The spec's DNS members and their types, in the reference types' order.
DNS_LISTS = ("nameservers", "search", "options")


def _dns(value) -> dict:
    """The known DNS members only: they are printed back, and anything else
    (as in the Go types, which drop it) could be of any shape or depth."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("dns", f"must be an object, got {shown(value)}")
    out = {}
    for key in ("nameservers", "domain", "search", "options"):
        member = value.get(key)
        if member is None:
            continue
        if key in DNS_LISTS and not (isinstance(member, list) and all(isinstance(m, str) for m in member)):
            raise _bad(f"dns.{key}", f"must be a list of strings, got {shown(member)}")
        if key == "domain" and not isinstance(member, str):
            raise _bad("dns.domain", f"must be a string, got {shown(member)}")
        out[key] = list(member) if isinstance(member, list) else member
    return out


def _cidr(text: str, path: str, keep_host: bool = False) -> str:
    """Normalised "address/length" (the kernel's spelling, IPv6 compressed)."""
    try:
        given = strict_cidr(text)
    except ValueError:
        raise _bad(path, f"must be an address/prefix-length, got {shown(text)}") from None
    return str(given if keep_host else given.network)


def _address(text: str, path: str) -> str:
    if not text:
        return ""
    try:
        return str(ipaddress.ip_address(text))  # strict: no whitespace, no shorthand like "10.1"
    except ValueError:
        raise _bad(path, f"must be an IP address, got {shown(text)}") from None
