"""The maps as a lookup would see them: what the tests compare, and what a
map-level tracer walks. Ids are resolved away, so two plans that give
every Service the same backends look the same whatever ids they chose."""
from netplane.proxy.ebpf import entries as e


def resolved(services: dict[bytes, bytes], backends: dict[bytes, bytes]) -> dict:
    """master key -> (count, flags, affinity, (endpoint text per slot...))."""
    out = {}
    for key, value in services.items():
        addr, port, proto, scope, slot = e.parse_key(key)
        if slot:
            continue
        count, flags, affinity, _ = e.parse_value(value)
        eps = []
        for i in range(1, count + 1):
            held = services[e.service_key(addr, port, proto, scope, i)]
            ep_addr, ep_port, _ = e.parse_backend(backends[e.parse_value(held)[0].to_bytes(4, "little")])
            eps.append(f"{e.text(ep_addr)}:{ep_port}")
        out[(e.text(addr), port, proto, scope)] = (count, flags, affinity, tuple(eps))
    return out


def consistent(services: dict[bytes, bytes], backends: dict[bytes, bytes]) -> str | None:
    """What a lookup could trip on: a master counting a missing slot, or a
    slot naming a missing backend (None when there is nothing)."""
    for key, value in services.items():
        addr, port, proto, scope, slot = e.parse_key(key)
        if slot:
            backend = e.parse_value(value)[0].to_bytes(4, "little")
            if backend not in backends:
                return f"slot {slot} of {e.text(addr)}:{port} names missing backend {e.parse_value(value)[0]}"
            continue
        for i in range(1, e.parse_value(value)[0] + 1):
            if e.service_key(addr, port, proto, scope, i) not in services:
                return f"{e.text(addr)}:{port} counts missing slot {i}"
    return None
