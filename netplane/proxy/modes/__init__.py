"""The contract every proxy mode implements, and the registry of modes.

A mode is a pure compile step and a thin applier (see the README,
"Architecture: the proxy modes"):

    policies (per family, policy.py) --compile--> Plan --applier.apply--> kernel

- `Options`: the mode's own settings, a dataclass whose fields carry their
  config key and flag (options.py reads them); its config section is
  `section:` (kube-proxy's, where KubeProxyConfiguration has one).
- `context(settings, options, family, nodeport_addresses)`: what the
  compile needs from the node, as a value; when it changes, the next sync
  is a full one.
- `compile(policies, ctx, previous, changed, installed)` -> Plan: pure and
  testable without root; full when `previous` or `changed` is None (then
  `installed`, what the applier read back, lets it remove leftovers). A
  partial compile may consume `previous`.
- `applier(family, options)` -> Applier: apply a plan in one transaction
  (or raise), read back what is installed, say why the kernel no longer
  holds the last plan (drift), clean up, and say whether anything of the
  mode is present (so another mode can sweep it after taking over).
- `render(plan)`: the plan as the text a person reads (`netplane compile`).
- `counts(plan, full)` -> Counts: what the kernel holds after the plan,
  and what the sync wrote, per kind (the metrics publish them after each
  sync). A count that would walk the whole plan is left out of a partial
  sync's `held` (it keeps its last full sync's value), so a partial sync
  stays O(changed). The default: no counts.
Modes register themselves by name in MODES when their module is imported.
"""
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, NamedTuple, Protocol


class Applier(Protocol):
    def read_back(self) -> Any: ...
    def apply(self, plan, previous) -> None: ...
    def drift(self) -> str | None: ...
    def cleanup(self) -> list[str]: ...
    def present(self) -> bool: ...


class Counts(NamedTuple):
    """kind -> how many: what the kernel holds after a sync (`held`), and
    what the sync wrote (`written`). The kinds are the mode's own (iptables:
    the tables; nftables: chains, sets, elements...)."""
    held: dict[str, int] = {}
    written: dict[str, int] = {}


def no_counts(plan, full: bool) -> Counts:
    return Counts()


@dataclass(frozen=True)
class Mode:
    name: str
    options: type                                   # a dataclass (see options.py)
    section: str                                    # its config section
    context: Callable[..., Any]
    compile: Callable[..., Any]
    applier: Callable[..., Applier]
    render: Callable[[Any], str]
    cleans_conntrack: bool = True                   # the core deletes stale UDP flows after a sync
    keeps: tuple[str, ...] = field(default=())      # other modes whose objects it relies on: never swept
    unavailable: Callable[[], str | None] = lambda: None   # why this kernel cannot run it (None: it can)
    translates_at_connect: bool = False             # sockets on the node are translated at connect(): no NAT
    snat_local_endpoints: bool = True               # external Cluster traffic to this node's pods is SNATed too
    counts: Callable[[Any, bool], Counts] = no_counts   # what a plan holds and writes, per kind (metrics)


MODES: dict[str, Mode] = {}
BUILTIN = ("netplane.proxy.iptables.mode", "netplane.proxy.nftables.mode", "netplane.proxy.ebpf.mode",
           "netplane.proxy.ipvs.mode")


def register(mode: Mode) -> Mode:
    MODES[mode.name] = mode
    return mode


def get(name: str) -> Mode:
    _load_builtin()
    if name not in MODES:
        raise KeyError(f"unknown proxy mode {name!r}; available: {', '.join(names())}")
    return MODES[name]


def names() -> list[str]:
    _load_builtin()
    return sorted(MODES)


def available() -> list[str]:
    """The modes this machine's kernel can run (`netplane lab run` tries each)."""
    return [name for name in names() if MODES[name].unavailable() is None]


def _load_builtin() -> None:
    for module in BUILTIN:
        import_module(module)
