"""The network configuration a runtime passes on stdin, parsed and validated.

Every key is checked before the plugin acts, and every complaint names the
key, so a typo in a conflist is one clear error rather than a half-wired pod.
"""
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import netaddr

from netplane.cni import versions
from netplane.cni.errors import (DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG,
                                 UNSUPPORTED_FIELD, CniError)
from netplane.cni.invocation import MAX_CONTAINER_ID, CONTAINER_ID, ifname_problem

PLUGIN_TYPE = "netplane"
DEFAULT_BRIDGE = "np0"
DEFAULT_DATA_DIR = "/var/lib/cni/netplane"
DEFAULT_STATE_FILE = "/run/netplane/node.json"
NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
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
    subnets: tuple[netaddr.IPNetwork, ...] = ()   # empty: read the node state file
    mtu: int | None = None                         # None: state file, else 1500
    data_dir: str = DEFAULT_DATA_DIR
    state_file: str = DEFAULT_STATE_FILE
    prev_result: dict | None = None
    valid_attachments: frozenset[Attachment] | None = None  # GC only


def decode(stdin: bytes) -> dict:
    if not stdin.strip():
        raise CniError(DECODE_FAILURE, "no network configuration on stdin")
    try:
        raw = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODE_FAILURE, "network configuration is not valid JSON", str(exc)) from None
    if not isinstance(raw, dict):
        raise CniError(DECODE_FAILURE, "network configuration must be a JSON object")
    return raw


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
    )


def _invalid(key: str, why: str) -> CniError:
    return CniError(INVALID_CONFIG, f"invalid network configuration key {key!r}", why)


def _network_name(value: Any) -> str:
    if not isinstance(value, str) or not NETWORK_NAME.match(value):
        raise _invalid("name", "must start with a letter or digit and hold only letters, digits, '_', '.', '-'")
    return value


def _bridge(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("bridge", "must be a string")
    problem = ifname_problem(value)
    if problem:
        raise _invalid("bridge", f"{value!r} {problem}")
    return value


def parse_subnets(value: Any, key: str) -> tuple[netaddr.IPNetwork, ...]:
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


def _subnet(text: str, key: str) -> netaddr.IPNetwork:
    if "/" not in text:
        raise _invalid(key, f"{text!r} has no prefix length")
    try:
        net = netaddr.IPNetwork(text)
    except (netaddr.AddrFormatError, ValueError):
        raise _invalid(key, f"{text!r} is not a valid CIDR") from None
    if net.ip != net.network:
        raise _invalid(key, f"{text!r} has host bits set; did you mean {net.cidr}?")
    # The gateway takes the first address, and a pod needs at least one more.
    longest = 30 if net.version == 4 else 126
    if net.prefixlen > longest:
        raise _invalid(key, f"{text!r} is too small for a gateway and a pod (at most /{longest})")
    return net.cidr


def parse_mtu(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 576 <= value <= 65535:
        raise _invalid(key, f"must be an integer from 576 to 65535, got {value!r}")
    return value


def _absolute_path(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise _invalid(key, f"must be an absolute path, got {value!r}")
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
