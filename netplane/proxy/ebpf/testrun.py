"""Run a loaded BPF program on one packet, with no network: the kernel's
BPF_PROG_TEST_RUN (bpf(2) command 10) hands the program a fresh skb built
from the bytes and returns its verdict and the packet as the program left
it. Nothing is attached anywhere, so tests use it to judge the proxy's tc
programs (BPF_PROG_TYPE_SCHED_CLS) on crafted packets.

For a tc program the kernel parses the Ethernet header (skb->protocol
comes from its ethertype, the ifindex is loopback's) and the packet must
be at least 14 bytes. A redirect is not carried out: the verdict,
TC_ACT_REDIRECT, is returned like any other.
"""
import ctypes
import os
from typing import NamedTuple

SYS_BPF = 321                 # x86_64
BPF_PROG_TEST_RUN = 10

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _TestRun(ctypes.Structure):
    """union bpf_attr's `test` member (include/uapi/linux/bpf.h); the kernel
    takes the size we pass, zero-extending the fields it knows beyond it."""
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),           # out: the program's return value
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),    # in: data_out's size; out: the packet's
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),         # out: mean ns per run
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
    ]


class Result(NamedTuple):
    retval: int                # the verdict (TC_ACT_*)
    data: bytes                # the packet after the program
    duration_ns: int           # mean time of one run


def run(prog_fd: int, packet: bytes, repeat: int = 1, out_size: int = 4096) -> Result:
    """Run the program `prog_fd` on `packet` `repeat` times; OSError (with
    errno) if the kernel refuses, ENOSPC among others when the resulting
    packet is longer than `out_size`."""
    data_in = ctypes.create_string_buffer(bytes(packet), len(packet))
    data_out = ctypes.create_string_buffer(out_size)
    attr = _TestRun(prog_fd=prog_fd, data_size_in=len(packet), data_size_out=out_size,
                    data_in=ctypes.addressof(data_in), data_out=ctypes.addressof(data_out),
                    repeat=repeat)
    if _libc.syscall(SYS_BPF, BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
    return Result(attr.retval, data_out.raw[:attr.data_size_out], attr.duration)
