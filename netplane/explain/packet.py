"""The packet an operator asks about: `SRC DST:PORT[/PROTO]`, checked."""
from dataclasses import dataclass

import netaddr

from netplane.errors import OperatorError

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    port: int
    proto: str

    @property
    def family(self) -> int:
        return netaddr.IPAddress(self.dst).version

    def __str__(self) -> str:
        dst = f"[{self.dst}]" if self.family == 6 else self.dst
        return f"{self.src} -> {dst}:{self.port}/{self.proto}"


def parse(src: str, destination: str) -> Packet:
    """`10.244.1.5`, `10.96.0.10:80/tcp` (or `[fd00::10]:80/udp`; the protocol defaults to tcp)."""
    source = _address(src, "source")
    where, slash, proto = destination.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOCOLS:
        raise OperatorError(f"destination {destination}: protocol {proto!r} is not one of {', '.join(PROTOCOLS)}")
    host, colon, port = where.rpartition(":")
    if not colon or not host or (":" in host and not host.startswith("[")):
        raise OperatorError(f"destination {destination}: expected ADDRESS:PORT[/PROTO], "
                            "e.g. 10.96.0.10:80/tcp or [fd00::10]:80/udp")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise OperatorError(f"destination {destination}: port {port!r} is not a number from 1 to 65535")
    address = _address(host.strip("[]") if host.startswith("[") and host.endswith("]") else host, "destination")
    if source.version != address.version:
        raise OperatorError(f"source {src} and destination {host} are not of the same IP family")
    return Packet(str(source), str(address), int(port), proto)


def _address(text: str, what: str) -> netaddr.IPAddress:
    try:
        # strict: netaddr would otherwise read "10" or "1.2.3" as addresses
        return netaddr.IPAddress(text, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise OperatorError(f"{what} {text!r} is not an IP address") from None
