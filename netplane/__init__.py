"""netplane: pod networking and a Kubernetes service proxy for Linux nodes.

Parts, each its own subpackage:
- cni:     the CNI plugin that runtimes run once per pod (IPAM + wiring).
- netlink: a small synchronous netlink transport over pyroute2's messages.
- agent:   the long-running node agent; today it serves the CNI fast path.
"""
__version__ = "0.1.0"
