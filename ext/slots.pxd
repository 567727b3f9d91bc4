# cython: language_level=3
"""Reading a slotted class's fields from C (header-only, like textbuf.pxd).

The model's classes are slotted dataclasses: each field sits at a fixed
offset in the object. Reading it there costs a load; getattr() costs a
type lookup and a descriptor call (20 ns each, and a port reads fifty).
The offset is taken from the class's own member descriptor at import, and
used only for objects of exactly that class: anything else (a subclass, a
stand-in in a test) goes through getattr() as before.
"""
from cpython.ref cimport PyObject, PyTypeObject


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    PyTypeObject* Py_TYPE(object)


cdef struct Field:
    PyTypeObject* cls       # the exact class the offset holds for
    Py_ssize_t offset
    PyObject* name          # the attribute's name (a str kept alive by the module)


cdef inline int field_init(Field* f, type cls, str name, list keep) except -1:
    """f: where `name` sits in a `cls` object; `keep` holds the name's str."""
    for base in cls.__mro__:
        d = base.__dict__.get(name)
        if d is not None:
            break
    if type(d).__name__ != "member_descriptor":
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    keep.append(name)
    f.cls, f.offset, f.name = <PyTypeObject*> cls, (<PyMemberDescrObject*> <PyObject*> d).d_member.offset, <PyObject*> name
    return 0


cdef inline object field(object obj, Field* f):
    """obj.<f's name>"""
    cdef PyObject* value
    if Py_TYPE(obj) == f.cls:
        value = (<PyObject**> ((<char*> <PyObject*> obj) + f.offset))[0]
        if value != NULL:
            return <object> value
    return getattr(obj, <str> f.name)
