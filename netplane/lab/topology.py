"""The lab's addressing plan, pure: which node gets which addresses.

Node i (1-based) sits on one shared underlay segment, dual-stack, and owns
one IPv4 and one IPv6 pod CIDR. The nodes file the agents read is made of
ordinary v1 Node objects, exactly what the Kubernetes API would serve.
"""
from dataclasses import dataclass

UNDERLAY_V4 = "192.168.200.{i}/24"
UNDERLAY_V6 = "fd00:200::{i}/64"
POD_CIDRS = ("10.244.{i}.0/24", "fd00:10:244:{i}::/64")
MAX_NODES = 200
CONTROL_PLANE_V4 = "192.168.200.1/24"       # the underlay namespace's own address
CONTROL_PLANE_V6 = "fd00:200::1/64"
CLUSTER_CIDRS = ("10.244.0.0/16", "fd00:10:244::/56")     # every node's pod CIDR is inside these
SERVICE_CIDRS = ("10.96.0.0/16", "fd00:96::/112")
VIP_RANGE = "192.0.2.0/24"                  # load-balancer and external IPs (TEST-NET-1)
CLIENT_ADDRESSES = ("192.168.200.2/24", "192.168.200.3/24", "fd00:200::2/64")   # the external client


@dataclass(frozen=True)
class NodeAddressing:
    name: str
    underlay: tuple[str, ...]      # CIDRs on the node's eth0, the VTEP family first
    pod_cidrs: tuple[str, ...]

    @property
    def internal_ips(self) -> tuple[str, ...]:
        return tuple(cidr.split("/")[0] for cidr in self.underlay)


def node_addressing(i: int, underlay_family: int = 4) -> NodeAddressing:
    if not 1 <= i <= MAX_NODES:
        raise ValueError(f"node number {i} out of range 1..{MAX_NODES}")
    v4, v6 = UNDERLAY_V4.format(i=10 + i), UNDERLAY_V6.format(i=f"{10 + i:x}")
    underlay = (v4, v6) if underlay_family == 4 else (v6, v4)
    return NodeAddressing(f"node{i}", underlay, tuple(c.format(i=i) for c in POD_CIDRS))


def node_number(name: str) -> int:
    """node3 -> 3: the inverse of node_addressing's naming."""
    return int(name.removeprefix("node"))


def node_object(node: NodeAddressing) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name}},
        "spec": {"podCIDR": node.pod_cidrs[0], "podCIDRs": list(node.pod_cidrs)},
        "status": {"addresses": [{"type": "InternalIP", "address": ip} for ip in node.internal_ips]
                   + [{"type": "Hostname", "address": node.name}]},
    }


def node_list(nodes: list[NodeAddressing]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": [node_object(n) for n in nodes]}
