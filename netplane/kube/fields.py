"""Checked access to fields of Kubernetes objects read as plain JSON.

Objects from the API server or from manifest files are untrusted input.
Every parser (Nodes for the pod network, Services and EndpointSlices for
the proxy) reads them through these helpers, which either return a value
of the expected type or raise InvalidObject naming the field.
"""
import netaddr


class InvalidObject(ValueError):
    """An object that cannot be used, with the reason."""


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
    try:
        if not isinstance(text, str):
            raise TypeError
        return netaddr.IPAddress(text)
    except (netaddr.AddrFormatError, TypeError, ValueError):
        raise InvalidObject(f"{where}: {text!r} is not an IP address") from None
