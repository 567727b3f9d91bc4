"""Checked access to fields of Kubernetes objects read as plain JSON.

Objects from the API server or from manifest files are untrusted input.
Every parser (Nodes for the pod network, Services and EndpointSlices for
the proxy) reads them through these helpers, which either return a value
of the expected type or raise InvalidObject naming the field.
"""
import re
from datetime import datetime
from socket import AF_INET, AF_INET6, inet_pton

import netaddr


class InvalidObject(ValueError):
    """An object that cannot be used, with the reason."""


def rfc3339_seconds(text: str) -> float:
    """Seconds since the epoch of a Kubernetes timestamp ("2026-01-02T03:04:05Z",
    fractions allowed); ValueError if it is not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidObject(f"{where} is not an object")
    return value


def sequence(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidObject(f"{where} is not a list")
    return value


def ip_address(text, where: str) -> netaddr.IPAddress:
    parsed = parse_ip(text)
    if parsed is None:
        raise InvalidObject(f"{where}: {text!r} is not an IP address")
    return parsed[0]


def parse_ip(text) -> tuple[netaddr.IPAddress, int, int, str] | None:
    """(address, version, int value, canonical text), or None if `text` is
    not an IP address. The text is what str() of the address gives.

    Accepts exactly what netaddr.IPAddress(text) accepts (four decimal
    octets without leading zeros, or any IPv6 form inet_pton takes), at a
    third of the cost: a large cluster has a hundred thousand endpoints.
    """
    try:
        if not isinstance(text, str):
            return None
        if ":" in text:                          # IPv6 always has one, IPv4 never
            value = int.from_bytes(inet_pton(AF_INET6, text))
            ip = _address(value, 6)
            return ip, 6, value, str(ip)
        value = int.from_bytes(inet_pton(AF_INET, text))
        if (text[0] == "0" or ".0" in text) and any(len(p) > 1 and p[0] == "0" for p in text.split(".")):
            return None                          # netaddr refuses leading zeros (octal to inet_aton)
        return _address(value, 4), 4, value, text   # four octets, no leading zeros: already canonical
    except (OSError, ValueError):                # ValueError: a NUL or a lone surrogate in the text
        return None


def _address(value: int, version: int) -> netaddr.IPAddress:
    # netaddr's own unpickling path: IPAddress(value, version) re-checks
    # what inet_pton just checked, and costs twice as much
    ip = netaddr.IPAddress.__new__(netaddr.IPAddress)
    ip.__setstate__((value, version))
    return ip


# -- names --------------------------------------------------------------------
# What the API server enforces (k8s.io/apimachinery/pkg/util/validation).
# Names end up in iptables-restore input, inside quoted comments and chain
# hashes: a manifest must not be able to smuggle a quote or a newline in.

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1035_LABEL = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")

DNS1123_LABEL = "an RFC 1123 DNS label: lowercase letters, digits and '-', at most 63 characters"
DNS1035_LABEL = ("an RFC 1035 DNS label: lowercase letters, digits and '-', starting with a letter, "
                 "at most 63 characters")
DNS1123_SUBDOMAIN = ("an RFC 1123 DNS subdomain: dot-separated lowercase letters, digits and '-', "
                     "at most 253 characters")


def dns1123_label(value, where: str) -> str:
    return _name(value, where, _DNS1123_LABEL, 63, DNS1123_LABEL)


def dns1035_label(value, where: str) -> str:
    return _name(value, where, _DNS1035_LABEL, 63, DNS1035_LABEL)


def dns1123_subdomain(value, where: str) -> str:
    return _name(value, where, _DNS1123_SUBDOMAIN, 253, DNS1123_SUBDOMAIN)


def _name(value, where: str, pattern: re.Pattern, longest: int, what: str) -> str:
    if not isinstance(value, str) or len(value) > longest or not pattern.fullmatch(value):
        raise InvalidObject(f"{where} {value!r} is not {what}")
    return value
