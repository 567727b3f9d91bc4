"""Pausing Python's cyclic garbage collector around allocation-heavy work.

Building a large cluster's state or rule set allocates hundreds of
thousands of objects and makes no reference cycles; a collection in the
middle (a full one rescans every object the process holds) finds nothing
and can cost more than the work itself.
"""
import gc
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused():
    """The collector is off inside, and back as it was after (nests)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
