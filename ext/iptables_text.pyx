# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of netplane/proxy/iptables/text.py: the same strings,
the top-level chains built in a C buffer, the transaction's list of pieces
without running Python per port."""
from textbuf cimport Buf, buf_free, buf_init, buf_reset, put_s, take

DEF SHARES = 5
DEF DECLARATIONS = 5      # PortRules' fields after the shares
DEF RULES = 6


def top_level(list fragments):
    cdef Buf b
    cdef list out = []
    cdef Py_ssize_t i
    buf_init(&b, 1 << 20)
    try:
        for i in range(SHARES):
            buf_reset(&b)
            for f in fragments:
                put_s(&b, <str> (<tuple> f)[i])
            out.append(take(&b))
    finally:
        buf_free(&b)
    return tuple(out)


def transaction(dict tables, list ports, dict deleted, dict edits=None):
    cdef list out = []
    cdef dict chains
    cdef list gone, own, changes
    for table in ("filter", "nat"):
        chains, gone = tables.get(table, {}), deleted.get(table, [])
        own = ports if table == "nat" else []
        changes = edits.get(table, []) if edits else []
        if not chains and not gone and not changes and not _declares(own):
            continue
        out.append(f"*{table}\n")
        for name in chains:
            out.append(_declaration(name))
        for f in own:
            out.append((<tuple> f)[DECLARATIONS])
        for name in gone:
            out.append(_declaration(name))
        out.extend(chains.values())
        for f in own:
            out.append((<tuple> f)[RULES])
        out.extend(changes)
        for name in gone:
            out.append(f"-X {name}\n")
        out.append("COMMIT\n")
    return out


cdef bint _declares(list ports) except -1:
    for f in ports:
        if (<tuple> f)[DECLARATIONS]:
            return True
    return False


cdef str _declaration(str name):
    return f":{name} - [0:0]\n"
