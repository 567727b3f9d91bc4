"""What the benchmark runs side by side: netplane's modes and two references.

- each mode: `netplane proxy --mode M` (the lab's flags);
- "kube-proxy-layout": the iptables mode with `--iptables-layout
  kube-proxy`, the rule layout of kube-proxy's iptables mode, which is what
  most clusters run today;
- "floor": no proxy at all, every connection straight to the pod's IP: what
  the data path costs without any Service in the way.
A subject runs "host" (this kernel) or "vm" (the VM tier's kernel, for
modes this one lacks).
"""
from dataclasses import dataclass

FLOOR, KUBE_PROXY = "floor", "kube-proxy-layout"


@dataclass(frozen=True)
class Subject:
    name: str
    mode: str | None                  # None: no proxy (the floor)
    flags: tuple[str, ...] = ()
    kind: str = "mode"                # or "reference"
    where: str = "host"

    @property
    def row(self) -> str:
        return self.name + ("@vm" if self.where == "vm" else "")

    def describe(self) -> dict:
        what = ("no proxy: every connection straight to the pod's IP" if self.mode is None
                else " ".join(("netplane proxy --mode", self.mode, *self.flags)))
        return {"name": self.name, "kind": self.kind, "where": self.where, "description": what}


def mode(name: str, where: str = "host") -> Subject:
    return Subject(name, name, where=where)


def kube_proxy(where: str = "host") -> Subject:
    return Subject(KUBE_PROXY, "iptables", ("--iptables-layout", "kube-proxy"), "reference", where)


def floor(where: str = "host") -> Subject:
    return Subject(FLOOR, None, kind="reference", where=where)


def lineup(modes: list[str], where: str, kube_proxy_row: bool = True) -> list[Subject]:
    """The floor, the modes, then kube-proxy's layout (only where asked). The
    floor goes first so that a single round ends with a proxy, whose clean-up
    the lab's removal makes needless (runner.py skips the last one's)."""
    return [floor(where), *(mode(m, where) for m in modes), *([kube_proxy(where)] if kube_proxy_row else [])]
