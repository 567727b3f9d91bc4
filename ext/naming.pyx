# cython: language_level=3
"""Compiled twin of netplane/naming.py; see that module for the why.
Output must match netplane.naming exactly."""
from chainhash cimport Hasher, hasher_init, sha256_b32
from textbuf cimport PyUnicode_AsUTF8AndSize

cdef Hasher _hasher
hasher_init(&_hasher)


cpdef str hashed_name(str prefix, str key, int length):
    cdef int room = length - len(prefix)
    if room < 6:
        raise ValueError(f"prefix {prefix!r} leaves too little room in {length} characters")
    cdef Py_ssize_t n
    cdef const char* text = PyUnicode_AsUTF8AndSize(key, &n)
    cdef char out[56]
    cdef int chars = min(room, 56), i
    sha256_b32(&_hasher, text, n, out, chars)
    for i in range(chars):
        if b'A' <= out[i] <= b'Z':
            out[i] += 32            # lower case, as the pure twin's .lower()
    return prefix + out[:chars].decode("ascii")
