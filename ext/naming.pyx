# cython: language_level=3
"""Compiled twin of netplane/naming.py; see that module for the why.

A placeholder for the rule generator's fast path: it proves the build,
the fallback switch and the byte-identity test before the real generator
exists. Output must match netplane.naming exactly.
"""
import base64
import hashlib


cpdef str hashed_name(str prefix, str key, int length):
    cdef int room = length - len(prefix)
    if room < 6:
        raise ValueError(f"prefix {prefix!r} leaves too little room in {length} characters")
    cdef bytes digest = hashlib.sha256(key.encode()).digest()
    return prefix + base64.b32encode(digest).decode().lower()[:room]
