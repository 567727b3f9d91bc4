"""An in-memory stand-in for Nft (proxy/nftables/runner.py), for tests.

It understands exactly the statements render.script() writes (tables,
base and regular chains, rules, sets and maps with their elements) and
keeps, per family ("ip", "ip6"), the one table netplane owns:

    {"chains": {name: [rule text]}, "base": {name: (type, hook, priority)},
     "sets": {name: {"body": str, "elements": {key: value}}}}

where a key is the tuple of its fields as written, and a value is None (a
set), a verdict string ("goto cluster-2", "drop") or a tuple of fields.

A script is one transaction, as `nft -f` makes it: it is applied to a copy,
statement by statement (each one sees what the ones before it did), and
only a script that gets through whole replaces the state. What the kernel
would refuse raises NftError and changes nothing: a rule in a missing
chain; a jump or goto to a missing chain or a base chain, in a rule or in a
verdict-map element; a rule naming a missing set; an element of a missing
map, of the wrong shape, or whose key is held with another value ("File
exists"); deleting an element that is not there; deleting a chain a rule
or a map element still jumps to, or a set a rule still names; and any
statement in a table that does not exist. The kernel tier runs the same
applier against real nft.
"""
import copy
import re

import netaddr

from netplane.proxy.nftables.names import TABLE
from netplane.proxy.nftables.runner import NftError

FAMILIES = ("ip", "ip6")
PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
VERDICTS = ("accept", "drop", "continue", "return")
# a rule's references: `jump X`, `goto X` (also inside an inline vmap), and `@set`
_CHAIN_REF = re.compile(r"\b(?:jump|goto) ([\w.-]+)")
_SET_REF = re.compile(r"@([\w.-]+)")
# statements the kernel allows only in some chains, checked at commit over
# everything a base chain reaches: (chain types or None for any, hooks)
_RESTRICTED = {"dnat": (re.compile(r"(?<!status )\bdnat (?:ip|ip6) to "), {"nat"}, {"prerouting", "output"}),
               "masquerade": (re.compile(r"(?:^| )masquerade(?: |$)"), {"nat"}, {"postrouting"}),
               "reject": (re.compile(r"(?:^| )reject(?: |$)"), None, {"input", "forward", "output"})}
# the field types of a `typeof` declaration, by the expression that gives them
_TYPEOF = {"ip saddr": "ipv4_addr", "ip daddr": "ipv4_addr", "ip6 saddr": "ipv6_addr", "ip6 daddr": "ipv6_addr",
           "meta l4proto": "inet_proto", "th dport": "inet_service", "tcp dport": "inet_service",
           "udp dport": "inet_service", "sctp dport": "inet_service"}
PROTOCOLS = {"tcp", "udp", "sctp"}


class FakeNft:
    via = "fake"

    def __init__(self, table: str = TABLE) -> None:
        self.table = table                       # the one table it holds: the nftables mode's, or the IPVS mode's
        self.tables: dict[str, dict] = {}        # family -> that table (see the module docstring)
        self.scripts: list[str] = []             # every script applied, in order
        self.fail_next = ""                      # a message: the next run fails with it

    # -- the runner's interface ----------------------------------------------------------

    def run(self, script: str) -> str:
        if self.fail_next:
            message, self.fail_next = self.fail_next, ""
            raise NftError(message)
        staged = copy.deepcopy(self.tables)
        for line in script.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                _Statement(staged, line, self.table).apply()
            except NftError as err:
                raise NftError(f"Error: {err} in: {line[:200]}") from None
        for table in staged.values():
            _validate(table)
        self.tables = staged
        self.scripts.append(script)
        return ""

    def reader(self, family: int) -> "FakeReader":
        """What NetlinkReader reads from the kernel, read from this fake."""
        return FakeReader(self, "ip" if family == 4 else "ip6")

    # -- for tests ------------------------------------------------------------------------

    def dump(self, family: str = "ip") -> str:
        """The table as text, roughly as `nft list table` shows it (for debugging)."""
        table = self.tables.get(family)
        if table is None:
            return f"(no table {family} {self.table})\n"
        out = [f"table {family} {self.table} {{"]
        for name, s in table["sets"].items():
            out.append(f"\t{'map' if _is_map(s['body']) else 'set'} {name} {{ {s['body']} }}")
            out += [f"\t\t{_element_text(k, v)}" for k, v in s["elements"].items()]
        for name, rules in table["chains"].items():
            base = table["base"].get(name)
            out.append(f"\tchain {name} {{" + (" type {} hook {} priority {};".format(*base) if base else ""))
            out += [f"\t\t{rule}" for rule in rules]
            out.append("\t}")
        out.append("}")
        return "\n".join(out) + "\n"


def _validate(table: dict) -> None:
    """What the kernel checks at commit over the chain graph: no jump loop,
    and no statement in a chain reachable from a base chain whose type or
    hook cannot run it (dnat from a filter chain, reject from postrouting)."""
    for base, (kind, hook, _) in table["base"].items():
        _reach(table, base, kind, hook, [base], set())


def _reach(table: dict, chain: str, kind: str, hook: str, path: list[str], done: set) -> None:
    for rule in table["chains"][chain]:
        for statement, (pattern, kinds, hooks) in _RESTRICTED.items():
            if pattern.search(rule) and ((kinds and kind not in kinds) or hook not in hooks):
                raise NftError(f"Error: Operation not supported: {statement} in chain {chain}, "
                               f"reached from {' -> '.join(path)} ({kind} hook {hook})")
        for target in _targets(table, rule):
            if target in path:
                raise NftError(f"Error: Too many levels of symbolic links: {' -> '.join(path + [target])}")
            if target not in done:
                _reach(table, target, kind, hook, path + [target], done)
    done.add(chain)


def _targets(table: dict, rule: str) -> set[str]:
    """The chains a rule may continue in: its jumps and gotos, and those
    of the verdict maps it looks up."""
    out = set(_CHAIN_REF.findall(rule))
    for name in _SET_REF.findall(rule):
        for value in table["sets"].get(name, {}).get("elements", {}).values():
            if isinstance(value, str) and _verdict_chain(value):
                out.add(_verdict_chain(value))
    return out


def priority_value(priority: str) -> int:
    """A base chain's priority as a number: a standard name or an integer."""
    return PRIORITIES[priority] if priority in PRIORITIES else int(priority)


class _Statement:
    """One line of a script, applied to the staged tables (or refused)."""

    def __init__(self, tables: dict, line: str, table: str = TABLE) -> None:
        self.tables, self.line, self.ours = tables, line, table
        words = line.split(" ", 4)
        if len(words) < 4:
            raise NftError("syntax error")
        self.verb, self.kind, self.family, self.table_name = words[:4]
        self.rest = words[4] if len(words) > 4 else ""
        if self.family not in FAMILIES:
            raise NftError(f"unknown family {self.family}")

    def apply(self) -> None:
        if self.kind == "table":
            return self.table_statement()
        if self.table_name != self.ours or self.family not in self.tables:
            raise NftError(f"No such file or directory: table {self.family} {self.table_name}")
        self.table = self.tables[self.family]
        handler = {("add", "chain"): self.add_chain, ("flush", "chain"): self.flush_chain,
                   ("delete", "chain"): self.delete_chain, ("add", "rule"): self.add_rule,
                   ("add", "map"): self.add_set, ("add", "set"): self.add_set,
                   ("flush", "map"): self.flush_set, ("flush", "set"): self.flush_set,
                   ("delete", "set"): self.delete_set, ("delete", "map"): self.delete_set,
                   ("add", "element"): self.add_elements, ("delete", "element"): self.delete_elements,
                   }.get((self.verb, self.kind))
        if handler is None:
            raise NftError(f"the fake does not understand {self.verb} {self.kind}")
        handler()

    # -- tables ---------------------------------------------------------------------------

    def table_statement(self) -> None:
        if self.rest:
            raise NftError("syntax error after the table name")
        if self.table_name != self.ours:
            raise NftError(f"the fake holds only table {self.ours}, not {self.table_name}")
        if self.verb == "add":
            self.tables.setdefault(self.family, {"chains": {}, "base": {}, "sets": {}})
        elif self.verb == "delete":
            if self.family not in self.tables:
                raise NftError(f"No such file or directory: table {self.family} {self.table_name}")
            del self.tables[self.family]
        else:
            raise NftError(f"the fake does not understand {self.verb} table")

    # -- chains and rules -----------------------------------------------------------------

    def add_chain(self) -> None:
        name, _, body = self.rest.partition(" ")
        base = _base_chain(body) if body else None
        chains, bases = self.table["chains"], self.table["base"]
        if name in chains:
            if bases.get(name) != base and base is not None:
                raise NftError(f"Device or resource busy: chain {name} exists with another hook or type")
            return
        chains[name] = []
        if base is not None:
            bases[name] = base

    def chain(self, name: str) -> list[str]:
        if name not in self.table["chains"]:
            raise NftError(f"No such file or directory: chain {name}")
        return self.table["chains"][name]

    def flush_chain(self) -> None:
        self.chain(self.rest).clear()

    def delete_chain(self) -> None:
        name = self.rest
        self.chain(name)
        for other, rules in self.table["chains"].items():
            if other != name and any(name in _CHAIN_REF.findall(rule) for rule in rules):
                raise NftError(f"Device or resource busy: chain {name} is jumped to from {other}")
        for set_name, s in self.table["sets"].items():
            if any(isinstance(v, str) and _verdict_chain(v) == name for v in s["elements"].values()):
                raise NftError(f"Device or resource busy: chain {name} is a verdict in map {set_name}")
        del self.table["chains"][name]
        self.table["base"].pop(name, None)

    def add_rule(self) -> None:
        name, _, rule = self.rest.partition(" ")
        if not rule:
            raise NftError("syntax error: a rule without statements")
        rules = self.chain(name)
        for target in _CHAIN_REF.findall(rule):
            self.check_target(target)
        for set_name in _SET_REF.findall(rule):
            if set_name not in self.table["sets"]:
                raise NftError(f"No such file or directory: set {set_name}")
        rules.append(rule)

    def check_target(self, chain: str) -> None:
        """A jump or goto must name an existing regular chain."""
        if chain not in self.table["chains"]:
            raise NftError(f"No such file or directory: jump to missing chain {chain}")
        if chain in self.table["base"]:
            raise NftError(f"Operation not supported: jump to base chain {chain}")

    # -- sets, maps and elements ------------------------------------------------------------

    def add_set(self) -> None:
        name, _, braced = self.rest.partition(" ")
        body = _unbrace(braced)
        if (self.kind == "map") != _is_map(body):
            raise NftError(f"add {self.kind} {name}: declared as {'a map' if _is_map(body) else 'a set'}")
        _Shape(body)                                    # refuses a declaration it cannot read
        sets = self.table["sets"]
        if name in sets:
            if sets[name]["body"] != body:
                raise NftError(f"File exists: {self.kind} {name} with another declaration")
            return
        sets[name] = {"body": body, "elements": {}}

    def set(self, name: str) -> dict:
        if name not in self.table["sets"]:
            raise NftError(f"No such file or directory: set {name}")
        return self.table["sets"][name]

    def flush_set(self) -> None:
        self.set(self.rest)["elements"].clear()

    def delete_set(self) -> None:
        name = self.rest
        self.set(name)
        for chain, rules in self.table["chains"].items():
            if any(name in _SET_REF.findall(rule) for rule in rules):
                raise NftError(f"Device or resource busy: set {name} is used by a rule in {chain}")
        del self.table["sets"][name]

    def add_elements(self) -> None:
        name, _, braced = self.rest.partition(" ")
        s = self.set(name)
        shape = _Shape(s["body"])
        elements = s["elements"]
        for text in _split_top(_unbrace(braced)):
            key, value = shape.element(text)
            if isinstance(value, str) and _verdict_chain(value):
                self.check_target(_verdict_chain(value))
            if key in elements and elements[key] != value:
                raise NftError(f"File exists: {name} holds {_element_text(key, elements[key])}")
            if shape.interval:
                _check_overlap(name, elements, key)
            elements[key] = value

    def delete_elements(self) -> None:
        name, _, braced = self.rest.partition(" ")
        s = self.set(name)
        shape = _Shape(s["body"])
        for text in _split_top(_unbrace(braced)):
            key = shape.key(text)
            if key not in s["elements"]:
                raise NftError(f"No such file or directory: no element {text} in {name}")
            del s["elements"][key]


class _Shape:
    """A set's or map's declaration: its key fields' types, and its value's
    (None: a set; "verdict"; or a tuple of types). Elements are checked
    against it as the kernel would parse them."""

    def __init__(self, body: str) -> None:
        clauses = [c.strip() for c in body.split(";") if c.strip()]
        if not clauses or not clauses[0].startswith(("type ", "typeof ")):
            raise NftError(f"a set declaration without its type: {body}")
        declared, _, value = clauses[0].partition(" : ")
        typeof = declared.startswith("typeof ")
        declared = declared.split(" ", 1)[1]
        self.keys = tuple(_field_type(f, typeof) for f in declared.split(" . "))
        if not value:
            self.value = None
        elif value == "verdict":
            self.value = "verdict"
        else:
            self.value = tuple(_field_type(f, typeof) for f in value.split(" . "))
        flags = [c.split(" ", 1)[1] for c in clauses[1:] if c.startswith("flags ")]
        self.interval = any("interval" in f.split(",") for f in flags)

    def key(self, text: str) -> tuple:
        fields = tuple(text.split(" . "))
        if len(fields) != len(self.keys):
            raise NftError(f"{text}: {len(fields)} key fields, the set has {len(self.keys)}")
        for field, kind in zip(fields, self.keys):
            _check_field(field, kind, self.interval)
        return fields

    def element(self, text: str):
        key_text, sep, value_text = text.partition(" : ")
        key = self.key(key_text)
        if self.value is None:
            if sep:
                raise NftError(f"{text}: a value in a set")
            return key, None
        if not sep:
            raise NftError(f"{text}: a map element without its value")
        if self.value == "verdict":
            if not (value_text in VERDICTS or _verdict_chain(value_text)):
                raise NftError(f"{text}: {value_text} is no verdict")
            return key, value_text
        value = tuple(value_text.split(" . "))
        if len(value) != len(self.value):
            raise NftError(f"{text}: {len(value)} value fields, the map has {len(self.value)}")
        for field, kind in zip(value, self.value):
            _check_field(field, kind, False)
        return key, value


def _field_type(field: str, typeof: bool) -> str:
    field = field.strip()
    if not typeof:
        if field not in ("ipv4_addr", "ipv6_addr", "inet_proto", "inet_service", "mark", "integer"):
            raise NftError(f"the fake does not know type {field}")
        return field
    if field.startswith("numgen random mod "):
        return "integer"
    if field not in _TYPEOF:
        raise NftError(f"the fake does not know typeof {field}")
    return _TYPEOF[field]


def _check_field(field: str, kind: str, interval: bool) -> None:
    """What the kernel (nft's parser, really) refuses in one field."""
    try:
        if kind in ("ipv4_addr", "ipv6_addr"):
            version = 4 if kind == "ipv4_addr" else 6
            ok = (netaddr.IPNetwork(field).version if interval and "/" in field
                  else netaddr.IPAddress(field).version) == version
        elif kind == "inet_proto":
            ok = field in PROTOCOLS
        elif kind == "mark":                         # nft reads a mark in hex too
            ok = 0 <= int(field, 0) < 1 << 32
        else:
            ok = field.isdigit() and (kind != "inet_service" or int(field) < 65536)
    except (netaddr.AddrFormatError, ValueError):
        ok = False
    if not ok:
        raise NftError(f"Could not parse {kind}: {field}")


def _check_overlap(name: str, elements: dict, key: tuple) -> None:
    """An interval set refuses an element overlapping another one (nft says
    "conflicting intervals"): the same fields, and ranges that meet."""
    for held in elements:
        if held == key or len(held) != len(key):
            continue
        if all(_overlap(a, b) for a, b in zip(held, key)):
            raise NftError(f"File exists: {' . '.join(key)} overlaps {' . '.join(held)} in {name}")


def _overlap(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = netaddr.IPNetwork(a), netaddr.IPNetwork(b)
    except (netaddr.AddrFormatError, ValueError):
        return False
    return x.version == y.version and (x.first <= y.last and y.first <= x.last)


def _base_chain(body: str) -> tuple[str, str, str]:
    match = re.fullmatch(r"\{ type (\w+) hook (\w+) priority ([\w-]+); policy accept; \}", body)
    if not match:
        raise NftError(f"the fake does not understand the chain declaration {body}")
    kind, hook, priority = match.groups()
    priority_value(priority)
    return kind, hook, priority


def _is_map(body: str) -> bool:
    return " : " in body


def _unbrace(text: str) -> str:
    text = text.strip()
    if not (text.startswith("{ ") and text.endswith(" }")):
        raise NftError(f"syntax error: expected {{ ... }}, got {text[:80]}")
    return text[2:-2]


def _split_top(text: str) -> list[str]:
    """Split on ", " outside braces."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0 and text[i + 1:i + 2] == " ":
            out.append(text[start:i])
            start = i + 2
    out.append(text[start:])
    return [part.strip() for part in out if part.strip()]


def _verdict_chain(value: str) -> str:
    """The chain a verdict jumps or goes to ("" for drop, accept...)."""
    words = value.split()
    return words[1] if len(words) == 2 and words[0] in ("jump", "goto") else ""


def _element_text(key: tuple, value) -> str:
    text = " . ".join(key)
    if value is None:
        return text
    return f"{text} : {value if isinstance(value, str) else ' . '.join(value)}"


class FakeReader:
    """NetlinkReader's answers (reader.py) from a FakeNft's state."""

    def __init__(self, fake: FakeNft, family: str) -> None:
        self.fake, self.family = fake, family

    def rule_count(self, chain: str) -> int:
        table = self.fake.tables.get(self.family)
        return len(table["chains"].get(chain, ())) if table else 0

    def names(self) -> dict[str, set[str]] | None:
        table = self.fake.tables.get(self.family)
        if table is None:
            return None
        return {"chains": set(table["chains"]), "sets": set(table["sets"])}
