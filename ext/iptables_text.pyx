# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of netplane/proxy/iptables/text.py: the same strings,
built in C buffers: the transaction is measured, then written once into
its str."""
from textbuf cimport (Buf, PyUnicode_DATA, PyUnicode_IS_ASCII, PyUnicode_New, buf_free, buf_init, buf_reset,
                     put_c, put_s, take)

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


def transaction(dict tables, list ports, dict deleted):
    cdef Py_ssize_t size = 0
    cdef bint ascii = True
    cdef list used = []
    cdef dict chains
    cdef list gone, own
    # Measure first: ASCII text (the rule), of a known size, is written
    # straight into the result, with no second copy of tens of megabytes.
    for table in ("filter", "nat"):
        chains, gone = tables.get(table) or {}, deleted.get(table) or []
        own = ports if table == "nat" else []
        if not chains and not gone and not any([(<tuple> f)[DECLARATIONS] for f in own]):
            continue
        used.append((table, chains, own, gone))
        size += len(<str> table) + 9                        # "*table\n", "COMMIT\n"
        for name, rules in chains.items():
            size += len(<str> name) + 10 + len(<str> rules)  # ":name - [0:0]\n", its rules
            ascii = ascii and PyUnicode_IS_ASCII(name) and PyUnicode_IS_ASCII(rules)
        for f in own:
            size += len(<str> (<tuple> f)[DECLARATIONS]) + len(<str> (<tuple> f)[RULES])
            ascii = ascii and PyUnicode_IS_ASCII((<tuple> f)[DECLARATIONS]) and PyUnicode_IS_ASCII((<tuple> f)[RULES])
        for name in gone:
            size += 2 * len(<str> name) + 14                # ":name - [0:0]\n", "-X name\n"
            ascii = ascii and PyUnicode_IS_ASCII(name)
    cdef Buf b
    cdef object out = None
    if ascii:
        out = PyUnicode_New(size, 127)
        b.data, b.size, b.cap, b.ascii, b.fixed = <char*> PyUnicode_DATA(out), 0, size, True, True
        _write(&b, used)
        assert b.size == size and b.data == <char*> PyUnicode_DATA(out)
        return out
    buf_init(&b, size + 1)
    try:
        _write(&b, used)
        return take(&b)
    finally:
        buf_free(&b)


cdef int _write(Buf* b, list used) except -1:
    """used: (table, chains, ports, deleted) for each table with something to do."""
    cdef dict chains
    cdef list own, gone
    for table, chains, own, gone in used:
        put_c(b, "*")
        put_s(b, table)
        put_c(b, "\n")
        for name in chains:
            _declare(b, name)
        for f in own:
            put_s(b, (<tuple> f)[DECLARATIONS])
        for name in gone:
            _declare(b, name)
        for rules in chains.values():
            put_s(b, rules)
        for f in own:
            put_s(b, (<tuple> f)[RULES])
        for name in gone:
            put_c(b, "-X ")
            put_s(b, name)
            put_c(b, "\n")
        put_c(b, "COMMIT\n")
    return 0


cdef inline int _declare(Buf* b, str name) except -1:
    put_c(b, ":")
    put_s(b, name)
    put_c(b, " - [0:0]\n")
    return 0
