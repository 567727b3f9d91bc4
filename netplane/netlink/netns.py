"""Network namespaces, entered per thread.

setns() changes the namespace of the calling thread only. A socket created
while a thread is in a namespace stays bound to that namespace for its
whole life, whichever thread later uses it, so entering a pod's namespace
is only ever needed for the instant of creating a socket:
- call_in_netns() runs a function on a fresh thread that enters the
  namespace and exits (safe anywhere, ~0.2 ms);
- call_in_netns_inline() enters, calls and returns on the calling thread
  (~20 us). If it cannot return, the process exits at once: a thread left
  in a pod's namespace would configure the wrong network from then on.
"""
import ctypes
import fcntl
import os
import threading
from typing import Callable, TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def open_netns(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def own_netns_path() -> str:
    # thread-self, not self: this thread's namespace is the one that counts.
    return "/proc/thread-self/ns/net"


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def same_netns(fd: int, other_path: str) -> bool:
    a, b = os.fstat(fd), os.stat(other_path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)


def is_netns(fd: int) -> bool:
    """True if fd refers to a network namespace. The ioctl answers for any
    nsfs file, however it was reached (a bind mount keeps its own path)."""
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False


def call_in_netns_inline(fd: int, fn: Callable[..., T], *args) -> T:
    home = os.open(own_netns_path(), os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd)
        try:
            return fn(*args)
        finally:
            _return_home(home)
    finally:
        os.close(home)


def _return_home(home: int) -> None:
    try:
        setns(home)
    except OSError as exc:
        os.write(2, f"netplane: cannot return to this thread's network namespace ({exc}); exiting\n".encode())
        os._exit(70)


def call_in_netns(fd: int, fn: Callable[..., T], *args) -> T:
    box: dict = {}

    def run() -> None:
        try:
            setns(fd)
            box["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="netns-call")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
