# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of table() in netplane/proxy/ebpf/maglev.py: the same bytes.

The checks, the backends' order and their (offset, skip) come from the pure
module itself (one hash per backend), so both twins refuse the same input
with the same ValueError. Only the populate loop, the m claims and every
probe of a taken slot (O(m log m)), runs here: in C, over plain arrays,
without the GIL.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint32_t
from libc.stdlib cimport calloc, free, malloc

from netplane.proxy.ebpf import maglev


cdef void _populate(uint32_t* slots, uint32_t m, Py_ssize_t n, uint32_t* next_slot, const uint32_t* skip,
                    const uint32_t* ids, unsigned char* taken) noexcept nogil:
    """The pure table()'s loop: backend i claims next_slot[i], or the first
    free one after it in steps of skip[i] (m prime: the walk meets them all);
    round and round until all m slots are taken (there are at most m backends)."""
    cdef uint32_t filled = 0, c
    cdef Py_ssize_t i
    while True:
        for i in range(n):
            c = next_slot[i]
            while taken[c]:
                c += skip[i]                    # c, skip < m <= 65521: no overflow
                if c >= m:
                    c -= m
            taken[c] = 1
            slots[c] = ids[i]
            c += skip[i]
            next_slot[i] = c - m if c >= m else c
            filled += 1
            if filled == m:
                return


def table(names, ids, m, seed):
    """m native u32, slot j holding the id of the backend that owns it."""
    pairs = maglev.backends(names, ids, m, seed)
    cdef Py_ssize_t n = len(pairs), i
    cdef uint32_t size = m
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size * 4)
    cdef uint32_t* slots = <uint32_t*> PyBytes_AS_STRING(out)
    cdef uint32_t* walks = <uint32_t*> malloc(3 * n * sizeof(uint32_t))    # next slots, skips, ids
    cdef unsigned char* taken = <unsigned char*> calloc(size, 1)
    try:
        if walks == NULL or taken == NULL:
            raise MemoryError()
        for i, (name, backend_id) in enumerate(pairs):
            walks[i], walks[n + i] = maglev.permutation(name, m, seed)
            walks[2 * n + i] = backend_id
        with nogil:
            _populate(slots, size, n, walks, walks + n, walks + 2 * n, taken)
    finally:
        free(walks)
        free(taken)
    return out
