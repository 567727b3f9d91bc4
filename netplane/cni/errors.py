"""CNI error codes and the one exception type the plugin raises.

Codes 1-99 are fixed by the CNI spec; 100 and up are ours. Every failure a
runtime can see is a CniError, so the entry points turn it into the spec's
error JSON on stdout and never print a traceback there.
"""
from dataclasses import dataclass

# Spec-defined codes.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
INTERNAL = 999

# netplane's own codes.
RANGE_EXHAUSTED = 100
ATTACHMENT_EXISTS = 101
CHECK_MISMATCH = 102
# A runtimeConfig.ips address held by another attachment. Not 11 (try again
# later): the holder may be a live pod that never goes away.
ADDRESS_TAKEN = 103


@dataclass
class CniError(Exception):
    code: int
    msg: str
    details: str = ""

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    def to_dict(self, cni_version: str) -> dict:
        out = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out
