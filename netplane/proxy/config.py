"""The proxy's settings: defaults, then a config file, then command-line flags.

The config file is YAML (or JSON). It may be a kube-proxy
KubeProxyConfiguration: the fields netplane understands keep their meaning
(mode, clusterCIDR, nodePortAddresses, healthzBindAddress,
metricsBindAddress, hostnameOverride, clientConnection.kubeconfig,
syncPeriod, minSyncPeriod, and iptables.masqueradeAll/masqueradeBit/
syncPeriod/minSyncPeriod), other
kube-proxy fields are reported as ignored, and anything else is an error,
so a typo never passes silently. netplane's own fields: manifests,
nodeIPs, zone, fullSyncPeriod, iptablesLayout (compact or kube-proxy).
"""
import dataclasses
import re
from dataclasses import dataclass, field

import netaddr

from netplane.kube import manifests
from netplane.proxy.iptables.rules import LAYOUTS as IPTABLES_LAYOUTS

KUBE_PROXY_IGNORED = {"featureGates", "logging", "bindAddress", "bindAddressHardFail", "enableProfiling",
                      "showHiddenMetricsForVersion", "ipvs", "nftables", "winkernel", "detectLocalMode",
                      "detectLocal", "oomScoreAdj", "conntrack", "configSyncPeriod", "portRange",
                      "windowsRunAsService", "linux"}
KINDS = ("KubeProxyConfiguration", "ProxyConfiguration")


class ConfigError(ValueError):
    pass


@dataclass
class ProxyConfig:
    mode: str = "iptables"
    manifests: str | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False
    node_name: str = ""
    node_ips: list[str] = field(default_factory=list)
    zone: str = ""
    cluster_cidrs: list[str] = field(default_factory=list)
    nodeport_addresses: list[str] = field(default_factory=list)
    masquerade_all: bool = False
    masquerade_bit: int = 14
    iptables_layout: str = "compact"     # see netplane/proxy/iptables/rules.py
    sync_period: float = 30.0
    min_sync_period: float = 1.0
    full_sync_period: float = 3600.0
    healthz_bind_address: str = "0.0.0.0:10256"
    metrics_bind_address: str = "127.0.0.1:10249"
    ignored: list[str] = field(default_factory=list)     # kube-proxy fields in the file we do not use


def load_file(path: str) -> ProxyConfig:
    try:
        with open(path, "rb") as f:
            docs = manifests.documents_of(f.read(), path)
    except OSError as err:
        raise ConfigError(f"{path}: {err.strerror}") from None
    except manifests.ManifestError as err:
        raise ConfigError(str(err)) from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise ConfigError(f"{path}: expected one configuration mapping")
    return from_dict(docs[0], path)


def from_dict(doc: dict, where: str = "config") -> ProxyConfig:
    kind = doc.get("kind", "ProxyConfiguration")
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    cfg, values = ProxyConfig(), dict(doc)
    values.pop("apiVersion", None), values.pop("kind", None)
    _take(values, cfg, where)
    unknown = sorted(set(values) - KUBE_PROXY_IGNORED)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s): {', '.join(unknown)}")
    cfg.ignored = sorted(values)
    return cfg


def _take(values: dict, cfg: ProxyConfig, where: str) -> None:
    """Move the fields we understand from `values` into `cfg`. Empty strings,
    nulls and zero durations mean "unset" (kubeadm writes them), so the
    default stays, as kube-proxy's own defaulting does."""
    simple = {"mode": "mode", "manifests": "manifests", "hostnameOverride": "node_name", "zone": "zone",
              "healthzBindAddress": "healthz_bind_address", "metricsBindAddress": "metrics_bind_address",
              "iptablesLayout": "iptables_layout"}
    for key, attr in simple.items():
        if _set(values, key):
            setattr(cfg, attr, _typed(values[key], str, f"{where}: {key}"))
    for key, attr in (("nodeIPs", "node_ips"), ("nodePortAddresses", "nodeport_addresses")):
        if _set(values, key):
            setattr(cfg, attr, _strings(values[key], f"{where}: {key}"))
    if _set(values, "clusterCIDR"):
        text = _typed(values["clusterCIDR"], str, f"{where}: clusterCIDR")
        cfg.cluster_cidrs = [c.strip() for c in text.split(",") if c.strip()]
    connection = _section(values, "clientConnection", where)
    if _set(connection, "kubeconfig"):
        cfg.kubeconfig = _typed(connection["kubeconfig"], str, f"{where}: clientConnection.kubeconfig")
    ipt = _section(values, "iptables", where)
    if _set(ipt, "masqueradeAll"):
        cfg.masquerade_all = _typed(ipt["masqueradeAll"], bool, f"{where}: iptables.masqueradeAll")
    if _set(ipt, "masqueradeBit"):
        cfg.masquerade_bit = _typed(ipt["masqueradeBit"], int, f"{where}: iptables.masqueradeBit")
    # newer kube-proxy configs carry the periods at the top level, older ones under iptables
    for section, prefix in ((values, ""), (ipt, "iptables.")):
        for key, attr in (("syncPeriod", "sync_period"), ("minSyncPeriod", "min_sync_period"),
                          ("fullSyncPeriod", "full_sync_period")):
            if _set(section, key) and not _zero(section[key]):
                setattr(cfg, attr, duration(section[key], f"{where}: {prefix}{key}"))
    for key in list(simple) + ["nodeIPs", "nodePortAddresses", "clusterCIDR", "syncPeriod", "minSyncPeriod",
                               "fullSyncPeriod"]:
        values.pop(key, None)


def _set(section: dict, key: str) -> bool:
    return section.get(key) not in (None, "")


def _zero(value) -> bool:
    return value == 0 or (isinstance(value, str) and re.fullmatch(r"0+(\.0+)?(h|m|s|ms)?", value) is not None)


def _section(values: dict, key: str, where: str) -> dict:
    section = values.pop(key, None) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: {key} must be a mapping")
    return section


def _typed(value, kind, what: str):
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{what}: expected {kind.__name__}, got {value!r}")
    return value


def _strings(value, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what}: expected a list of strings")
    return list(value)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def duration(value, what: str) -> float:
    """Seconds from a number or a Go duration such as "30s", "1m30s", "500ms"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"(\d+(\.\d+)?(h|ms|m|s))+", value):
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        raise ConfigError(f"{what}: {value!r} is not a duration (such as 30s, 1m, 500ms)")
    if seconds <= 0:
        raise ConfigError(f"{what}: must be more than zero")
    return seconds


def merge(base: ProxyConfig, overrides: dict) -> ProxyConfig:
    """Flags given on the command line (not None) win over the file."""
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Checked:
    """The config, validated and parsed into what the proxy uses."""
    node_ips: tuple[netaddr.IPAddress, ...]
    cluster_cidrs: tuple[netaddr.IPNetwork, ...]
    nodeport_addresses: tuple[netaddr.IPNetwork, ...]
    healthz: tuple[str, int] | None
    metrics: tuple[str, int] | None


def check(cfg: ProxyConfig, modes: list[str]) -> Checked:
    if cfg.mode not in modes:
        raise ConfigError(f"mode {cfg.mode!r}: available modes are {', '.join(modes)}")
    node_ips = tuple(_address(ip, "node IP") for ip in cfg.node_ips)
    if len({ip.version for ip in node_ips}) != len(node_ips):
        raise ConfigError("node IPs: give at most one per family")
    cidrs = tuple(_network(c, "cluster CIDR") for c in cfg.cluster_cidrs)
    if len({c.version for c in cidrs}) != len(cidrs):
        raise ConfigError("cluster CIDR: give at most one per family (IPv4,IPv6)")
    if cfg.iptables_layout not in IPTABLES_LAYOUTS:
        raise ConfigError(f"iptables layout {cfg.iptables_layout!r}: choose {' or '.join(IPTABLES_LAYOUTS)}")
    if not 0 <= cfg.masquerade_bit <= 31:
        raise ConfigError(f"masquerade bit {cfg.masquerade_bit}: must be 0..31")
    if cfg.min_sync_period > cfg.sync_period:
        raise ConfigError("the minimum sync period is longer than the sync period")
    return Checked(node_ips, cidrs, _nodeport_networks(cfg.nodeport_addresses, node_ips),
                   bind_address(cfg.healthz_bind_address, "healthz bind address"),
                   bind_address(cfg.metrics_bind_address, "metrics bind address"))


def _nodeport_networks(values: list[str], node_ips) -> tuple[netaddr.IPNetwork, ...]:
    out = []
    for v in values:
        if v == "primary":                 # kube-proxy's word for "the node IPs"
            if not node_ips:
                raise ConfigError("node port addresses: 'primary' needs the node IPs")
            out += [netaddr.IPNetwork(f"{ip}/{32 if ip.version == 4 else 128}") for ip in node_ips]
        else:
            out.append(_network(v, "node port address"))
    return tuple(out)


def _address(text: str, what: str) -> netaddr.IPAddress:
    try:
        return netaddr.IPAddress(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ConfigError(f"{what} {text!r} is not an IP address") from None


def _network(text: str, what: str) -> netaddr.IPNetwork:
    try:
        net = netaddr.IPNetwork(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ConfigError(f"{what} {text!r} is not a CIDR") from None
    if "/" not in text or net.ip != net.network:
        raise ConfigError(f"{what} {text!r}: expected a network such as 10.0.0.0/8")
    return net


def bind_address(text: str, what: str) -> tuple[str, int] | None:
    """"host:port" or "[v6]:port"; "" turns the server off."""
    if text == "":
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} {text!r}: expected host:port")
    _address(host, what)
    return host, int(port)
