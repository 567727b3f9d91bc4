"""What a mode's tracer says about a new connection's first packet."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Branch:
    """One way the first packet may go, as `netplane explain` shows it."""
    endpoint: str               # "ip:port" it is DNATed to; "" when refused or untouched
    verdict: str                # ACCEPT, REJECT or DROP
    masquerade: bool
    weight: float = 1.0         # the chance a new connection takes this way
    steps: tuple = ()           # the rules, chains and map entries it crossed, in order (text)


@dataclass(frozen=True)
class Verdict:
    endpoints: frozenset        # "ip:port" (or "[ip]:port") it may be sent to
    verdict: str                # ACCEPT, REJECT or DROP
    masquerade: bool            # on every way through
    masqueraded_to: frozenset = frozenset()   # the endpoints reached masqueraded (hairpin differs per endpoint)
    # every way through, with its chance and what it crossed: for `netplane explain`;
    # not compared, so the semantic suite's checks stay what they were
    branches: tuple = field(default=(), compare=False)


def weights(verdict: Verdict) -> dict[str, float]:
    """endpoint -> the chance a new connection goes to it (summed over the
    ways that reach it)."""
    out: dict[str, float] = {}
    for branch in verdict.branches:
        if branch.endpoint:
            out[branch.endpoint] = out.get(branch.endpoint, 0.0) + branch.weight
    return out
