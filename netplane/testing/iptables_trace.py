"""A packet tracer over iptables rules (as FakeIptables holds them).

Given (source, protocol, destination, port) it walks the chains a new
connection's first packet crosses (nat PREROUTING or OUTPUT, routing, filter
INPUT/FORWARD/OUTPUT, nat POSTROUTING) and reports every endpoint it can be
DNATed to (random choices are followed both ways), whether it is accepted,
rejected or dropped, and whether it is masqueraded. It understands the
matches and targets netplane's rules use, and fails loudly on any other, so
a new rule shape cannot be silently misread.

Every way through is also kept as a Branch, with its chance (the product of
the `--probability` of the random choices it took, and of 1 - p of those it
passed over) and the rules it matched, for `netplane explain`.
"""
import shlex
from dataclasses import dataclass, replace

import netaddr

from netplane.testing.verdict import Branch
from netplane.testing.verdict import Verdict as Trace

REFUSED = ("DROP", "REJECT")


@dataclass
class _Packet:
    src: netaddr.IPAddress
    dst: netaddr.IPAddress
    proto: str
    dport: int
    mark: int = 0
    dnat: str = ""
    recent: frozenset = frozenset()      # recent lists that hold this source (affinity)
    masquerade: bool = False
    weight: float = 1.0                  # the chance of this way (random choices split it)
    trail: tuple = ()                    # "table chain: rule" for every rule it matched, in order


class Tracer:
    def __init__(self, tables: dict[str, dict[str, list[str]]], local_addresses, recent=()) -> None:
        self.texts = tables                                     # the rules as written, for the trail
        self.tables = {t: {n: [shlex.split(r) for r in rules] for n, rules in chains.items()}
                       for t, chains in tables.items()}
        self.local = {netaddr.IPAddress(a) for a in local_addresses}
        self.recent = frozenset(recent)

    def trace(self, src: str, proto: str, dst: str, port: int) -> Trace:
        ways = self._ways(src, proto, dst, port)
        verdicts = {w.verdict for w in ways}
        assert len(verdicts) == 1, f"branches disagree on the verdict: {ways}"
        return Trace(frozenset(w.endpoint for w in ways if w.endpoint), verdicts.pop(),
                     all(w.masquerade for w in ways), frozenset(w.endpoint for w in ways if w.masquerade),
                     tuple(ways))

    def _ways(self, src: str, proto: str, dst: str, port: int) -> list[Branch]:
        """Every way the first packet may go, through nat, filter and nat again."""
        src_ip = netaddr.IPAddress(src)
        from_node = src_ip in self.local
        start = _Packet(src_ip, netaddr.IPAddress(dst), proto.lower(), port, recent=self.recent)
        ways = []
        for p, verdict in self._walk("nat", "OUTPUT" if from_node else "PREROUTING", start):
            if verdict in REFUSED:
                ways.append(Branch("", verdict, False, p.weight, p.trail))
                continue
            # the node's own packets cross OUTPUT, and INPUT too when addressed to the node
            local = p.dst in self.local
            hooks = (["OUTPUT"] + (["INPUT"] if local else [])) if from_node else (["INPUT"] if local else ["FORWARD"])
            for q, filter_verdict in self._filter(hooks, p):
                if filter_verdict in REFUSED:
                    ways.append(Branch("", filter_verdict, False, q.weight, q.trail))
                    continue
                for r, _ in self._walk("nat", "POSTROUTING", q):
                    ways.append(Branch(r.dnat, "ACCEPT", r.masquerade, r.weight, r.trail))
        return ways

    def _filter(self, hooks: list[str], p: _Packet):
        """The filter table's built-in chains in turn; a DROP or REJECT ends the way."""
        if not hooks:
            yield p, None
            return
        for q, verdict in self._walk("filter", hooks[0], p):
            if verdict in REFUSED:
                yield q, verdict
            else:
                yield from self._filter(hooks[1:], q)

    def _walk(self, table: str, chain: str, p: _Packet):
        """Yield (packet, verdict) for every way through `chain`; verdict
        None means it fell off the end (RETURN to the caller)."""
        yield from self._rules(table, self.tables[table].get(chain, []), 0, p)

    def _rules(self, table, rules, i, p):
        if i == len(rules):
            yield p, None
            return
        words = rules[i]
        matched = self._matches(words, p)
        if matched == "maybe":                         # a random choice: follow both ways, each with its chance
            chance = float(words[words.index("--probability") + 1])
            yield from self._target(table, rules, i, words, self._step(p, table, i, words, chance))
            yield from self._rules(table, rules, i + 1, replace(p, weight=p.weight * (1 - chance)))
        elif matched:
            yield from self._target(table, rules, i, words, self._step(p, table, i, words))
        else:
            yield from self._rules(table, rules, i + 1, p)

    def _step(self, p: _Packet, table: str, i: int, words: list[str], chance: float = 1.0) -> _Packet:
        """The packet past rule i (of the chain `-A CHAIN` names): its chance and trail."""
        chain = words[1]
        step = f"{table} {chain}: {self.texts[table][chain][i]}"
        return replace(p, weight=p.weight * chance, trail=p.trail + (step,))

    def _target(self, table, rules, i, words, p):
        target = words[words.index("-j") + 1] if "-j" in words else ""
        q = replace(p)
        if target in ("ACCEPT", "DROP", "REJECT"):
            yield q, target
        elif target == "RETURN":
            yield q, None
        elif target == "MARK":
            arg = words[words.index("-j") + 2]
            value = int(words[words.index("-j") + 3], 16)
            q.mark = q.mark | value if arg == "--or-mark" else q.mark ^ value
            yield from self._rules(table, rules, i + 1, q)
        elif target == "MASQUERADE":
            q.masquerade = True
            yield q, "ACCEPT"
        elif target == "DNAT":
            q.dnat = words[words.index("--to-destination") + 1]
            host, port = q.dnat.rsplit(":", 1)
            q.dst, q.dport = netaddr.IPAddress(host.strip("[]")), int(port)
            yield q, "ACCEPT"
        elif target:
            for r, verdict in self._walk(table, target, q):
                if verdict is None:
                    yield from self._rules(table, rules, i + 1, r)
                else:
                    yield r, verdict
        else:
            yield from self._rules(table, rules, i + 1, q)

    def _matches(self, words, p: _Packet):
        result, k, negate = True, 2, False
        while k < len(words) and words[k] != "-j":
            w = words[k]
            if w == "!":
                negate, k = True, k + 1
                continue
            ok, k = self._match(words, k, p)
            if ok == "maybe":
                result = "maybe" if result is True else result
            elif bool(ok) == negate:
                return False
            negate = False
        return result

    def _match(self, words, k, p: _Packet):
        w = words[k]
        if w in ("-d", "-s"):
            net = netaddr.IPNetwork(words[k + 1])
            return (p.dst if w == "-d" else p.src) in net, k + 2
        if w == "-p":
            return p.proto == words[k + 1], k + 2
        if w == "--dport":
            return p.dport == int(words[k + 1]), k + 2
        if w == "-m":
            return self._module(words, k + 1, p)
        raise AssertionError(f"tracer does not understand {w!r} in {' '.join(words)}")

    def _module(self, words, k, p: _Packet):
        module = words[k]
        if module in ("tcp", "udp", "sctp", "comment"):
            return True, k + 1 if module != "comment" else k + 3
        if module == "addrtype":
            which = p.dst if words[k + 1] == "--dst-type" else p.src
            assert words[k + 2] == "LOCAL"
            return which in self.local, k + 3
        if module == "statistic":
            return "maybe", k + 5
        if module == "conntrack":     # a new connection's first packet: NEW, and DNAT once translated
            negated = words[k + 1] == "!"
            states = {"NEW", "DNAT"} if p.dnat else {"NEW"}
            return bool(states & set(words[k + 2 + negated].split(","))) != negated, k + 3 + negated
        if module == "mark":
            negated = words[k + 1] == "!"
            value, mask = (int(x, 16) for x in words[k + 2 + negated].split("/"))
            return (p.mark & mask == value) != negated, k + 3 + negated
        if module == "recent":
            end = words.index("-j", k)
            name = words[words.index("--name", k) + 1]
            if "--set" in words[k:end]:
                return True, end
            return name in p.recent, end
        raise AssertionError(f"tracer does not understand -m {module} in {' '.join(words)}")
