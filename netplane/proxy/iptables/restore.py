"""The iptables binaries, for one family: the only place that execs them.

Everything goes through iptables-restore, one transaction per call, with
-w so a concurrent iptables user (an admin, a CNI plugin) makes us wait
instead of fail. The jumps from the built-in chains into ours cannot be
made idempotent inside a --noflush restore, so they are checked and
inserted one by one, on full syncs only.

The binaries are those of one backend (backend.py): iptables-nft-* or
iptables-legacy-*, chosen once; without one, the system's default
alternative (plain `iptables`).
"""
import shlex
import subprocess
import tempfile
from functools import cached_property

from netplane.proxy.iptables import backend as backends
from netplane.proxy.iptables import chains as c
from netplane.proxy.iptables import localnet


NAT = "*nat\n"                   # the piece that opens the nat table's part of a transaction


class IptablesError(RuntimeError):
    pass


class Iptables:
    def __init__(self, family: int, wait: int = 5, backend: str | None = None) -> None:
        """`backend`: auto (detected), nft or legacy, decided once per process
        (backend.resolve) when first needed, so that a compile that never
        touches the kernel lists nothing; None for the plain binaries."""
        self.family, self.requested = family, backend
        self.wait = str(wait)

    @cached_property
    def backend(self) -> str | None:
        return backends.resolve(self.requested) if self.requested else None

    @cached_property
    def _binaries(self) -> tuple[str, str, str]:
        return backends.binaries(self.family, self.backend)

    cmd = property(lambda self: self._binaries[0])
    restore_cmd = property(lambda self: self._binaries[1])
    save_cmd = property(lambda self: self._binaries[2])

    def _run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise _failure(argv, done.stderr, done.returncode)
        return done

    def restore(self, parts: list[str] | str, bulk: bool = False) -> None:
        """Apply one transaction, given as a string or as pieces of one.

        `bulk` is for transactions that declare thousands of chains. Under
        --noflush, iptables-nft (1.8.9) keeps every chain a line names in a
        sorted linked list, walked with strcmp on each line: chains x rules
        steps, 50 s at 10k Services (measured, 44% of it in strcmp; see
        benchmarks/iptables_restore_scaling.py). A `-S` line right after
        `*nat` names no chain, so iptables fetches every chain at once and
        stops keeping the list, as a table flush would, but flushes nothing:
        3.6 s. It costs a listing of the whole table (about 1 s at 10k), so
        small partial syncs go without it. The legacy backend ignores it."""
        parts = [parts] if isinstance(parts, str) else parts
        if not any(parts):
            return
        if bulk and NAT in parts:
            parts = list(parts)
            parts.insert(parts.index(NAT) + 1, "-S\n")
        self._feed([self.restore_cmd, "-w", self.wait, "--noflush"], parts)

    def _feed(self, argv: list[str], parts: list[str]) -> None:
        """Stream the pieces to argv's stdin: a full sync at 10k services is
        tens of megabytes, which are never joined into one string (or one
        bytes object) here. stderr goes to a file, so that an error report
        of any size cannot block the writer."""
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                                    bufsize=1 << 20)
            try:
                with proc.stdin as pipe:
                    for part in parts:
                        pipe.write(part.encode())
            except BrokenPipeError:
                pass                    # it stopped reading: its status and stderr say why
            if proc.wait() != 0:
                err.seek(0)
                raise _failure(argv, err.read().decode(errors="replace"), proc.returncode)

    def enable_route_localnet(self) -> bool:
        """route_localnet=1 in this process's namespace (localnet.py); returns whether it changed."""
        return localnet.enable()

    def chains(self, table: str) -> set[str]:
        """Our chains in a table, from iptables-save (used on full syncs only:
        at scale the dump is large)."""
        out = self._run([self.save_cmd, "-t", table]).stdout
        return {line[1:].split(" ", 1)[0] for line in out.splitlines()
                if line.startswith(":" + c.PREFIX)}

    def intact(self) -> bool:
        """Whether every sentinel chain still holds its rules (see chains.SENTINELS).
        The listings run at once, side by side: this is what every sync with
        nothing to do costs, and each run is mostly the binary's start-up."""
        runs = [subprocess.Popen([self.cmd, "-w", self.wait, "-t", table, "-S", chain], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True) for table, chain in c.SENTINELS]
        listings = [(run.communicate()[0], run.returncode) for run in runs]
        return all(code == 0 and "\n-A " in out for out, code in listings)

    def ensure_jumps(self) -> int:
        """Insert any missing jump from a built-in chain into ours; returns how many were missing."""
        missing = 0
        for (table, builtin), rules in _by_chain(c.JUMPS).items():
            present = self._run([self.cmd, "-w", self.wait, "-t", table, "-S", builtin]).stdout.splitlines()
            for rule in reversed(rules):            # inserted at the top, so in reverse to keep their order
                if f"-A {builtin} {rule}" not in present:     # -S prints matches in the order given
                    self._run([self.cmd, "-w", self.wait, "-t", table, "-I", builtin, "1", *shlex.split(rule)])
                    missing += 1
        return missing

    def remove_jumps(self) -> int:
        removed = 0
        for table, builtin, rule in c.JUMPS:
            while self._run([self.cmd, "-w", self.wait, "-t", table, "-D", builtin, *shlex.split(rule)],
                            check=False).returncode == 0:
                removed += 1
        return removed


def _failure(argv: list[str], stderr: str, code: int) -> IptablesError:
    """What a failed run said, or its exit status if it said nothing."""
    return IptablesError(f"{' '.join(argv[:4])}: {stderr.strip() or f'exit {code}'}")


def _by_chain(jumps) -> dict[tuple[str, str], list[str]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for table, builtin, rule in jumps:
        grouped.setdefault((table, builtin), []).append(rule)
    return grouped

