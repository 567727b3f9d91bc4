"""The network configuration a runtime passes on stdin, parsed and validated.

Every key is checked before the plugin acts, and every complaint names the
key, so a typo in a conflist is one clear error rather than a half-wired pod.
"""
import codecs
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from netplane.cni import capabilities, versions
from netplane.cni.errors import (DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG,
                                 UNSUPPORTED_FIELD, CniError)
from netplane.cni.invocation import MAX_CONTAINER_ID, CONTAINER_ID, ifname_problem, shown
from netplane.cni.ipam.pool import IPNetwork

PLUGIN_TYPE = "netplane"
DEFAULT_BRIDGE = "np0"
DEFAULT_DATA_DIR = "/var/lib/cni/netplane"
DEFAULT_STATE_FILE = "/run/netplane/node.json"
NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
# The network name is a directory under dataDir: capped like a container ID
# (invocation.MAX_CONTAINER_ID), well below NAME_MAX.
MAX_NETWORK_NAME = 200
# dataDir and stateFile: the IPAM store adds <name>/attachments/<cid>:<ifname>
# (~430 bytes at most) under dataDir, which must stay below PATH_MAX (4096).
MAX_PATH = 1024
NAME_MAX = 255
# What stdin may be. Real configs are kilobytes and a few levels deep; the
# bounds make "too big" and "too deep" one clear error on both paths, where
# they would otherwise hit the agent's request limit or Python's recursion
# limit (which depends on how deep the calling thread already is).
MAX_STDIN = 1 << 20
MAX_DEPTH = 100
NOT_UTF8 = "network configuration is not UTF-8 JSON"
GC_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


@dataclass(frozen=True)
class Attachment:
    """One pod interface: the key every reservation is stored under."""
    container_id: str
    ifname: str


@dataclass(frozen=True)
class NetConf:
    cni_version: str
    name: str
    bridge: str = DEFAULT_BRIDGE
    subnets: tuple[IPNetwork, ...] = ()            # empty: read the node state file
    mtu: int | None = None                         # None: state file, else 1500
    data_dir: str = DEFAULT_DATA_DIR
    state_file: str = DEFAULT_STATE_FILE
    prev_result: dict | None = None
    valid_attachments: frozenset[Attachment] | None = None  # GC only
    runtime_config: capabilities.RuntimeConfig = capabilities.RuntimeConfig()

    def __post_init__(self) -> None:
        # Requested addresses must fit the subnets: checked here when the
        # config carries them, so a bad request is refused with the rest of
        # the config; the state file's are known only at ADD (allocator).
        capabilities.check_fits(self.runtime_config, self.subnets)


def decode(stdin: bytes) -> dict:
    """stdin as a JSON object; any problem is code 6 (DECODE_FAILURE).

    Only standard UTF-8 JSON (RFC 8259) is taken, as the reference Go
    plugins do: no UTF-16/32, no byte order mark, no NaN or Infinity, no
    unpaired surrogate escapes, nothing larger than MAX_STDIN or nested
    deeper than MAX_DEPTH. Nothing here raises anything but CniError.
    """
    if len(stdin) > MAX_STDIN:
        raise CniError(DECODE_FAILURE, "network configuration is too large", f"at most {MAX_STDIN} bytes")
    if not stdin.strip():
        raise CniError(DECODE_FAILURE, "no network configuration on stdin")
    text = _utf8_text(stdin)
    try:
        raw = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:
        raise CniError(DECODE_FAILURE, "network configuration is not valid JSON", str(exc)) from None
    # Before the type check: a deep array must be "too deep" however deep
    # the caller's stack is, i.e. also where json.loads itself gave up.
    _check_tree(raw)
    if not isinstance(raw, dict):
        raise CniError(DECODE_FAILURE, "network configuration must be a JSON object")
    return raw


def _utf8_text(stdin: bytes) -> str:
    # json.loads(bytes) would guess UTF-16/32 from the NUL bytes and skip a
    # BOM; decoding strictly first refuses both. UTF-16 of ASCII text is
    # valid UTF-8, but JSON text never holds a raw NUL, so a NUL gives it away.
    if stdin.startswith(codecs.BOM_UTF8) or b"\0" in stdin:
        raise CniError(DECODE_FAILURE, NOT_UTF8, "a byte order mark or NUL bytes (UTF-16 or UTF-32?)")
    try:
        return stdin.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CniError(DECODE_FAILURE, NOT_UTF8, f"invalid UTF-8 at byte {exc.start}") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _too_deep() -> CniError:
    return CniError(DECODE_FAILURE, "network configuration is nested too deeply",
                    f"at most {MAX_DEPTH} levels of objects and arrays")


def _check_tree(raw: Any) -> None:
    """Depth and string checks, iteratively: the tree may be deep."""
    stack: list[tuple[Any, int]] = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)) and depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            stack.extend((k, depth) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str) and not value.isascii():
            _check_utf8(value)


def _check_utf8(text: str) -> None:
    # "\ud800" is valid JSON syntax but no Unicode text: it cannot become a
    # file or interface name, nor be printed back.
    try:
        text.encode()
    except UnicodeEncodeError:
        raise CniError(DECODE_FAILURE, NOT_UTF8, "a string holds an unpaired surrogate escape") from None


def cni_version(raw: dict) -> str:
    """The config's cniVersion, if we speak it.

    As in libcni, a config without one is a 0.1.0 config, which we do not
    speak; a version that is not a string cannot be decoded at all.
    """
    version = raw.get("cniVersion") or "0.1.0"
    if not isinstance(version, str):
        raise CniError(DECODE_FAILURE, "cannot decode 'cniVersion'", f"expected a string, got {version!r}")
    if version not in versions.SUPPORTED:
        raise CniError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version!r}, plugin supports " + ", ".join(versions.SUPPORTED))
    return version


def parse(raw: dict) -> NetConf:
    """Validate a decoded network configuration (cniVersion already checked)."""
    if raw.get("type") != PLUGIN_TYPE:
        raise _invalid("type", f"must be {PLUGIN_TYPE!r}, got {raw.get('type')!r}")
    if "ipam" in raw:
        raise CniError(UNSUPPORTED_FIELD, f"unsupported field 'ipam': {json.dumps(raw['ipam'])}",
                       "netplane allocates pod addresses itself from 'subnet'")
    return NetConf(
        cni_version=cni_version(raw),
        name=_network_name(raw.get("name")),
        bridge=_bridge(raw.get("bridge", DEFAULT_BRIDGE)),
        subnets=parse_subnets(raw["subnet"], "subnet") if "subnet" in raw else (),
        mtu=parse_mtu(raw["mtu"], "mtu") if "mtu" in raw else None,
        data_dir=_absolute_path(raw.get("dataDir", DEFAULT_DATA_DIR), "dataDir"),
        state_file=_absolute_path(raw.get("stateFile", DEFAULT_STATE_FILE), "stateFile"),
        prev_result=_prev_result(raw.get("prevResult")),
        valid_attachments=_valid_attachments(raw),
        runtime_config=capabilities.parse(raw.get("runtimeConfig")),
    )


def _invalid(key: str, why: str) -> CniError:
    return CniError(INVALID_CONFIG, f"invalid network configuration key {key!r}", why)


def _network_name(value: Any) -> str:
    if isinstance(value, str) and len(value) > MAX_NETWORK_NAME:  # ASCII only: characters are bytes
        raise _invalid("name", f"is {len(value)} characters, at most {MAX_NETWORK_NAME}")
    if not isinstance(value, str) or not NETWORK_NAME.match(value):
        raise _invalid("name", "must start with a letter or digit and hold only letters, digits, '_', '.', '-'")
    return value


def _bridge(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("bridge", "must be a string")
    problem = ifname_problem(value)
    if problem:
        raise _invalid("bridge", f"{shown(value)} {problem}")
    return value


def parse_subnets(value: Any, key: str) -> tuple[IPNetwork, ...]:
    """One CIDR, or a list with one IPv4 and at most one IPv6 CIDR (v4 first)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise _invalid(key, "must be a CIDR string or a list of CIDR strings")
    nets = [_subnet(item, key) for item in items]
    by_family = {4: [n for n in nets if n.version == 4], 6: [n for n in nets if n.version == 6]}
    if len(by_family[4]) != 1:
        raise _invalid(key, f"needs exactly one IPv4 subnet, got {len(by_family[4])}")
    if len(by_family[6]) > 1:
        raise _invalid(key, f"allows at most one IPv6 subnet, got {len(by_family[6])}")
    return tuple(by_family[4] + by_family[6])


def _subnet(text: str, key: str) -> IPNetwork:
    if "/" not in text:
        raise _invalid(key, f"{shown(text)} has no prefix length")
    try:
        given = strict_cidr(text)
    except ValueError:
        raise _invalid(key, f"{shown(text)} is not a valid CIDR") from None
    net = given.network
    if given.ip != net.network_address:
        raise _invalid(key, f"{text!r} has host bits set; did you mean {net}?")
    # The gateway takes the first address, and a pod needs at least one more.
    longest = 30 if net.version == 4 else 126
    if net.prefixlen > longest:
        raise _invalid(key, f"{text!r} is too small for a gateway and a pod (at most /{longest})")
    return net


_PREFIX_LENGTH = re.compile(r"(0|[1-9][0-9]{0,2})\Z")


def strict_cidr(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """`text` if it is exactly "address/length", as Go's net.ParseCIDR takes
    it (host bits allowed); ValueError otherwise.

    netaddr is lenient (a trailing newline, a netmask after the '/'), and a
    value a human reads back differently from how we used it is a trap;
    the stdlib parses addresses strictly, and the prefix length is checked
    here to be plain decimal.
    """
    address, slash, length = text.partition("/")
    if not slash or not _PREFIX_LENGTH.match(length) or "%" in address:
        raise ValueError(f"{text!r} is not address/prefix-length")
    return ipaddress.ip_interface(text)


def parse_mtu(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 576 <= value <= 65535:
        raise _invalid(key, f"must be an integer from 576 to 65535, got {value!r}")
    return value


def _absolute_path(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise _invalid(key, f"must be an absolute path, got {shown(value)}")
    # Too long a path fails deep in the IPAM store as ENAMETOOLONG; say so here.
    if len(value.encode(errors="surrogatepass")) > MAX_PATH:
        raise _invalid(key, f"is longer than {MAX_PATH} bytes")
    if any(len(part.encode(errors="surrogatepass")) > NAME_MAX for part in value.split("/")):
        raise _invalid(key, f"has a path component longer than {NAME_MAX} bytes")
    return os.path.normpath(value)


def _prev_result(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("prevResult", "must be an object")
    return value


def _valid_attachments(raw: dict) -> frozenset[Attachment] | None:
    present = [k for k in GC_KEYS if k in raw]
    if not present:
        return None
    out = set()
    for key in present:
        entries = raw[key] if raw[key] is not None else []  # libcni sends a nil list as null
        if not isinstance(entries, list):
            raise _invalid(key, "must be a list of {containerID, ifname} objects")
        out.update(filter(None, (_attachment(entry, key) for entry in entries)))
    return frozenset(out)


def _attachment(entry: Any, key: str) -> Attachment | None:
    if not isinstance(entry, dict):
        raise _invalid(key, f"entry {entry!r} is not an object")
    cid, ifname = entry.get("containerID"), entry.get("ifname")
    if not isinstance(cid, str) or not isinstance(ifname, str):
        raise _invalid(key, f"entry {entry!r} needs string 'containerID' and 'ifname'")
    # An ID we would have refused on ADD can never match one of our records,
    # so it protects nothing; refusing the whole list would block all GC.
    if len(cid) > MAX_CONTAINER_ID or not CONTAINER_ID.match(cid) or ifname_problem(ifname):
        return None
    return Attachment(cid, ifname)
