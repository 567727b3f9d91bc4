"""The iptables tracer (netplane/testing/iptables_trace.py), each way
through also carrying its chance and the rules it crossed, as the other
modes' tracers do (Verdict.branches).

It subclasses the suite's Tracer and keeps its matches, its filter hooks
and its chain walk; the three methods that start, split and copy a packet
are redone here, because the base copies into its own packet class, which
has no room for a chance or a trail. (Two fields on iptables_trace._Packet
and a few lines there would make this module a dozen lines.)
"""
import re
from dataclasses import dataclass, replace

import netaddr

from netplane.testing.iptables_trace import Tracer, _Packet
from netplane.testing.verdict import Branch, Verdict

REFUSED = ("DROP", "REJECT")


@dataclass
class _Way(_Packet):
    weight: float = 1.0         # the chance of this way (statistic matches split it)
    trail: tuple = ()           # "table chain: rule" for every rule it matched, in order


class WeighingTracer(Tracer):
    def __init__(self, tables, local_addresses, recent=()) -> None:
        super().__init__(tables, local_addresses, recent)
        self.texts = tables

    def trace(self, src: str, proto: str, dst: str, port: int) -> Verdict:
        """As the base's trace(), keeping every way as a Branch."""
        src_ip = netaddr.IPAddress(src)
        from_node = src_ip in self.local
        start = _Way(src_ip, netaddr.IPAddress(dst), proto.lower(), port, recent=self.recent)
        ways = []
        for p, verdict in self._walk("nat", "OUTPUT" if from_node else "PREROUTING", start):
            if verdict in REFUSED:
                ways.append(Branch("", verdict, False, p.weight, p.trail))
                continue
            local = p.dst in self.local
            hooks = (["OUTPUT"] + (["INPUT"] if local else [])) if from_node else (["INPUT"] if local else ["FORWARD"])
            for q, filter_verdict in self._filter(hooks, p):
                if filter_verdict in REFUSED:
                    ways.append(Branch("", filter_verdict, False, q.weight, q.trail))
                    continue
                for r, _ in self._walk("nat", "POSTROUTING", q):
                    ways.append(Branch(r.dnat, "ACCEPT", r.masquerade, r.weight, r.trail))
        verdicts = {w.verdict for w in ways}
        assert len(verdicts) == 1, f"branches disagree on the verdict: {ways}"
        return Verdict(frozenset(w.endpoint for w in ways if w.endpoint), verdicts.pop(),
                       all(w.masquerade for w in ways), frozenset(w.endpoint for w in ways if w.masquerade),
                       tuple(ways))

    def _rules(self, table, rules, i, p):
        if i == len(rules):
            yield p, None
            return
        words = rules[i]
        matched = self._matches(words, p)
        if matched == "maybe":                         # a random choice: both ways, each with its chance
            chance = float(words[words.index("--probability") + 1])
            yield from self._target(table, rules, i, words, self._step(p, table, words, chance))
            yield from self._rules(table, rules, i + 1, replace(p, weight=p.weight * (1 - chance)))
        elif matched:
            yield from self._target(table, rules, i, words, self._step(p, table, words))
        else:
            yield from self._rules(table, rules, i + 1, p)

    def _step(self, p: _Way, table: str, words: list[str], chance: float = 1.0) -> _Way:
        chain = words[1]
        text = self.texts[table][chain][self.tables[table][chain].index(words)]
        return replace(p, weight=p.weight * chance, trail=p.trail + (f"{table} {chain}: {text}",))

    def _target(self, table, rules, i, words, p):
        """The base's targets, copying a _Way where the base makes a plain packet."""
        target = words[words.index("-j") + 1] if "-j" in words else ""
        q = replace(p)
        if target in ("ACCEPT", "DROP", "REJECT"):
            yield q, target
        elif target == "RETURN":
            yield q, None
        elif target == "MARK":
            arg, value = words[words.index("-j") + 2], int(words[words.index("-j") + 3], 16)
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


COMMENT = re.compile(r'--comment "?([a-z0-9][-a-z0-9.]*/[a-z0-9][-a-z0-9.]*(?::[-a-z0-9.]+)?)( [A-Za-z ]+)?')
FRONTENDS = ("cluster IP", "node port", "external IP", "load balancer IP")


def service_in(steps) -> tuple[str, str]:
    """(namespace/name:port, its frontend or "") that a rule's comment names,
    the first on the way and the most precise; ("", "") if none."""
    named = ""
    for step in steps:
        found = COMMENT.search(step)
        if found:
            kind = next((f for f in FRONTENDS if (found.group(2) or "").strip().startswith(f)), "")
            if kind:
                return found.group(1), kind
            named = named or found.group(1)
    return named, ""
