"""What a mode's tracer says about a new connection's first packet."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    endpoints: frozenset        # "ip:port" (or "[ip]:port") it may be sent to
    verdict: str                # ACCEPT, REJECT or DROP
    masquerade: bool            # on every way through
    masqueraded_to: frozenset = frozenset()   # the endpoints reached masqueraded (hairpin differs per endpoint)
