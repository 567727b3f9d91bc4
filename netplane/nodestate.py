"""The node state file: what the agent knows about this node, for the CNI plugin.

The agent learns the node's pod CIDRs and MTU (from the Kubernetes Node
object, or the lab's node list) and writes them here; the plugin reads them
when its network config carries no 'subnet'. Written atomically (temp file
plus rename), so a reader never sees half a file.

    {"nodeName": "node-1", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"], "mtu": 1450}
"""
import json
import os
from dataclasses import dataclass

from netplane.cni.config import parse_mtu, parse_subnets
from netplane.cni.errors import INTERNAL, TRY_AGAIN_LATER, CniError


@dataclass(frozen=True)
class NodeState:
    node_name: str
    pod_cidrs: tuple   # networks (ipaddress's, or netaddr's from the pod network)
    mtu: int | None = None


def write(path: str, state: NodeState) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = {"nodeName": state.node_name, "podCIDRs": [str(c) for c in state.pod_cidrs]}
    if state.mtu:
        body["mtu"] = state.mtu
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(body, f)
    os.replace(tmp, path)


def read(path: str) -> NodeState:
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise CniError(TRY_AGAIN_LATER, "the node's pod CIDR is unknown",
                       f"the network config has no 'subnet' and there is no node state file at {path}; "
                       "start the netplane agent on this node, or set 'subnet'") from None
    except (OSError, ValueError) as exc:
        raise CniError(INTERNAL, f"cannot read node state file {path}", str(exc)) from None
    try:
        if not isinstance(raw, dict) or not isinstance(raw.get("nodeName", ""), str):
            raise CniError(INTERNAL, "not an object with a string 'nodeName'")
        return NodeState(raw.get("nodeName", ""), parse_subnets(raw.get("podCIDRs"), "podCIDRs"),
                         parse_mtu(raw["mtu"], "mtu") if "mtu" in raw else None)
    except CniError as err:
        raise CniError(INTERNAL, f"node state file {path} is malformed", str(err)) from None
