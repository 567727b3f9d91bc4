"""Stable short names derived from long keys.

Kernel objects have short name limits (15 bytes for an interface, 28 for an
iptables chain), but the keys we name them after (a container ID plus an
interface name, a service port) are long. A truncated base32 SHA-256 keeps the
name deterministic, so a later DEL or resync finds the object again from the
key alone, even after a crash lost every other record of it.

ext/naming.pyx is the compiled twin of this module and must stay
byte-identical to it.
"""
import base64
import hashlib


def hashed_name(prefix: str, key: str, length: int) -> str:
    """Return `prefix` followed by a hash of `key`, `length` characters in all."""
    room = length - len(prefix)
    if room < 6:
        raise ValueError(f"prefix {prefix!r} leaves too little room in {length} characters")
    digest = hashlib.sha256(key.encode()).digest()
    return prefix + base64.b32encode(digest).decode().lower()[:room]
