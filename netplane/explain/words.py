"""An Explanation in words an operator reads."""
from netplane.explain.explanation import Explanation

VERDICT = {"reject": "REJECTED: the client gets a refusal at once (ICMP port unreachable, or a TCP reset)",
           "drop": "DROPPED: nothing answers, the client times out",
           "untouched": "passes untouched (the proxy does not translate it)"}
LISTED = 4          # Service ports named on a missed address; the rest are counted


def render(x: Explanation) -> str:
    lines = [f"packet     {x.packet} (the first packet of a new connection)",
             f"proxy      {x.mode} mode, {x.source}"]
    if x.outcome != "untouched":
        lines.append(f"service    {_service(x)}")
        lines += _served(x)
    lines += _verdict(x)
    if x.outcome == "endpoint":
        lines += _masquerade(x)
    decided = x.decided_by()
    if decided and x.outcome != "untouched":
        lines.append("decided by")
        lines += [f"  {step}" for step in decided]
    return "\n".join(lines) + "\n"


def _service(x: Explanation) -> str:
    if x.frontend is None and x.names_known:
        return f"none: {_missed(x)}"
    if x.frontend is None or not x.frontend.service:
        return f"not named (the {x.mode} mode's kernel state holds addresses, not names; see 'decided by')"
    return x.frontend.service + (f" ({x.frontend.kind})" if x.frontend.kind else "")


def _missed(x: Explanation) -> str:
    """No Service port is at the packet's address, port and protocol ("not a
    Service address" only when the Services were read and none has it)."""
    p = x.packet
    if x.names_known and not x.on_address:
        return "not a Service address"
    return f"no Service port matches {'[' + p.dst + ']' if p.family == 6 else p.dst}:{p.port}/{p.proto}"


def _served(x: Explanation) -> list[str]:
    """What the address serves instead, when known."""
    if not x.on_address:
        return []
    more = len(x.on_address) - LISTED
    return [f"           {x.packet.dst} serves {', '.join(x.on_address[:LISTED])}"
            + (f" and {more} more" if more > 0 else "")]


def _verdict(x: Explanation) -> list[str]:
    if x.outcome == "untouched":
        return [f"verdict    {_missed(x)}: {VERDICT[x.outcome]}"] + _served(x)
    if x.outcome != "endpoint":
        return [f"verdict    {VERDICT[x.outcome]}"]
    weights = x.weights()
    out = [f"verdict    sent to {'one of ' if len(weights) > 1 else ''}{len(weights)} endpoint(s); "
           "a new connection's chance of each:"]
    width = max(len(ep) for ep in weights)
    for ep, w in weights.items():
        masq = "  masqueraded" if ep in x.verdict.masqueraded_to and not x.verdict.masquerade else ""
        out.append(f"  {ep:<{width}}  {w * 100:5.1f}%{masq}")
        out += [f"      then {step}" for step in x.after_choice(ep)]
    return out


def _masquerade(x: Explanation) -> list[str]:
    v = x.verdict
    inside = x.source_in_cluster()
    if v.masquerade:
        why = "the endpoint sees the node's address, not the client's"
        out = [f"masquerade yes (SNAT): {why}; because of"]
        return out + [f"  {step}" for step in x.masquerade_reasons()]
    if v.masqueraded_to:
        return ["masquerade only on the ways marked 'masqueraded' above (SNAT there: that endpoint sees the "
                "node's address); because of"] + [f"  {step}" for step in x.masquerade_reasons()]
    where = ""
    if inside is True:
        where = f": its source is inside the cluster CIDR {x.cluster_cidr}"
    elif inside is False:
        where = f" (its source is outside the cluster CIDR {x.cluster_cidr}, but no rule on its way marks it)"
    return [f"masquerade no: the endpoint sees the client's own address{where}"]
