# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of group_entries() in netplane/proxy/ebpf/entries.py: one
lookup key's master and slots, the same bytes, each key and value written
straight into a new bytes object instead of through struct.

Key (24 bytes): the 16-byte address, the port big-endian, the protocol,
the scope, the slot as a native u32. Value (16 bytes): four native u32.

Invalid input raises struct.error, as the pure twin does (it checks the
address itself, struct the numbers): an address that is not bytes or
bytearray of exactly 16, a number that is not an integer (nor has
__index__), or one outside its field (port 0..65535, protocol and scope
0..255, the rest 0..2**32-1).
"""
import struct

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.dict cimport PyDict_SetItem
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1
    object PyNumber_Index(object)
    bint PyIndex_Check(object)

cdef enum:
    KEY_SIZE = 24
    VALUE_SIZE = 16

cdef object _error = struct.error


cdef long long _number(object v, long long top, str code) except -1:
    """v as struct packs it into a field of code's range (0..top)."""
    cdef int overflow = 0
    cdef long long n
    if type(v) is not int:
        if not PyIndex_Check(v):
            raise _error("required argument is not an integer")
        v = PyNumber_Index(v)
    n = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow or n < 0 or n > top:
        raise _error(f"'{code}' format requires 0 <= number <= {top}")
    return n


cdef inline bytes _key(const uint8_t* head, uint32_t slot):
    cdef bytes key = PyBytes_FromStringAndSize(NULL, KEY_SIZE)
    cdef char* p = PyBytes_AS_STRING(key)
    memcpy(p, head, 20)
    memcpy(p + 20, &slot, 4)
    return key


cdef inline bytes _value(uint32_t a, uint32_t b, uint32_t c, uint32_t d):
    cdef uint32_t v[4]
    v[0], v[1], v[2], v[3] = a, b, c, d
    return PyBytes_FromStringAndSize(<char*> v, VALUE_SIZE)


def group_entries(addr, port, proto, scope, backend_ids, flags, affinity, port_id):
    """{slot i's key: (backend_ids[i - 1], 0, 0, 0) for i = 1..N, then the
    master's key (slot 0): (N, flags, affinity, port_id)}."""
    cdef uint8_t head[20]
    cdef const char* a
    cdef Py_ssize_t n
    cdef uint32_t i = 0, p
    if isinstance(addr, bytes):
        a = PyBytes_AS_STRING(addr)
    elif isinstance(addr, bytearray):
        a = PyByteArray_AS_STRING(addr)
    else:
        raise _error("the address must be 16 bytes")
    if len(addr) != 16:
        raise _error("the address must be 16 bytes")
    memcpy(head, a, 16)
    p = <uint32_t> _number(port, 0xFFFF, "H")
    head[16], head[17] = <uint8_t> (p >> 8), <uint8_t> (p & 0xFF)
    head[18] = <uint8_t> _number(proto, 0xFF, "B")
    head[19] = <uint8_t> _number(scope, 0xFF, "B")
    n = len(backend_ids)         # as the pure twin: a sized iterable (a list)
    cdef dict entries = {}
    for backend_id in backend_ids:
        i += 1
        PyDict_SetItem(entries, _key(head, i), _value(<uint32_t> _number(backend_id, 0xFFFFFFFF, "I"), 0, 0, 0))
    if n > 0xFFFFFFFF:
        raise _error("'I' format requires 0 <= number <= 4294967295")
    PyDict_SetItem(entries, _key(head, 0),
                   _value(<uint32_t> n, <uint32_t> _number(flags, 0xFFFFFFFF, "I"),
                          <uint32_t> _number(affinity, 0xFFFFFFFF, "I"),
                          <uint32_t> _number(port_id, 0xFFFFFFFF, "I")))
    return entries
