"""In-memory stand-ins for what the IPVS applier drives: IPVS itself
(kernel.py's IpvsKernel) and the dummy device np-ipvs0 (device.py). The
nftables side is FakeNft, holding the table `netplane-ipvs`.

FakeIpvs refuses what the kernel refuses, operation by operation (a batch
is not a transaction in the kernel either): adding a virtual or real
server that exists (EEXIST), editing, deleting or adding a real server to
one that does not (ENOENT), and a real server whose address family is not
the service's.
"""
import errno
import os

from netplane.proxy.ipvs.plan import Dest, Key, VirtualServer


def _error(code: int, what: str):
    from netplane.proxy.ipvs.kernel import IpvsError
    return IpvsError(f"{what}: {os.strerror(code)}")


class FakeIpvs:
    def __init__(self, family: int) -> None:
        self.family = family
        self.services: dict[Key, VirtualServer] = {}
        self.real: dict[Key, dict[Dest, list[int]]] = {}     # key -> dest -> [weight, active, inactive]
        self.operations = 0                                  # messages applied, for the partial-sync checks

    def servers(self) -> dict:
        return {k: (s, {d: tuple(v) for d, v in self.real[k].items()}) for k, s in self.services.items()}

    def dests(self, key: Key) -> dict:
        if key not in self.services:
            raise _error(errno.ENOENT, f"reading {key}")
        return {d: tuple(v) for d, v in self.real[key].items()}

    def apply(self, add_servers, edit_servers, dests, delete_servers) -> None:
        for key, server in add_servers:
            self._count(key not in self.services, errno.EEXIST, f"adding {key}")
            self.services[key], self.real[key] = server, {}
        for key, server in edit_servers:
            self._count(key in self.services, errno.ENOENT, f"editing {key}")
            self.services[key] = server
        for op, key, dest, weight in dests:
            self._dest(op, key, dest, weight)
        for key in delete_servers:
            self._count(key in self.services, errno.ENOENT, f"deleting {key}")
            del self.services[key], self.real[key]

    def _dest(self, op: str, key: Key, dest: Dest, weight: int) -> None:
        _check(key in self.services, errno.ENOENT, f"{op} real server {dest} of {key}")
        _check((":" in dest[0]) == (self.family == 6), errno.EAFNOSUPPORT, f"{op} {dest} in {key}")
        held = self.real[key]
        if op == "add":
            self._count(dest not in held, errno.EEXIST, f"adding real server {dest} to {key}")
            held[dest] = [weight, 0, 0]
        else:
            self._count(dest in held, errno.ENOENT, f"{op} real server {dest} of {key}")
            if op == "set":
                held[dest][0] = weight
            else:
                del held[dest]

    def _count(self, ok: bool, code: int, what: str) -> None:
        _check(ok, code, what)
        self.operations += 1


def _check(ok: bool, code: int, what: str) -> None:
    if not ok:
        raise _error(code, what)


class FakeDevice:
    """np-ipvs0: whether it exists, and its addresses per family."""

    def __init__(self) -> None:
        self.exists = False
        self.held: dict[int, set[str]] = {4: set(), 6: set()}

    def ensure(self) -> int:
        self.exists = True
        return 1

    def index(self) -> int | None:
        return 1 if self.exists else None

    def remove(self) -> bool:
        existed, self.exists = self.exists, False
        self.held = {4: set(), 6: set()}
        return existed

    def addresses(self, family: int) -> set[str]:
        return set(self.held[family])

    def change(self, family: int, add, delete) -> None:
        if add:
            self.ensure()
        self.held[family] |= set(add)
        self.held[family] -= set(delete)
