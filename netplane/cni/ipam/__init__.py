"""Pod address management: a pure allocator over a small Store interface.

The allocator decides which address an attachment gets; a Store only keeps
reservations. DiskStore persists them under dataDir for the node and is safe
across processes and threads; MemoryStore backs the unit tests.
"""
