"""kube-proxy's `conntrack:` settings: the table's size and its timeouts,
written to net.netfilter's sysctls at start, as kube-proxy writes them.

From the config file's `conntrack:` section (maxPerCore, min,
tcpEstablishedTimeout, tcpCloseWaitTimeout, tcpBeLiberal, udpTimeout,
udpStreamTimeout; Go durations) or kube-proxy's flags (--conntrack-*).
kube-proxy's defaults; a zero leaves the kernel's value alone.

What is written (kube-proxy's cmd/kube-proxy/app and pkg/proxy/conntrack):
- nf_conntrack_max = maxPerCore x CPUs (the machine's, not this process'
  affinity), at least `min`. Unlike kube-proxy, which writes it exactly,
  only when the kernel's is lower: a host tuned higher keeps its value.
  The hash table follows: /sys/module/nf_conntrack/parameters/hashsize is
  raised to max/4, as kube-proxy raises it.
- each timeout, and tcpBeLiberal, when set and different from the kernel's.

Where: the network namespace the proxy runs in. The timeouts are per
namespace, and a node namespace (the lab) can set its own. nf_conntrack_max
and the hash size are the host's: the kernel makes the first read-only and
refuses the second outside the initial namespace. There, a max that is
already high enough is fine, and a lower one is a warning that names the
host's sysctl (kube-proxy, with hostNetwork, sets it from the host's
namespace): the proxy still runs. A timeout that cannot be written stops
the start, in one line, as it stops kube-proxy's.
"""
import argparse
import dataclasses
import errno
import logging
import os
import re
from dataclasses import dataclass

from netplane.errors import OperatorError

log = logging.getLogger("netplane.proxy")

HASHSIZE = "module/nf_conntrack/parameters/hashsize"
# the kernel says "not here" with these: read-only sysctl outside the initial
# namespace (EACCES), hashsize outside it (EOPNOTSUPP), a read-only /sys or /proc
_NOT_OURS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EOPNOTSUPP}


class ConntrackError(OperatorError):
    pass


def _setting(default, key: str, flag: str, kind: str, sysctl: str = ""):
    return dataclasses.field(default=default, metadata={"key": key, "flag": flag, "kind": kind, "sysctl": sysctl})


@dataclass(frozen=True)
class ConntrackSettings:
    """kube-proxy's KubeProxyConntrackConfiguration; durations in whole seconds, 0 = leave alone."""
    max_per_core: int = _setting(32768, "maxPerCore", "--conntrack-max-per-core", "count")
    min: int = _setting(131072, "min", "--conntrack-min", "count")
    tcp_established_timeout: int = _setting(86400, "tcpEstablishedTimeout", "--conntrack-tcp-timeout-established",
                                            "duration", "nf_conntrack_tcp_timeout_established")
    tcp_close_wait_timeout: int = _setting(3600, "tcpCloseWaitTimeout", "--conntrack-tcp-timeout-close-wait",
                                           "duration", "nf_conntrack_tcp_timeout_close_wait")
    tcp_be_liberal: bool = _setting(False, "tcpBeLiberal", "--conntrack-tcp-be-liberal", "bool",
                                    "nf_conntrack_tcp_be_liberal")
    udp_timeout: int = _setting(0, "udpTimeout", "--conntrack-udp-timeout", "duration", "nf_conntrack_udp_timeout")
    udp_stream_timeout: int = _setting(0, "udpStreamTimeout", "--conntrack-udp-timeout-stream", "duration",
                                       "nf_conntrack_udp_timeout_stream")


FIELDS = dataclasses.fields(ConntrackSettings)
KEYS = frozenset(f.metadata["key"] for f in FIELDS)


# -- reading the settings ---------------------------------------------------------------

def from_section(section: dict, where: str) -> ConntrackSettings:
    """The settings of a config file's `conntrack:` section; `where` names it
    in errors ("kube-proxy.yaml: conntrack"). Unset (null, "") keeps the default."""
    if not isinstance(section, dict):
        raise _config_error(f"{where}: expected a mapping")
    unknown = sorted(set(section) - KEYS - {"max"})     # `max: null`: old kube-proxy configs still carry it
    if unknown:
        raise _config_error(f"{where}: unknown field(s): {', '.join(unknown)}")
    given = {f.name: _value(f, section[f.metadata["key"]], f"{where}.{f.metadata['key']}")
             for f in FIELDS if section.get(f.metadata["key"]) not in (None, "")}
    return ConntrackSettings(**given)


def add_flags(parser) -> None:
    """kube-proxy's --conntrack-* flags; values are checked by with_flags()."""
    from netplane.proxy.options import go_bool

    for f in FIELDS:
        flag = f.metadata["flag"]
        if f.metadata["kind"] == "bool":        # as options.py's bool flags: bare, =true|false, or --no-
            parser.add_argument(flag, dest=_dest(f), nargs="?", const=True, default=None, type=go_bool,
                                metavar="BOOL", help=f"conntrack: {f.metadata['key']} (or {flag}=true|false, as "
                                                     f"kube-proxy takes it; default false)")
            parser.add_argument("--no-" + flag.lstrip("-"), dest=_dest(f), action="store_false", default=None,
                                help=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, dest=_dest(f), default=None,
                                help=f"conntrack: {f.metadata['key']} (default {_shown(f)}; 0 leaves it alone)")


def with_flags(settings: ConntrackSettings, args) -> ConntrackSettings:
    """`settings` with the --conntrack-* flags given (they win over the file)."""
    given = {f.name: _value(f, _parsed_flag(f, getattr(args, _dest(f))), f.metadata["flag"])
             for f in FIELDS if getattr(args, _dest(f), None) is not None}
    return dataclasses.replace(settings, **given)


def _dest(f) -> str:
    return "conntrack_" + f.name


def _shown(f) -> str:
    return f"{f.default}s" if f.metadata["kind"] == "duration" else str(f.default)


def _parsed_flag(f, text):
    """A flag's text as the config file would hold the value."""
    if f.metadata["kind"] == "count":
        return int(text) if re.fullmatch(r"-?\d+", text.strip()) else text
    return text                         # a bool flag's value is already one (go_bool)


def _value(f, value, where: str):
    kind = f.metadata["kind"]
    if kind == "bool":
        if not isinstance(value, bool):
            raise _config_error(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "count":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _config_error(f"{where}: expected a whole number, 0 or more, got {value!r}")
        return value
    return _seconds(value, where)


def _seconds(value, where: str) -> int:
    """Whole seconds of a Go duration ("24h0m0s", "1h"); zero = leave alone."""
    from netplane.proxy.config import duration    # here, not at the top: config.py imports this module

    if value == 0 or (isinstance(value, str) and re.fullmatch(r"(0+(\.0+)?(h|m|s|ms)?)+", value)):
        return 0
    seconds = duration(value, where)
    if seconds < 1:
        raise _config_error(f"{where}: {value!r} is less than a second (the kernel counts whole seconds)")
    return int(seconds)


def _config_error(message: str) -> Exception:
    from netplane.proxy.config import ConfigError

    return ConfigError(message)


# -- writing them -------------------------------------------------------------------------

def conntrack_max(settings: ConntrackSettings, ncpu: int) -> int:
    """The table size kube-proxy asks for: maxPerCore x CPUs, at least min; 0 = none."""
    if settings.max_per_core <= 0:
        return 0
    return max(settings.max_per_core * ncpu, settings.min)


def apply(settings: ConntrackSettings, proc_root: str = "/proc/sys", ncpu: int | None = None,
          sys_root: str = "/sys") -> list[str]:
    """Write the settings in the current network namespace; returns what
    changed ("net.netfilter.nf_conntrack_max=262144 (was 131072)"), each one
    also logged. Raises ConntrackError, one line, when a timeout cannot be set."""
    netfilter = os.path.join(proc_root, "net", "netfilter")
    if not os.path.exists(os.path.join(netfilter, "nf_conntrack_max")):
        log.warning("conntrack settings not applied: the nf_conntrack module is not loaded", extra={"proc": netfilter})
        return []
    changed = _apply_max(settings, netfilter, sys_root, ncpu or os.cpu_count() or 1)
    for f in FIELDS:
        wanted = int(getattr(settings, f.name))
        if f.metadata["sysctl"] and wanted:
            changed += _set_exactly(netfilter, f.metadata["sysctl"], wanted)
    return changed


def _apply_max(settings: ConntrackSettings, netfilter: str, sys_root: str, ncpu: int) -> list[str]:
    wanted = conntrack_max(settings, ncpu)
    if not wanted:
        return []
    changed = _raise_to(os.path.join(netfilter, "nf_conntrack_max"), "net.netfilter.nf_conntrack_max", wanted)
    # the hash table holds max/4 buckets in kube-proxy's sizing: raise it with the max
    hashsize = os.path.join(sys_root, HASHSIZE)
    if os.path.exists(hashsize):
        changed += _raise_to(hashsize, "nf_conntrack hashsize", wanted // 4)
    return changed


def _raise_to(path: str, name: str, wanted: int) -> list[str]:
    """Raise a host-wide value to `wanted`; where only the host may (a node
    namespace), a value still too low is a warning, not a failure."""
    current = _read(path)
    if current >= wanted:
        return []
    try:
        _write(path, wanted)
    except OSError as err:
        if err.errno not in _NOT_OURS:
            raise ConntrackError(f"cannot set {name} to {wanted}: {err.strerror}") from None
        log.warning("conntrack: a host-wide value is below what conntrack.maxPerCore and conntrack.min ask for, and "
                    "only the host can raise it (kube-proxy sets it from the host's network namespace): set it on "
                    "the host, or conntrack.maxPerCore: 0 to leave it",
                    extra={"sysctl": name, "value": current, "wanted": wanted, "error": err.strerror})
        return []
    return [_changed(name, wanted, current)]


def _set_exactly(netfilter: str, sysctl: str, wanted: int) -> list[str]:
    path, name = os.path.join(netfilter, sysctl), f"net.netfilter.{sysctl}"
    if not os.path.exists(path):        # a protocol module not loaded: nothing to tune yet
        log.warning("conntrack: no such sysctl (its protocol module is not loaded), not set", extra={"sysctl": name})
        return []
    current = _read(path)
    if current == wanted:
        return []
    try:
        _write(path, wanted)
    except OSError as err:
        raise ConntrackError(f"cannot set {name} to {wanted}: {err.strerror} (set conntrack settings to 0 "
                             f"to leave them alone)") from None
    return [_changed(name, wanted, current)]


def _changed(name: str, value: int, was: int) -> str:
    log.info("set %s", name, extra={"sysctl": name, "value": value, "was": was})
    return f"{name}={value} (was {was})"


def _read(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError) as err:
        raise ConntrackError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None


def _write(path: str, value: int) -> None:
    # unbuffered: the kernel's refusal comes from write(), and must not be deferred to a close
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, f"{value}\n".encode())
    finally:
        os.close(fd)
