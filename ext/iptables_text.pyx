# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of netplane/proxy/iptables/text.py: the same strings,
built in C buffers instead of hundreds of thousands of small ones."""
from textbuf cimport (Buf, PyUnicode_DATA, PyUnicode_IS_ASCII, PyUnicode_New, buf_free, buf_init, buf_reset,
                     put_c, put_s, take)

DEF SHARES = 5


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


def add_chains(dict nat, list fragments):
    cdef tuple pair
    for f in fragments:
        for pair in <tuple> (<tuple> f)[SHARES]:
            nat[pair[0]] = pair[1]


def render(dict tables, dict written, dict deleted):
    cdef Py_ssize_t size = 0
    cdef bint ascii = True
    cdef tuple used = tuple([t for t in ("filter", "nat") if written[t] or deleted[t]])
    # Measure first: ASCII text (the rule), of a known size, is written
    # straight into the result, with no second copy of tens of megabytes.
    for table in used:
        size += len(<str> table) + 9                        # "*table\n", "COMMIT\n"
        for name in written[table]:
            rules = tables[table][name]
            size += len(<str> name) + 10 + len(<str> rules)  # ":name - [0:0]\n", its rules
            ascii = ascii and PyUnicode_IS_ASCII(name) and PyUnicode_IS_ASCII(rules)
        for name in deleted[table]:
            size += 2 * len(<str> name) + 14                # ":name - [0:0]\n", "-X name\n"
            ascii = ascii and PyUnicode_IS_ASCII(name)
    cdef Buf b
    cdef object out = None
    if ascii:
        out = PyUnicode_New(size, 127)
        b.data, b.size, b.cap, b.ascii, b.fixed = <char*> PyUnicode_DATA(out), 0, size, True, True
        _write(&b, used, tables, written, deleted)
        assert b.size == size and b.data == <char*> PyUnicode_DATA(out)
        return out
    buf_init(&b, size + 1)
    try:
        _write(&b, used, tables, written, deleted)
        return take(&b)
    finally:
        buf_free(&b)


cdef int _write(Buf* b, tuple used, dict tables, dict written, dict deleted) except -1:
    """used: the tables with something to write or delete."""
    cdef dict chains
    for table in used:
        chains = tables.get(table)
        put_c(b, "*")
        put_s(b, table)
        put_c(b, "\n")
        for names in (written[table], deleted[table]):
            for name in names:
                put_c(b, ":")
                put_s(b, name)
                put_c(b, " - [0:0]\n")
        for name in written[table]:
            put_s(b, chains[name])
        for name in deleted[table]:
            put_c(b, "-X ")
            put_s(b, name)
            put_c(b, "\n")
        put_c(b, "COMMIT\n")
    return 0
