"""Whether a read of the live state failed for lack of privilege.

Every mode's state is the kernel's, readable only with CAP_NET_ADMIN (or
root): iptables-save, nft and IPVS over netlink, the bpffs under
/sys/fs/bpf. An operator who forgot sudo should hear that, not that the
proxy is not running."""
import errno
import os

NEEDS_ROOT = "root (CAP_NET_ADMIN) is needed to read the proxy's state"
CODES = (errno.EPERM, errno.EACCES)
# what the tools print for those codes ("Permission denied (you must be root)", nft's "Operation not permitted")
WORDS = tuple(os.strerror(code) for code in CODES)


def denied(err) -> bool:
    """`err`: an exception (an OSError, a pyroute2 NetlinkError, a tool's
    error carrying its stderr) or a tool's stderr text."""
    code = getattr(err, "errno", None) or getattr(err, "code", None)
    return code in CODES or any(words in str(err) for words in WORDS)
