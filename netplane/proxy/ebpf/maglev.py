"""Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and Reliable
Software Network Load Balancer", NSDI 2016, section 3.4), as Cilium uses
them: a Service's packets from outside the node pick a backend by
table[hash(flow) % M], so every packet of a flow lands on one backend, and
that stays so when another node takes the flow over, or when one backend of
N comes or goes (only about 1/N of the slots change hands).

The table is a pure function of the backends' names, M and a seed: every
node with the same seed builds the same bytes, whatever order its caller
lists the backends in. ext/maglev.pyx builds the same bytes, faster
(netplane.fastpath).
"""
import hashlib
import struct

# The sizes the datapath supports, all prime (so every skip walks all M slots);
# a size's index here is the size class the BPF program switches on.
SIZES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521)
DEFAULT_SIZE = 16381
# Maglev's paper keeps M >= 100 N: each backend's share of slots within 1%
# (round-robin gives ±1 slot). A larger M also moves fewer of the other
# backends' slots when one comes or goes (tests/unit/test_maglev.py).
SLOTS_PER_BACKEND = 100
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF


def table_size(backends: int, largest: int = DEFAULT_SIZE, compact: bool = False) -> int:
    """M for a Service of `backends` backends. Fixed (the default): `largest`,
    so a table's size never changes as the Service scales. Compact: the
    smallest size of at least SLOTS_PER_BACKEND slots a backend, at most
    `largest` (memory for the many small Services, at the cost of a new
    table size, so more slots moving, when one grows past a size)."""
    size_class(largest)                        # ValueError unless a supported size
    if not compact:
        return largest
    return next((m for m in SIZES if m >= SLOTS_PER_BACKEND * backends and m <= largest), largest)


def size_class(m: int) -> int:
    """M's index in SIZES: the BPF program's size class."""
    if m not in SIZES:
        raise ValueError(f"a Maglev table has one of the sizes {', '.join(map(str, SIZES))}, not {m!r}")
    return SIZES.index(m)


def name(addr: bytes, port: int) -> bytes:
    """A backend's name, what its place in every table derives from: the 16-byte
    address (IPv4 as ::ffff:a.b.c.d, entries.address()) and the port, big-endian."""
    if len(addr) != 16:
        raise ValueError(f"a backend's address is 16 bytes, not {len(addr)}")
    return bytes(addr) + port.to_bytes(2, "big")


def permutation(name: bytes, m: int, seed: int) -> tuple[int, int]:
    """(offset, skip): the backend's preferred slots are offset, offset + skip,
    offset + 2 skip, ... (mod m). One keyed hash gives both (Maglev's paper
    uses two hash functions; the halves of one 128-bit digest serve as two);
    keyed with the seed, so a cluster can choose its own tables."""
    digest = hashlib.blake2b(name, digest_size=16, key=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(digest[:8], "little") % m, int.from_bytes(digest[8:], "little") % (m - 1) + 1


def backends(names: list[bytes], ids: list[int], m: int, seed: int) -> list[tuple[bytes, int]]:
    """The (name, id) pairs in the order they take turns, sorted by name (so the
    caller's order does not matter), after the checks both twins share: at
    least one backend and at most m (each gets a slot), as many ids as names,
    distinct bytes names, ids and seed in u32 and u64, m in SIZES."""
    size_class(m)
    if len(names) != len(ids):
        raise ValueError(f"{len(names)} backend names but {len(ids)} ids")
    if not 0 < len(names) <= m:
        raise ValueError(f"a table of {m} slots holds 1 to {m} backends, not {len(names)}")
    if not all(isinstance(n, bytes) for n in names):
        raise ValueError("a backend's name is bytes")
    if not all(isinstance(i, int) and 0 <= i <= U32 for i in ids):
        raise ValueError("a backend id is an integer in 0..2**32-1")
    if not isinstance(seed, int) or not 0 <= seed <= U64:
        raise ValueError("the seed is an integer in 0..2**64-1")
    pairs = sorted(zip(names, ids), key=lambda pair: pair[0])
    if any(a[0] == b[0] for a, b in zip(pairs, pairs[1:])):
        raise ValueError("two backends have the same name")
    return pairs


def table(names: list[bytes], ids: list[int], m: int, seed: int) -> bytes:
    """The lookup table: m native u32 (struct "=I"), slot j holding the id of
    the backend that owns it. Maglev's populate: the backends take turns,
    each claiming its most preferred slot not yet taken, until all m are;
    so each owns m // N or m // N + 1 slots. Invalid input raises ValueError
    (backends())."""
    pairs = backends(names, ids, m, seed)
    slots = [-1] * m                           # ids are >= 0: -1 is a free slot
    walks = [[*permutation(n, m, seed), i] for n, i in pairs]    # [next slot to try, skip, id]
    filled = 0
    while True:
        for walk in walks:
            c, skip, backend_id = walk
            while slots[c] >= 0:
                c += skip
                if c >= m:
                    c -= m
            slots[c] = backend_id
            c += skip
            walk[0] = c - m if c >= m else c
            filled += 1
            if filled == m:
                return struct.pack(f"={m}I", *slots)
