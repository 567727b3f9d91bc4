"""What every proxy mode supplies so that one semantic suite checks them all.

A harness programs a mode's fake kernel from policies, through the mode's
real compile and applier, and hands back a tracer per family:

    programmed = HARNESSES["iptables/compact"]().program(settings, policies)
    programmed.trace(src, proto, dst, port, affinity_to=None) -> Verdict

A Verdict (verdict.py) says which endpoints a new connection's first
packet may reach, or whether it is rejected or dropped, and whether it is
masqueraded. `affinity_to` asks for a client the mode remembers as last
sent to that endpoint (ClientIP affinity). `programmed.kernel[family]` is
the mode's fake kernel, for the few checks that are about one mode's own
objects. tests/unit/test_proxy_semantics.py is the suite; a new mode joins
it by registering its harness here.
"""
from netplane.testing.verdict import Verdict

HARNESSES = {}


def harness(name: str):
    def add(factory):
        HARNESSES[name] = factory
        return factory
    return add


def names() -> list[str]:
    _load()
    return sorted(HARNESSES)


def get(name: str):
    _load()
    return HARNESSES[name]()


def _load() -> None:
    import netplane.testing.iptables  # noqa: F401  (registers the iptables harnesses)
    import netplane.testing.nftables  # noqa: F401  (registers the nftables harness)
    import netplane.testing.ebpf  # noqa: F401  (registers the eBPF harness)
    import netplane.testing.ipvs  # noqa: F401  (registers the IPVS harness)


__all__ = ["Verdict", "HARNESSES", "harness", "names", "get"]
