# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of elements_text() and keys_text() in
netplane/proxy/nftables/render.py: the same strings, built in one C buffer
instead of a str per part, per key and per element.

It mirrors the pure code's rules exactly: keys and non-verdict values are
iterated (whatever the iterable) and each part rendered as str(part); a
value is a verdict only when type(value) is str, so a str subclass is
iterated into its characters there too. Exact str and int parts (ints
within a C long) are written directly; anything else goes through str().
Text UTF-8 cannot hold (lone surrogates) makes a call fall back to the
same joins in Python, since the buffer could not give it back unchanged.
"""
from textbuf cimport Buf, buf_free, buf_init, put, put_i, put_s, take

cdef extern from "Python.h":
    long PyLong_AsLongAndOverflow(object, int*) except? -1

cdef extern from "limits.h":
    const long LONG_MIN


def elements_text(items):
    """`k : v, k : v` for (key, value) pairs (`k, k` where the value is None)."""
    if type(items) is not list and type(items) is not tuple:
        items = list(items)     # a second pass may be needed (below)
    cdef Buf b
    cdef bint first = True
    buf_init(&b, 1 << 16)
    try:
        for key, value in items:
            if not first:
                put(&b, ", ", 2)
            first = False
            _put_parts(&b, key)
            if value is None:
                continue
            put(&b, " : ", 3)
            if type(value) is str:
                put_s(&b, <str> value)
            else:
                _put_parts(&b, value)
        return take(&b)
    except UnicodeEncodeError:
        return _pure_elements(items)
    finally:
        buf_free(&b)


def keys_text(keys):
    """`k, k`, each key's parts joined with " . "."""
    if type(keys) is not list and type(keys) is not tuple:
        keys = list(keys)
    cdef Buf b
    cdef bint first = True
    buf_init(&b, 1 << 16)
    try:
        for key in keys:
            if not first:
                put(&b, ", ", 2)
            first = False
            _put_parts(&b, key)
        return take(&b)
    except UnicodeEncodeError:
        return _pure_keys(keys)
    finally:
        buf_free(&b)


cdef int _put_parts(Buf* b, object parts) except -1:
    """" . ".join(map(str, parts)) into b."""
    cdef bint first = True
    cdef int overflow
    cdef long v
    for p in parts:
        if not first:
            put(b, " . ", 3)
        first = False
        if type(p) is str:
            put_s(b, <str> p)
        elif type(p) is int:
            v = PyLong_AsLongAndOverflow(p, &overflow)
            if overflow or v == LONG_MIN:       # put_i cannot negate LONG_MIN
                put_s(b, str(p))
            else:
                put_i(b, v)
        else:                                   # bool, int/str subclasses, anything: as the pure code
            put_s(b, str(p))
    return 0


# render.py's own code, for the text the buffer cannot carry

def _pure_elements(items):
    return ", ".join(_element(key, value) for key, value in items)


def _pure_keys(keys):
    return ", ".join(" . ".join(map(str, key)) for key in keys)


def _element(key, value):
    text = " . ".join(map(str, key))
    if value is None:
        return text
    if type(value) is str:
        return f"{text} : {value}"
    return f"{text} : {' . '.join(map(str, value))}"
