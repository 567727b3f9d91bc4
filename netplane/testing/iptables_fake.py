"""An in-memory stand-in for Iptables (proxy/iptables/restore.py), for tests.

It keeps tables as {table: {chain: [rule text]}} and applies restore input
with --noflush semantics, checking what the kernel would refuse: a rule in
an undeclared chain, a jump to a chain that does not exist at COMMIT, and
deleting a chain that is still referenced. A bad transaction changes
nothing. The kernel tier runs the same backend against real iptables.
"""
import shlex

from netplane.proxy.iptables import chains as c
from netplane.proxy.iptables.restore import IptablesError

BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "MARK", "MASQUERADE", "DNAT", "SNAT"}


class FakeIptables:
    def __init__(self, family: int, backend: str | None = None) -> None:
        self.family, self.backend = family, backend
        self.route_localnet = 0                 # the sysctl, as this fake kernel holds it
        self.tables: dict[str, dict[str, list[str]]] = {t: {b: [] for b in chains} for t, chains in BUILTIN.items()}
        self.restores: list[str] = []          # every transaction applied, in order
        self.fail_next = ""                     # a message: the next restore fails with it

    def enable_route_localnet(self) -> bool:
        changed, self.route_localnet = self.route_localnet != 1, 1
        return changed

    def restore(self, parts: list[str] | str, bulk: bool = False) -> None:
        text = parts if isinstance(parts, str) else "".join(parts)
        if not text:
            return
        if self.fail_next:
            message, self.fail_next = self.fail_next, ""
            raise IptablesError(message)
        staged = {t: {n: list(r) for n, r in chains.items()} for t, chains in self.tables.items()}
        table = None
        for line in text.splitlines():
            table = self._apply_line(staged, table, line)
        if table is not None:
            raise IptablesError("restore input ends without COMMIT")
        self.tables = staged
        self.restores.append(text)

    def _apply_line(self, staged, table, line: str):
        if line.startswith("*"):
            return line[1:]
        if line == "COMMIT":
            _check_targets(staged[table], table)
            return None
        chains = staged[table]
        if line.startswith(":"):
            chains[line[1:].split()[0]] = []
        elif line.startswith("-A "):
            name = line.split()[1]
            if name not in chains:
                raise IptablesError(f"{table}: rule for missing chain {name}")
            chains[name].append(line)
        elif line.startswith(("-I ", "-D ")):
            _edit(chains, table, line)
        elif line.startswith("-X "):
            name = line.split()[1]
            if any(_target(rule) == name for rules in chains.values() for rule in rules):
                raise IptablesError(f"{table}: cannot delete {name}: still referenced")
            chains.pop(name, None)
        return table

    def chains(self, table: str) -> set[str]:
        return {n for n in self.tables[table] if n.startswith(c.PREFIX)}

    def intact(self) -> bool:
        return all(self.tables[t].get(chain) for t, chain in c.SENTINELS)

    def flush_chains(self, table: str) -> None:
        """What an admin's `iptables -t TABLE -F` does: every chain emptied, none deleted."""
        for rules in self.tables[table].values():
            rules.clear()

    def ensure_jumps(self) -> int:
        missing = 0
        for table, builtin, rule in reversed(c.JUMPS):
            line = f"-A {builtin} {rule}"
            if line not in self.tables[table][builtin]:
                self.tables[table][builtin].insert(0, line)
                missing += 1
        return missing

    def remove_jumps(self) -> int:
        removed = 0
        for table, builtin, rule in c.JUMPS:
            while f"-A {builtin} {rule}" in self.tables[table][builtin]:
                self.tables[table][builtin].remove(f"-A {builtin} {rule}")
                removed += 1
        return removed

    def flush_everything(self) -> None:
        """What an admin's `iptables -F; iptables -X` (all tables) does."""
        self.tables = {t: {b: [] for b in chains} for t, chains in BUILTIN.items()}


def _edit(chains, table: str, line: str) -> None:
    """`-I CHAIN N rule` and `-D CHAIN N`, by rule number as the kernel
    counts them (from 1; an insert may go right after the last rule)."""
    op, name, number, *rest = line.split(" ", 3)
    rules = chains.get(name)
    if rules is None:
        raise IptablesError(f"{table}: {op} in missing chain {name}")
    index = int(number) - 1
    if op == "-D":
        if not 0 <= index < len(rules):
            raise IptablesError(f"{table}: {name} has no rule {number}")
        del rules[index]
    else:
        if not 0 <= index <= len(rules):
            raise IptablesError(f"{table}: index of insertion too big: {name} {number}")
        rules.insert(index, f"-A {name} {rest[0]}")


def _target(rule: str) -> str:
    words = shlex.split(rule)
    return words[words.index("-j") + 1] if "-j" in words else ""


def _check_targets(chains, table: str) -> None:
    for rules in chains.values():
        for rule in rules:
            target = _target(rule)
            if target and target not in TARGETS and target not in chains:
                raise IptablesError(f"{table}: jump to missing chain {target}")


def fake_dataplane(settings, layout: str = "compact", local_addresses=None):
    """The iptables mode over FakeIptables: the real compile, core and
    applier, with the kernel in memory (`plane.appliers[family].runner`)."""
    from netplane.proxy import modes
    from netplane.proxy.dataplane import Dataplane
    from netplane.proxy.iptables.mode import IptablesApplier, IptablesOptions

    return Dataplane(modes.get("iptables"), settings, IptablesOptions(layout),
                     applier=lambda family, options: IptablesApplier(family, options, runner=FakeIptables),
                     local_addresses=local_addresses or (lambda: []), clean_conntrack=None, sweep=False)
