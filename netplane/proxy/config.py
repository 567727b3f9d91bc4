"""The proxy's settings: defaults, then a config file, then command-line flags.

Precedence, field by field: a flag given on the command line wins over the
config file, which wins over the defaults. The source (where Services come
from) is one choice: a source flag (--manifests, --kubeconfig, --in-cluster)
replaces the file's whole source, so `--manifests DIR` overrides a kubeadm
config's clientConnection.kubeconfig. (kube-proxy itself lets a --config file
win over most flags; netplane's order is the one a person editing a command
line expects, and the README says so.)

The config file is YAML (or JSON). It may be a kube-proxy
KubeProxyConfiguration: the fields netplane understands keep their meaning
(mode, clusterCIDR, nodePortAddresses, healthzBindAddress,
metricsBindAddress, hostnameOverride, clientConnection.kubeconfig,
syncPeriod, minSyncPeriod, logging.format, logging.verbosity, the conntrack
section, and in the active mode's section (iptables, nftables, ipvs)
masqueradeAll, masqueradeBit, syncPeriod, minSyncPeriod).
Each mode's section is also where its own options live (options.py:
`iptables.layout`, `ebpf.cgroupPath`, ...). kube-proxy's fields that
netplane does not act on are accepted and reported as ignored (unless left
at kube-proxy's defaults, as kubeadm writes them), so a kubeadm config
always loads; a field neither knows, at any level (`iptables.masqueradeALL`,
`logging.options.json.bufferSize`), is an error naming its path, so a typo
never passes silently. netplane's own top-level fields: manifests, nodeIPs,
zone, serviceCIDR (comma-separated CIDRs; the nftables mode drops traffic to
their unallocated addresses), fullSyncPeriod, and iptablesLayout (the same
as iptables.layout).
"""
import dataclasses
import re
from dataclasses import dataclass, field

import netaddr

from netplane.kube import manifests
from netplane.proxy import conntrack_settings, modes
from netplane.proxy import options as mode_options

# kube-proxy's top-level fields netplane does not act on
KUBE_PROXY_IGNORED = {"featureGates", "logging", "bindAddress", "bindAddressHardFail", "enableProfiling",
                      "showHiddenMetricsForVersion", "winkernel", "detectLocalMode", "detectLocal", "oomScoreAdj",
                      "configSyncPeriod", "portRange", "windowsRunAsService", "linux"}
# What kube-proxy knows inside the sections netplane does not act on (or acts
# on in part: logging), so that a typo there is caught too: a mapping is a
# section, ANY a value of any shape (featureGates is a map of gate names).
ANY = None
KUBE_PROXY_NESTED = {
    "logging": {"format": ANY, "flushFrequency": ANY, "verbosity": ANY, "vmodule": ANY,
                "options": {"json": {"infoBufferSize": ANY, "splitStream": ANY},
                            "text": {"infoBufferSize": ANY, "splitStream": ANY}}},
    "detectLocal": {"bridgeInterface": ANY, "interfaceNamePrefix": ANY},
    "winkernel": {"networkName": ANY, "sourceVip": ANY, "enableDSR": ANY, "rootHnsEndpointName": ANY,
                  "forwardHealthCheckVip": ANY},
}
LOG_FORMATS = ("text", "json")
# kube-proxy's defaults that kubeadm writes out: nothing to report when left so
# (bindAddress other than "any" would pick the node IP family, which netplane takes from --node-ip)
KUBE_PROXY_DEFAULTS = {"bindAddress": ("0.0.0.0", "::")}
# kube-proxy's sections with fields of their own: every field it knows there
KUBE_PROXY_SECTIONS = {
    "iptables": {"masqueradeAll", "masqueradeBit", "localhostNodePorts", "syncPeriod", "minSyncPeriod"},
    "nftables": {"masqueradeAll", "masqueradeBit", "syncPeriod", "minSyncPeriod"},
    "ipvs": {"syncPeriod", "minSyncPeriod", "scheduler", "excludeCIDRs", "strictARP", "tcpTimeout",
             "tcpFinTimeout", "udpTimeout"},
    "conntrack": {"max", "maxPerCore", "min", "tcpEstablishedTimeout", "tcpCloseWaitTimeout", "tcpBeLiberal",
                  "udpTimeout", "udpStreamTimeout"},      # max: older kube-proxy configs still carry it
    "clientConnection": {"kubeconfig", "acceptContentTypes", "contentType", "qps", "burst"},
}
SHARED_IN_SECTION = {"masqueradeAll", "masqueradeBit", "syncPeriod", "minSyncPeriod"}   # read from the mode's
ACTED_IN_SECTION = {"clientConnection": {"kubeconfig"},                                 # whatever the mode
                    "conntrack": conntrack_settings.KEYS | {"max"}}
KINDS = ("KubeProxyConfiguration", "ProxyConfiguration")
HEALTHZ_PORT, METRICS_PORT = 10256, 10249           # kube-proxy's, for an address given without one


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
    service_cidrs: list[str] = field(default_factory=list)
    masquerade_all: bool = False
    masquerade_bit: int = 14
    mode_options: dict = field(default_factory=dict)     # mode name -> its Options (defaults when absent)
    sync_period: float = 30.0
    min_sync_period: float = 1.0
    full_sync_period: float = 3600.0
    healthz_bind_address: str = f"0.0.0.0:{HEALTHZ_PORT}"
    metrics_bind_address: str = f"127.0.0.1:{METRICS_PORT}"
    logging_format: str = "text"                          # text (key=value) or json
    verbosity: int = 0                                   # kube-proxy's --v: 4 and up is debug
    conntrack: conntrack_settings.ConntrackSettings = field(default_factory=conntrack_settings.ConntrackSettings)
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
    sections = {key: _section(values, key, where) for key in _section_names()}
    if _set(values, "iptablesLayout"):                    # netplane's older spelling of iptables.layout
        sections["iptables"] = {"layout": values["iptablesLayout"], **sections["iptables"]}
    values.pop("iptablesLayout", None)
    _take(values, cfg, where)
    _take_logging(values, cfg, where)
    shared = _take_sections(sections, cfg, where)
    unknown = sorted(set(values) - KUBE_PROXY_IGNORED)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s): {', '.join(unknown)}")
    for key, schema in KUBE_PROXY_NESTED.items():
        _known(values.get(key), schema, key, where)
    cfg.ignored = sorted(k for k, v in values.items() if not _empty(v) and v not in KUBE_PROXY_DEFAULTS.get(k, ())) \
        + _ignored_in_sections(sections, where, shared, _active_section(cfg))
    return cfg


def _known(value, schema, path: str, where: str) -> None:
    """Every field in `value` is one kube-proxy knows at `path`."""
    if schema is ANY or value is None:
        return
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {path} must be a mapping")
    unknown = sorted(set(value) - set(schema))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) in {path}: {', '.join(unknown)}")
    for key, inner in value.items():
        _known(inner, schema[key], f"{path}.{key}", where)


def _empty(value) -> bool:
    """What kubeadm writes for "unset": nulls, empty strings, zeros, false, and mappings of those."""
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    return value in (None, "", 0, False, "0") or (isinstance(value, str) and _zero(value))


def _take_logging(values: dict, cfg: ProxyConfig, where: str) -> None:
    """kube-proxy's logging.format and logging.verbosity; the rest of the
    section (flush frequency, vmodule, buffer sizes) is klog's and ignored."""
    section = values.get("logging")
    if not isinstance(section, dict):
        return
    if _set(section, "format"):
        cfg.logging_format = _typed(section["format"], str, f"{where}: logging.format")
        if cfg.logging_format not in LOG_FORMATS:
            raise ConfigError(f"{where}: logging.format {cfg.logging_format!r}: choose text or json")
    if _set(section, "verbosity"):
        cfg.verbosity = _typed(section["verbosity"], int, f"{where}: logging.verbosity")
        if cfg.verbosity < 0:
            raise ConfigError(f"{where}: logging.verbosity: expected 0 or more, got {cfg.verbosity}")
    rest = {k: v for k, v in section.items() if k not in ("format", "verbosity")}
    values["logging"] = rest


def _section_names() -> list[str]:
    return sorted(set(KUBE_PROXY_SECTIONS) | {modes.get(m).section for m in modes.names()})


def _take_sections(sections: dict[str, dict], cfg: ProxyConfig, where: str) -> str:
    """Each mode's options from its section, the kubeconfig, and the shared
    fields; returns the section the shared fields came from."""
    for name in modes.names():
        mode = modes.get(name)
        try:
            cfg.mode_options[name] = mode_options.from_section(mode.options, sections.get(mode.section, {}),
                                                               f"{where}: {mode.section}")
        except mode_options.OptionError as err:
            raise ConfigError(str(err)) from None
    cfg.conntrack = conntrack_settings.from_section(sections.get("conntrack", {}), f"{where}: conntrack")
    connection = sections.get("clientConnection", {})
    if _set(connection, "kubeconfig"):
        cfg.kubeconfig = _typed(connection["kubeconfig"], str, f"{where}: clientConnection.kubeconfig")
    return _take_shared(sections, cfg, where)


def _active_section(cfg: ProxyConfig) -> str:
    return modes.get(cfg.mode).section if cfg.mode in modes.names() else ""


def _take_shared(sections: dict[str, dict], cfg: ProxyConfig, where: str) -> str:
    """masqueradeAll, masqueradeBit and the periods, from the active mode's
    section as kube-proxy reads them; a mode kube-proxy has no section for
    (ebpf) reads them from iptables', which kubeadm always writes."""
    active = modes.get(cfg.mode).section if cfg.mode in modes.names() else "iptables"
    shared = active if active in KUBE_PROXY_SECTIONS else "iptables"
    section = sections.get(shared) or {}
    if _set(section, "masqueradeAll"):
        cfg.masquerade_all = _typed(section["masqueradeAll"], bool, f"{where}: {shared}.masqueradeAll")
    if _set(section, "masqueradeBit"):
        cfg.masquerade_bit = _typed(section["masqueradeBit"], int, f"{where}: {shared}.masqueradeBit")
    # newer kube-proxy configs carry the periods at the top level, older ones in the mode's section
    for key, attr in (("syncPeriod", "sync_period"), ("minSyncPeriod", "min_sync_period")):
        if _set(section, key) and not _zero(section[key]):
            setattr(cfg, attr, duration(section[key], f"{where}: {shared}.{key}"))
    return shared


def _ignored_in_sections(sections: dict[str, dict], where: str, shared: str, active: str) -> list[str]:
    """kube-proxy's fields in the sections that netplane does not act on in
    the `active` mode's section (the file's mode); a field neither
    kube-proxy nor a mode knows is an error."""
    ignored = []
    for key, section in sorted(sections.items()):
        known = KUBE_PROXY_SECTIONS.get(key, set())
        own = {o for m in modes.names() if modes.get(m).section == key for o in mode_options.keys(modes.get(m).options)}
        unknown = sorted(set(section) - known - own)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) in {key}: {', '.join(unknown)}")
        # another mode's own options (iptables.localhostNodePorts in the nftables mode) do nothing here
        acted = (own if key == active else set()) | (SHARED_IN_SECTION if key == shared else set()) \
            | ACTED_IN_SECTION.get(key, set())
        ignored += [f"{key}.{k}" for k in sorted(set(section) - acted) if not _empty(section[k])]
    return ignored


def _take(values: dict, cfg: ProxyConfig, where: str) -> None:
    """Move the fields we understand from `values` into `cfg`. Empty strings,
    nulls and zero durations mean "unset" (kubeadm writes them), so the
    default stays, as kube-proxy's own defaulting does."""
    simple = {"mode": "mode", "manifests": "manifests", "hostnameOverride": "node_name", "zone": "zone",
              "healthzBindAddress": "healthz_bind_address", "metricsBindAddress": "metrics_bind_address"}
    for key, attr in simple.items():
        if _set(values, key):
            setattr(cfg, attr, _typed(values[key], str, f"{where}: {key}"))
    for key, attr in (("nodeIPs", "node_ips"), ("nodePortAddresses", "nodeport_addresses")):
        if _set(values, key):
            setattr(cfg, attr, _strings(values[key], f"{where}: {key}"))
    for key, attr in (("clusterCIDR", "cluster_cidrs"), ("serviceCIDR", "service_cidrs")):
        if _set(values, key):
            text = _typed(values[key], str, f"{where}: {key}")
            setattr(cfg, attr, [c.strip() for c in text.split(",") if c.strip()])
    for key, attr in (("syncPeriod", "sync_period"), ("minSyncPeriod", "min_sync_period"),
                      ("fullSyncPeriod", "full_sync_period")):
        if _set(values, key) and not _zero(values[key]):
            setattr(cfg, attr, duration(values[key], f"{where}: {key}"))
    for key in list(simple) + ["nodeIPs", "nodePortAddresses", "clusterCIDR", "serviceCIDR", "syncPeriod", "minSyncPeriod",
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


def options_of(cfg: ProxyConfig, mode_name: str):
    """The active mode's Options: from the config file, or the defaults."""
    return cfg.mode_options.get(mode_name) or modes.get(mode_name).options()


def _typed(value, kind, what: str):
    if not mode_options.of_type(value, kind):
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


SOURCE_FIELDS = ("manifests", "kubeconfig", "in_cluster")


def merge(base: ProxyConfig, overrides: dict) -> ProxyConfig:
    """Flags given on the command line (not None) win over the file. The
    source is one choice: a source flag replaces the file's source whole
    (`--manifests DIR` over a kubeadm config's clientConnection.kubeconfig)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if any(given.get(k) for k in SOURCE_FIELDS):
        given = {**{k: ProxyConfig.__dataclass_fields__[k].default for k in SOURCE_FIELDS}, **given}
    return dataclasses.replace(base, **given)


@dataclass(frozen=True)
class Checked:
    """The config, validated and parsed into what the proxy uses."""
    node_ips: tuple[netaddr.IPAddress, ...]
    cluster_cidrs: tuple[netaddr.IPNetwork, ...]
    nodeport_addresses: tuple[netaddr.IPNetwork, ...]
    service_cidrs: tuple[netaddr.IPNetwork, ...]
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
    if not 0 <= cfg.masquerade_bit <= 31:
        raise ConfigError(f"masquerade bit {cfg.masquerade_bit}: must be 0..31")
    if cfg.min_sync_period > cfg.sync_period:
        raise ConfigError("the minimum sync period is longer than the sync period")
    services = tuple(_network(c, "service CIDR") for c in cfg.service_cidrs)
    return Checked(node_ips, cidrs, _nodeport_networks(cfg.nodeport_addresses, node_ips), services,
                   bind_address(cfg.healthz_bind_address, "healthz bind address", HEALTHZ_PORT),
                   bind_address(cfg.metrics_bind_address, "metrics bind address", METRICS_PORT))


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


def bind_address(text: str, what: str, default_port: int | None = None) -> tuple[str, int] | None:
    """"host:port" or "[v6]:port"; "" turns the server off. With a
    `default_port`, a bare address takes it, as kube-proxy's
    healthzBindAddress: 0.0.0.0 means 0.0.0.0:10256."""
    if text == "":
        return None
    if default_port is not None and _is_address(text.strip("[]")):
        return text.strip("[]"), default_port
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} {text!r}: expected host:port")
    _address(host, what)
    return host, int(port)


def _is_address(text: str) -> bool:
    try:
        netaddr.IPAddress(text)
        return True
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return False
