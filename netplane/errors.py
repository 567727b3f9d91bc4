"""The one error type an operator fixes: its message is one line.

The CLI prints such an error as `netplane: <message>` and exits with 2,
never a traceback. Anything else that escapes is a bug and keeps its
traceback. Other modules' operator-facing errors (a kubeconfig that does
not load, a port already taken) subclass it.
"""


class OperatorError(Exception):
    pass


CAP_NET_ADMIN = 12


def require_net_admin(what: str) -> None:
    """`what` programs the network stack: refuse at once, in one line,
    rather than fail on its first netlink call and retry forever."""
    try:
        with open("/proc/self/status") as f:
            effective = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return  # cannot tell: let the kernel say no
    if not effective >> CAP_NET_ADMIN & 1:
        raise OperatorError(f"{what} needs CAP_NET_ADMIN: run it as root (a privileged pod on Kubernetes)")
