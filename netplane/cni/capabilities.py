"""The `runtimeConfig` a runtime injects for the capabilities netplane declares.

Per the CNI conventions, a runtime passes `runtimeConfig.<capability>` only
for capabilities the conflist declares on the plugin. netplane serves two:

- `ips`: the pod gets exactly these addresses, at most one per family; a
  family without one is allocated as usual. A bare address is accepted and
  takes the subnet's prefix; a given prefix must equal the subnet's, since
  a different one means the runtime believes in another network.
- `mac`: the pod end of the veth gets this MAC instead of the derived one.

`portMappings` (hostPort) is not ours: a non-empty list is refused with a
pointer to the reference `portmap` plugin, which chains after netplane.
Any other key is ignored, as the conventions ask.

parse() checks the shape, and check_fits() whether each requested address
fits its subnet, both while the config is parsed, before anything touches
the disk or the kernel. When the subnets come from the node state file
instead of the config, they are known only at ADD: the allocator calls fit()
again before it takes its lock, so either way nothing is written first.
"""
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Sequence

from netplane.cni.errors import INVALID_CONFIG, UNSUPPORTED_FIELD, CniError
from netplane.cni.ipam.pool import IPAddress, IPNetwork, Pool

MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
PREFIX = re.compile(r"(0|[1-9][0-9]{0,2})\Z")


@dataclass(frozen=True)
class RequestedIP:
    ip: IPAddress
    prefixlen: int | None = None   # None: a bare address, the subnet's prefix applies

    @property
    def version(self) -> int:
        return self.ip.version

    def __str__(self) -> str:
        return str(self.ip) if self.prefixlen is None else f"{self.ip}/{self.prefixlen}"


@dataclass(frozen=True)
class RuntimeConfig:
    ips: tuple[RequestedIP, ...] = ()
    mac: str | None = None         # lower-case colon-hex; None: derive from the IPv4 address


def parse(value: Any) -> RuntimeConfig:
    """Validate `runtimeConfig`; absent or null means nothing was requested."""
    if value is None:
        return RuntimeConfig()
    if not isinstance(value, dict):
        raise _invalid("runtimeConfig", f"must be an object, got {value!r}")
    _refuse_port_mappings(value.get("portMappings"))
    return RuntimeConfig(ips=_ips(value.get("ips")), mac=_mac(value.get("mac")))


def check_fits(runtime_config: RuntimeConfig, subnets: Sequence[IPNetwork]) -> None:
    """fit() at parse time, when the config names its subnets; else a no-op."""
    if subnets and runtime_config.ips:
        fit(runtime_config.ips, [Pool(s) for s in subnets])


def fit(requested: Sequence[RequestedIP], pools: Sequence[Pool]) -> dict[int, str]:
    """The requested addresses by family, each checked against its pool."""
    out = {}
    for req in requested:
        pool = next((p for p in pools if p.version == req.version), None)
        if pool is None:
            raise _invalid("runtimeConfig.ips", f"{req} is IPv{req.version}; the network has no such subnet")
        problem = _unusable(req.ip, pool)
        if problem:
            raise _invalid("runtimeConfig.ips", f"{req.ip} {problem}")
        if req.prefixlen is not None and req.prefixlen != pool.subnet.prefixlen:
            raise _invalid("runtimeConfig.ips", f"{req} has prefix /{req.prefixlen}, the subnet is {pool.subnet}")
        out[req.version] = str(req.ip)
    return out


def _unusable(ip: IPAddress, pool: Pool) -> str:
    """Why `ip` is not one the pool could hand out itself; '' if it is."""
    if ip not in pool.subnet:
        return f"is outside the subnet {pool.subnet}"
    if ip == pool.subnet.network_address:
        return f"is the network address of {pool.subnet}"
    if ip == pool.gateway:
        return f"is the gateway of {pool.subnet}"
    if not pool.usable(ip):
        # IPv4's broadcast; netplane never hands out IPv6's top address either.
        return f"is the last address of {pool.subnet}, which netplane never gives a pod"
    return ""


def _refuse_port_mappings(value: Any) -> None:
    # An empty list is what a runtime sends for a pod without hostPorts.
    if value:
        raise CniError(UNSUPPORTED_FIELD, "unsupported field 'runtimeConfig.portMappings'",
                       "netplane does not do hostPort: chain the reference 'portmap' plugin after netplane "
                       "in the conflist and declare the portMappings capability there, not on netplane")


def _ips(value: Any) -> tuple[RequestedIP, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid("runtimeConfig.ips", f"must be a list of address strings, got {value!r}")
    requested = tuple(_requested_ip(item) for item in value)
    for version in (4, 6):
        count = sum(1 for req in requested if req.version == version)
        if count > 1:
            raise _invalid("runtimeConfig.ips", f"allows at most one IPv{version} address, got {count}")
    return requested


def _requested_ip(text: str) -> RequestedIP:
    address, slash, prefix = text.partition("/")
    # A runtime sends plain CIDR: no "/024", "/ 24" or "/255.255.255.0".
    # ipaddress reads a zone ("fe80::1%eth0"), which no pod address has.
    if (slash and not PREFIX.match(prefix)) or "%" in address:
        raise _invalid("runtimeConfig.ips", f"{text!r} is not an address in CIDR form")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise _invalid("runtimeConfig.ips", f"{text!r} is not an address in CIDR form") from None
    prefixlen = int(prefix) if slash else None
    if prefixlen is not None and prefixlen > (32 if ip.version == 4 else 128):
        raise _invalid("runtimeConfig.ips", f"{text!r} has an impossible prefix length")
    return RequestedIP(ip, prefixlen)


def _mac(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not MAC.match(value):
        raise _invalid("runtimeConfig.mac", f"must be a MAC like 'c2:11:22:33:44:55', got {value!r}")
    mac = value.lower()
    # The kernel refuses a multicast or all-zero address on an interface.
    if int(mac[:2], 16) & 0x01:
        raise _invalid("runtimeConfig.mac", f"{value!r} is a multicast address; a pod needs a unicast one")
    if mac == "00:00:00:00:00:00":
        raise _invalid("runtimeConfig.mac", f"{value!r} is the all-zero address")
    return mac


def _invalid(key: str, why: str) -> CniError:
    return CniError(INVALID_CONFIG, f"invalid network configuration key {key!r}", why)
