"""The CNI_* environment of one plugin run, parsed and validated.

Nothing here touches the disk or the kernel: an invalid container ID or
interface name is refused before any path is built from it.
"""
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Mapping

from netplane.cni.errors import INVALID_ENVIRONMENT, CniError

VERBS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")

# What each verb needs from the environment, as the CNI spec defines it.
# CNI_PATH is optional there (libcni's skel insists on it anyway); netplane
# delegates to no other plugin, so it never needs it.
REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}

# Container IDs become file names under dataDir, so the spec's character set
# is enforced strictly and the length is capped well below NAME_MAX (255)
# to leave room for the interface name in the attachment record's name.
CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
MAX_CONTAINER_ID = 200
MAX_IFNAME = 15  # IFNAMSIZ - 1


@dataclass(frozen=True)
class Invocation:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    path: str = ""
    args: Mapping[str, str] = field(default_factory=dict)


def parse_environment(env: Mapping[str, str]) -> Invocation:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENVIRONMENT, "required environment variables missing", "CNI_COMMAND")
    if command not in VERBS:
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND {command!r}", "expected one of " + ", ".join(VERBS))
    missing = [name for name in REQUIRED[command] if not env.get(name)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, "required environment variables missing", ", ".join(missing))
    inv = Invocation(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        path=env.get("CNI_PATH", ""),
        args=parse_cni_args(env.get("CNI_ARGS", "")),
    )
    if "CNI_CONTAINERID" in REQUIRED[command]:
        validate_container_id(inv.container_id)
    if "CNI_IFNAME" in REQUIRED[command]:
        validate_ifname(inv.ifname, "CNI_IFNAME")
    return inv


def validate_container_id(container_id: str) -> None:
    if len(container_id) > MAX_CONTAINER_ID:
        raise CniError(INVALID_ENVIRONMENT, "container ID too long",
                       f"{len(container_id)} characters, at most {MAX_CONTAINER_ID}")
    if not CONTAINER_ID.match(container_id):
        raise CniError(INVALID_ENVIRONMENT, "invalid characters in container ID", shown(container_id))


def ifname_problem(name: str) -> str:
    """Why `name` is not a valid Linux interface name, or "" if it is."""
    if not name:
        return "is empty"
    # A NUL would cut the name short in the kernel (EINVAL, not a clear
    # error), and no control character belongs in a name a human reads.
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "may not contain control characters"
    # The standalone path sees non-UTF-8 environment bytes as surrogates.
    if not _utf8_encodable(name):
        return "is not valid UTF-8"
    if len(name.encode()) > MAX_IFNAME:
        return f"is longer than {MAX_IFNAME} bytes"
    if name in (".", ".."):
        return "may not be '.' or '..'"
    if any(c in name for c in "/:") or any(c.isspace() for c in name):
        return "may not contain '/', ':' or whitespace"
    return ""


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def shown(value, limit: int = 60) -> str:
    """repr(value) cut short, so a huge input does not become a huge error."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def validate_ifname(name: str, what: str) -> None:
    problem = ifname_problem(name)
    if problem:
        raise CniError(INVALID_ENVIRONMENT, f"invalid interface name in {what}", f"{shown(name)} {problem}")


def parse_cni_args(raw: str) -> dict[str, str]:
    """CNI_ARGS is 'K1=V1;K2=V2'."""
    out = {}
    for pair in filter(None, raw.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, "malformed CNI_ARGS", f"{shown(pair)} is not KEY=VALUE")
        out[key] = value
    return out
