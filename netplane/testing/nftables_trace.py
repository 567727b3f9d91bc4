"""A packet tracer over an nftables table (as FakeNft holds it).

Given (source, protocol, destination, port) it walks the base chains a new
connection's first packet crosses, hook by hook in priority order, as the
kernel does: output (from the node itself) or prerouting, then input or
forward by where the destination (after DNAT) lives, and postrouting on
the way out. It reports every endpoint the packet may be DNATed to (a
`numgen random` choice is followed every way: in a backends map key and in
an inline verdict map), whether it is accepted, rejected or dropped, and
whether it is masqueraded. Each way through also carries its chance (a
slot of `numgen random mod N` is 1/N) and the rules and map elements it
crossed (Verdict.branches), for `netplane explain`.

Every rule in the table is parsed when the tracer is made, reached or not,
and a rule form it does not know fails loudly (AssertionError): a new
shape from the renderer cannot be silently misread.
"""
from dataclasses import dataclass, replace

import netaddr

from netplane.testing.nftables_fake import priority_value
from netplane.testing.verdict import Branch
from netplane.testing.verdict import Verdict as Trace

REFUSED = ("drop", "reject")
PROTOCOLS = ("tcp", "udp", "sctp")
KEYWORDS = {"jump", "goto", "return", "drop", "reject", "accept", "masquerade", "dnat", "ct", "fib", "update",
            "meta", "ip", "ip6", "th", "tcp", "udp", "sctp", "numgen", "vmap", "map", "!=", "==", "."}


@dataclass(frozen=True)
class _Packet:
    src: netaddr.IPAddress
    dst: netaddr.IPAddress
    proto: str
    dport: int
    mark: int = 0
    ctmark: int = 0             # the connection's mark (the IPVS mode marks for masquerading there)
    dnat: str = ""              # the endpoint it was DNATed to, "ip:port" or "[ip]:port"
    masquerade: bool = False
    weight: float = 1.0         # the chance of this way (random choices split it)
    trail: tuple = ()           # "chain: rule" and "@map: element" steps, in order


class Tracer:
    def __init__(self, table: dict, local_addresses, affinity: dict | None = None) -> None:
        self.sets = table["sets"]
        self.local = {netaddr.IPAddress(a) for a in local_addresses}
        self.affinity = {name: {netaddr.IPAddress(c) for c in clients} for name, clients in (affinity or {}).items()}
        self.chains = {name: [_Rule(rule).ops for rule in rules] for name, rules in table["chains"].items()}
        self.texts = table["chains"]
        self.hooks: dict[str, list[str]] = {}
        for name, (_, hook, _priority) in sorted(table["base"].items(), key=lambda c: priority_value(c[1][2])):
            self.hooks.setdefault(hook, []).append(name)

    def trace(self, src: str, proto: str, dst: str, port: int) -> Trace:
        start = _Packet(netaddr.IPAddress(src), netaddr.IPAddress(dst), proto.lower(), port)
        results, branches = set(), []
        for p, verdict in self._path(start):
            results.add(_way(p, verdict))
            branches.append(Branch(*_way(p, verdict), p.weight, p.trail))
        verdicts = {v for _, v, _ in results}
        assert len(verdicts) == 1, f"branches disagree on the verdict: {results}"
        return Trace(frozenset(e for e, _, _ in results if e), verdicts.pop(), all(m for _, _, m in results),
                     frozenset(e for e, _, m in results if e and m), tuple(branches))

    def _path(self, p: _Packet):
        """The hooks in turn. The node's own packets cross output and
        postrouting, then input when addressed to the node (over lo);
        others cross prerouting, then input, or forward and postrouting."""
        from_node = p.src in self.local
        for q, verdict in self._hooks(["output" if from_node else "prerouting"], p):
            if verdict in REFUSED:
                yield q, verdict
                continue
            local = q.dst in self.local
            if from_node:
                rest = ["postrouting"] + (["input"] if local else [])
            else:
                rest = ["input"] if local else ["forward", "postrouting"]
            yield from self._hooks(rest, q)

    def _hooks(self, hooks: list[str], p: _Packet):
        if not hooks:
            yield p, "accept"
            return
        for q, verdict in self._base_chains(self.hooks.get(hooks[0], []), p):
            if verdict in REFUSED:
                yield q, verdict
            else:
                yield from self._hooks(hooks[1:], q)

    def _base_chains(self, chains: list[str], p: _Packet):
        """A hook's base chains by priority: an accept (or falling off,
        under policy accept) moves on to the next one; drop ends it all."""
        if not chains:
            yield p, "accept"
            return
        for q, verdict in self._chain(chains[0], p):
            if verdict in REFUSED:
                yield q, verdict
            else:
                yield from self._base_chains(chains[1:], q)

    def _chain(self, name: str, p: _Packet):
        """Yield (packet, verdict) for every way through `name`; verdict None
        means it fell off the end or returned (back to the caller)."""
        assert name in self.chains, f"no chain {name}"
        yield from self._rules(self.chains[name], 0, p, name)

    def _rules(self, rules: list, i: int, p: _Packet, chain: str = ""):
        if i == len(rules):
            yield p, None
            return
        for q, outcome in self._ops(rules[i], 0, p):
            if outcome is None:                             # no match, or no verdict: the next rule
                yield from self._rules(rules, i + 1, q, chain)
                continue
            if chain:                                       # the rule goes before the elements it looked up
                n = len(p.trail)
                q = replace(q, trail=q.trail[:n] + (f"{chain}: {self.texts[chain][i]}",) + q.trail[n:])
            kind, target = outcome
            if kind == "jump":
                for r, verdict in self._chain(target, q):
                    if verdict is None:
                        yield from self._rules(rules, i + 1, r, chain)
                    else:
                        yield r, verdict
            elif kind == "goto":
                yield from self._chain(target, q)
            elif kind == "return":
                yield q, None
            else:
                yield q, kind

    def _ops(self, ops: list, k: int, p: _Packet):
        """One rule's expressions, left to right: yield (packet, None) when
        it does not match or ends without a verdict, else (packet, (verdict,
        chain)). Lookups keyed by numgen yield once per slot."""
        if k == len(ops):
            yield p, None
            return
        op, *args = ops[k]
        if op == "match":
            if args[0](self, p):
                yield from self._ops(ops, k + 1, p)
            else:
                yield p, None
        elif op == "mark":
            how, value = args
            yield from self._ops(ops, k + 1, replace(p, mark=p.mark | value if how == "|" else p.mark ^ value))
        elif op == "ctmark":
            yield from self._ops(ops, k + 1, replace(p, ctmark=p.ctmark | args[0]))
        elif op == "markmap":
            expr, source = args
            keys = expr(p)
            value = self._lookup(source, keys[0]) if len(keys) == 1 else None
            if value is None:
                yield p, None                                # no element: the rule ends here
            else:
                mark = value[0] if isinstance(value, tuple) else value
                p = _looked_up(p, source, keys[0], value, 1)
                yield from self._ops(ops, k + 1, replace(p, mark=int(mark, 0) if isinstance(mark, str) else mark))
        elif op == "update":
            yield from self._ops(ops, k + 1, p)             # remembers the client: no effect on this packet
        elif op == "verdict":
            yield p, tuple(args)
        elif op == "masquerade":
            yield replace(p, masquerade=True), ("accept", "")
        elif op == "vmap":
            expr, source = args
            if not expr(p):
                yield p, None                                # a protocol's selector on another protocol
            keys = expr(p)
            for key in keys:
                value = self._lookup(source, key) if isinstance(source, str) else _inline(source, key)
                yield (p, None) if value is None else (_looked_up(p, source, key, value, len(keys)), _verdict(value))
        elif op == "dnat":
            expr, source = args
            keys = expr(p) if expr else [()]
            if not keys:
                yield p, None
            for key in keys:
                value = self._lookup(source, key) if expr else source
                if value is None:
                    yield p, None
                else:
                    yield _dnat(_looked_up(p, source, key, value, len(keys)) if expr else p, value), ("accept", "")
        else:
            raise AssertionError(f"unknown op {op}")

    def _lookup(self, name: str, key: tuple):
        """The value of `key` in a set or map (True for a set member), or None."""
        assert name in self.sets, f"no set {name}"
        for held, value in self.sets[name]["elements"].items():
            if len(held) == len(key) and all(_field_matches(h, k) for h, k in zip(held, key)):
                return True if value is None else value
        if name in self.affinity and len(key) == 1 and netaddr.IPAddress(key[0]) in self.affinity[name]:
            return True
        return None

    def member(self, name: str, key: tuple) -> bool:
        return self._lookup(name, key) is not None


# -- parsing a rule ----------------------------------------------------------------------------


class _Rule:
    """A rule's text as a list of ops: ("match", fn), ("mark", "|" or "^", value),
    ("update",), ("verdict", kind, chain), ("masquerade",), ("vmap", expr,
    map name or inline {key: verdict}), ("dnat", expr or None, map name or
    (address, port))."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0
        self.ops = []
        while self.i < len(self.tokens):
            self.ops.append(self.statement())

    def fail(self, why: str = "") -> AssertionError:
        return AssertionError(f"tracer does not understand {why or self.peek()!r} in: {self.text}")

    def peek(self, ahead: int = 0) -> str:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else ""

    def take(self, *expected: str) -> str:
        token = self.peek()
        if expected and token not in expected:
            raise self.fail(f"{token} (expected {' or '.join(expected)})")
        if not token:
            raise self.fail("the end of the rule")
        self.i += 1
        return token

    def statement(self):
        t = self.peek()
        if t in ("jump", "goto"):
            self.take()
            return ("verdict", t, self.take())
        if t in ("return", "drop", "reject", "accept"):
            self.take()
            return ("verdict", t, "")
        if t == "masquerade":
            self.take()
            if self.peek() == "fully-random":
                self.take()
            return ("masquerade",)
        if t == "ct":
            return self.ct()
        if t == "fib":
            self.take()
            which = self.take("saddr", "daddr")
            self.take("type")
            self.take("local")
            return ("match", lambda tracer, p: (p.src if which == "saddr" else p.dst) in tracer.local)
        if t == "update":
            self.take()
            if not self.peek().startswith("@") or not self.peek(1).startswith("{"):
                raise self.fail()
            self.take()
            if self.take()[1:-1].strip() not in ("ip saddr", "ip6 saddr"):
                raise self.fail("update key")
            return ("update",)
        if t == "dnat":
            return self.dnat()
        if t == "meta" and self.peek(1) == "mark":
            return self.mark()
        return self.expression_statement()

    def ct(self):
        self.take("ct")
        what = self.take("state", "status", "mark")
        if what == "mark":
            return self.ct_mark()
        value = self.take()
        if what == "state" and value in ("new", "invalid"):
            new = value == "new"                    # the first packet of a new connection
            return ("match", lambda tracer, p: new)
        if what == "status" and value == "dnat":
            return ("match", lambda tracer, p: bool(p.dnat))
        raise self.fail(f"ct {what} {value}")

    def ct_mark(self):
        """`ct mark set ct mark | X`, or `ct mark & X == Y`."""
        if self.peek() == "&":
            self.take()
            mask = int(self.take(), 0)
            self.take("==")
            value = int(self.take(), 0)
            return ("match", lambda tracer, p: p.ctmark & mask == value)
        self.take("set")
        self.take("ct")
        self.take("mark")
        self.take("|")
        return ("ctmark", int(self.take(), 0))

    def mark(self):
        self.take("meta")
        self.take("mark")
        if self.peek() == "&":
            self.take()
            mask = int(self.take(), 0)
            self.take("==")
            value = int(self.take(), 0)
            return ("match", lambda tracer, p: p.mark & mask == value)
        self.take("set")
        if self.peek() != "meta":                       # `meta mark set <key> map @m`
            expr = self.expression()
            self.take("map")
            return ("markmap", expr, self.set_name())
        self.take("meta")
        self.take("mark")
        how = self.take("|", "^")
        return ("mark", how, int(self.take(), 0))

    def dnat(self):
        self.take("dnat")
        self.take("ip", "ip6")
        self.take("to")
        if not self.starts_selector_or_statement():     # a literal endpoint: 10.1.2.3:8080, [fd00::5]:8080
            text = self.take()
            host, _, port = text.rpartition(":")
            if not host or not port.isdigit():
                raise self.fail(text)
            return ("dnat", None, (host.strip("[]"), port))
        expr = self.expression()
        self.take("map")
        return ("dnat", expr, self.set_name())

    def starts_selector_or_statement(self) -> bool:
        """`tcp` is a value after `meta l4proto`, a selector before `dport`."""
        t = self.peek()
        return t in KEYWORDS and (t not in PROTOCOLS or self.peek(1) == "dport")

    def set_name(self) -> str:
        token = self.take()
        if not token.startswith("@"):
            raise self.fail(token)
        return token[1:]

    def expression_statement(self):
        """A selector (or a concatenation of them) and what is done with it:
        `vmap @map`, `vmap { ... }`, `@set`, `!= @set`, `value`, `!= value`."""
        expr = self.expression()
        t = self.peek()
        if t == "vmap":
            self.take()
            if self.peek().startswith("{"):
                return ("vmap", expr, _inline_map(self.take()[1:-1], self))
            return ("vmap", expr, self.set_name())
        negate = t == "!="
        if negate:
            self.take()
        if self.peek().startswith("@"):
            name = self.set_name()
            return ("match", lambda tracer, p: (key := _one(expr, p, self)) is not None
                    and tracer.member(name, key) != negate)
        if self.peek().startswith("{"):                 # an anonymous set: `ip saddr != { a, b }`
            items = [item.strip() for item in self.take()[1:-1].split(",")]
            return ("match", lambda tracer, p: (key := _one(expr, p, self)) is not None
                    and any(all(_field_matches(i, k) for k in key) for i in items) != negate)
        if not self.peek() or self.starts_selector_or_statement():
            raise self.fail(f"a bare expression before {self.peek() or 'the end'}")
        value = self.take()
        return ("match", lambda tracer, p: (key := _one(expr, p, self)) is not None
                and all(_field_matches(value, k) for k in key) != negate)

    def expression(self):
        """A concatenation of selectors: a function packet -> list of key
        tuples (several when numgen picks a slot)."""
        parts = [self.selector()]
        while self.peek() == ".":
            self.take()
            parts.append(self.selector())

        def keys(p: _Packet) -> list[tuple]:
            out = [()]
            for part in parts:
                out = [k + (v,) for k in out for v in part(p)]
            return out
        return keys

    def selector(self):
        t = self.take()
        if t in ("ip", "ip6"):
            which = self.take("saddr", "daddr")
            return lambda p: [str(p.src if which == "saddr" else p.dst)]
        if t == "meta":
            self.take("l4proto")
            return lambda p: [p.proto]
        if t == "th":
            self.take("dport")
            return lambda p: [str(p.dport)]
        if t in ("tcp", "udp", "sctp"):                 # implies `meta l4proto tcp`: no key for another protocol
            self.take("dport")
            return lambda p: [str(p.dport)] if p.proto == t else []
        if t == "numgen":
            self.take("random")
            self.take("mod")
            count = int(self.take())
            return lambda p: [str(i) for i in range(count)]
        raise self.fail(t)


def _tokens(text: str) -> list[str]:
    """Words, with each `{ ... }` group as one token (braces kept)."""
    out, words, i = [], text.split(), 0
    while i < len(words):
        if words[i] == "{":
            depth, j = 0, i
            while j < len(words):
                depth += words[j] == "{"
                depth -= words[j] == "}"
                if depth == 0:
                    break
                j += 1
            if depth:
                raise AssertionError(f"unbalanced braces in: {text}")
            out.append("{ " + " ".join(words[i + 1:j]) + " }")
            i = j + 1
        else:
            out.append(words[i])
            i += 1
    return out


def _inline_map(text: str, rule: _Rule) -> dict:
    """`0 : goto a, 1 : goto b` -> {("0",): "goto a", ...}."""
    out = {}
    for element in text.split(", "):
        key, sep, value = element.strip().partition(" : ")
        if not sep or (value.split()[0] not in ("goto", "jump") and value not in ("drop", "accept", "return")):
            raise rule.fail(element)
        out[tuple(key.split(" . "))] = value
    return out


def _inline(source: dict, key: tuple):
    return next((v for k, v in source.items() if len(k) == len(key) and all(map(_field_matches, k, key))), None)


def _one(expr, p: _Packet, rule: _Rule) -> tuple | None:
    """The one key a match compares (None when a protocol's selector meets
    another protocol: then no match, negated or not)."""
    keys = expr(p)
    if not keys:
        return None
    if len(keys) != 1:
        raise rule.fail("a random choice in a match")
    return keys[0]


def _verdict(value) -> tuple[str, str]:
    assert isinstance(value, str), f"not a verdict: {value}"
    words = value.split()
    assert words[0] in ("jump", "goto", "accept", "drop", "return"), f"tracer does not understand verdict {value}"
    return (words[0], words[1]) if len(words) == 2 else (words[0], "")


def _way(p: _Packet, verdict) -> tuple:
    return ("", verdict.upper(), False) if verdict in REFUSED else (p.dnat, "ACCEPT", p.masquerade)


def _looked_up(p: _Packet, source, key: tuple, value, ways: int) -> _Packet:
    """`p` after a lookup that found `value`: the element joins its trail,
    and one of `ways` equally likely keys (numgen's slots) splits its chance."""
    shown = value if isinstance(value, str) else " . ".join(map(str, value)) if isinstance(value, tuple) else ""
    where = f"@{source}" if isinstance(source, str) else "vmap"
    element = " . ".join(key) + (f" : {shown}" if shown else "")
    return replace(p, weight=p.weight / ways, trail=p.trail + (f"{where}: {element}",))


def _dnat(p: _Packet, value) -> _Packet:
    assert isinstance(value, tuple) and len(value) == 2, f"not an endpoint: {value}"
    host, port = netaddr.IPAddress(value[0]), int(value[1])
    text = f"{host}:{port}" if host.version == 4 else f"[{host}]:{port}"
    return replace(p, dst=host, dport=port, dnat=text)


def _field_matches(held: str, actual: str) -> bool:
    """One field of an element (or a rule's literal) against the packet's:
    a prefix holds the addresses inside it; addresses compare as addresses."""
    if held == actual:
        return True
    try:
        if "/" in held:
            return netaddr.IPAddress(actual) in netaddr.IPNetwork(held)
        return netaddr.IPAddress(held) == netaddr.IPAddress(actual)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return False
