"""The interface every proxy mode implements (iptables now; nftables,
ipvs and ebpf later), and the settings they share.

A backend is two steps per IP family:
- compile: a pure function from the family's views (plus what the backend
  compiled last time) to a plan; it never touches the kernel, so it runs
  without root, in unit tests and in `netplane compile`, and it is the part
  the Cython fast path accelerates;
- apply: hand that plan to the kernel in one transaction.
`sync()` does both for every family and remembers the result, which the next
partial sync compiles against. `cleanup()` removes everything the mode
installed. A backend registers itself in BACKENDS under its mode name.
"""
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import netaddr

from netplane.proxy.model import PortName
from netplane.proxy.views import Node, PortView


@dataclass(frozen=True)
class Settings:
    """The node-level proxy settings, the same for every mode."""
    node: Node
    node_ips: tuple[netaddr.IPAddress, ...] = ()
    cluster_cidrs: tuple[netaddr.IPNetwork, ...] = ()        # at most one per family
    nodeport_addresses: tuple[netaddr.IPNetwork, ...] = ()   # () = every local address
    masquerade_all: bool = False
    masquerade_bit: int = 14
    iptables_layout: str = "compact"

    @property
    def families(self) -> tuple[int, ...]:
        """The families this node proxies: those of its node IPs (both when none are given)."""
        found = tuple(sorted({ip.version for ip in self.node_ips}))
        return found or (4, 6)

    def cluster_cidr(self, family: int) -> netaddr.IPNetwork | None:
        return next((c for c in self.cluster_cidrs if c.version == family), None)


class Backend(ABC):
    mode: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def sync(self, views: dict[int, dict[PortName, PortView]], changed: set[PortName] | None) -> None:
        """Make the kernel match the views; `changed=None` asks for a full sync."""

    @abstractmethod
    def dry_run(self, views: dict[int, dict[PortName, PortView]]) -> str:
        """The full plan as text, compiled without touching the kernel."""

    @abstractmethod
    def cleanup(self) -> list[str]:
        """Remove everything this mode installed; returns what was removed."""


BACKENDS: dict[str, Callable[..., Backend]] = {}


def register(mode: str):
    def add(cls):
        cls.mode = mode
        BACKENDS[mode] = cls
        return cls
    return add


def backend(mode: str, settings: Settings, **options) -> Backend:
    _load_builtin()
    if mode not in BACKENDS:
        raise KeyError(f"unknown proxy mode {mode!r}; available: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[mode](settings, **options)


def modes() -> list[str]:
    _load_builtin()
    return sorted(BACKENDS)


def _load_builtin() -> None:
    import importlib

    importlib.import_module("netplane.proxy.iptables.backend")     # registers the iptables mode
