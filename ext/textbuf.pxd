# cython: language_level=3
"""A growable byte buffer for the compiled rule generators (header-only:
every ext module that cimports it gets its own inlined copy, so no module
depends on another at run time).

Text goes in as UTF-8 (Python's str gives it without copying for ASCII)
and comes out as str, so the output equals what the pure-Python twin
builds from the same strings, whatever characters they hold.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memcpy, strlen


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    object PyUnicode_DecodeUTF8(const char*, Py_ssize_t, const char*)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    bint PyUnicode_IS_ASCII(object)
    void* PyUnicode_DATA(object)


cdef struct Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t cap
    bint ascii          # all text since the last reset was ASCII (then no decoding is needed)


cdef inline void buf_reset(Buf* b) noexcept:
    b.size, b.ascii = 0, True


cdef inline int buf_init(Buf* b, Py_ssize_t cap) except -1:
    b.data = <char*> PyMem_Malloc(cap)
    if b.data == NULL:
        raise MemoryError()
    b.size, b.cap, b.ascii = 0, cap, True
    return 0


cdef inline void buf_free(Buf* b) noexcept:
    PyMem_Free(b.data)
    b.data = NULL


cdef inline int _grow(Buf* b, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = b.cap * 2
    while cap < b.size + need:
        cap *= 2
    cdef char* data = <char*> PyMem_Realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data, b.cap = data, cap
    return 0


cdef inline int put(Buf* b, const char* s, Py_ssize_t n) except -1:
    if b.size + n > b.cap:
        _grow(b, n)
    memcpy(b.data + b.size, s, n)
    b.size += n
    return 0


cdef inline int put_c(Buf* b, const char* s) except -1:
    return put(b, s, strlen(s))


cdef inline int put_s(Buf* b, str s) except -1:
    """Any str, as UTF-8 (for ASCII, Python's own bytes: no conversion)."""
    cdef Py_ssize_t n
    cdef const char* u = PyUnicode_AsUTF8AndSize(s, &n)
    if not PyUnicode_IS_ASCII(s):
        b.ascii = False
    return put(b, u, n)


cdef inline int put_i(Buf* b, long v) except -1:
    """v in decimal, as str(v) (printf's parser costs more than the digits)."""
    cdef char tmp[24]
    cdef int i = 24
    cdef unsigned long u = <unsigned long> (-v) if v < 0 else <unsigned long> v
    while True:
        i -= 1
        tmp[i] = <char> (48 + u % 10)
        u //= 10
        if u == 0:
            break
    if v < 0:
        i -= 1
        tmp[i] = b'-'
    return put(b, tmp + i, 24 - i)


cdef inline str take(Buf* b):
    """The buffer's text, as str. ASCII (what rules are made of, unless a
    name is not) is copied straight into a new str."""
    cdef object s
    if not b.ascii:
        return PyUnicode_DecodeUTF8(b.data, b.size, NULL)
    s = PyUnicode_New(b.size, 127)
    memcpy(PyUnicode_DATA(s), b.data, b.size)
    return s
