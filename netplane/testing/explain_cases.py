"""What the live `netplane explain` tests share, whatever the mode: the
node (192.168.200.11 in cluster CIDR 10.244.0.0/16), the Services they
sync and explain, and what a live answer and a compiled one must agree on."""
import sys

import yaml

from netplane.proxy import build as b

CLI = [sys.executable, "-m", "netplane"]
NODE = ["--node-name", "n1", "--node-ip", "192.168.200.11", "--cluster-cidr", "10.244.0.0/16"]
PORTS = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
# the node's device: an address to hold node ports, no route out
NODE_LINKS = (["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
              ["ip", "addr", "add", "192.168.200.11/24", "dev", "v0"],
              ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"])


def write_manifests(path, local: bool = True) -> None:
    """web (10.96.0.10, two endpoints, node port 30080), empty (10.96.0.11,
    none) and, with `local`, an externalTrafficPolicy Local Service whose
    only endpoint is on another node (10.96.0.12, node port 30082)."""
    both = [b.endpoint("10.244.1.5", "n1"), b.endpoint("10.244.2.5", "n2")]
    objects = [b.service("web", "10.96.0.10", PORTS, type="NodePort"),
               b.endpoint_slice("web", both, EP_PORTS),
               b.service("empty", "10.96.0.11", [dict(PORTS[0], nodePort=30081)], type="NodePort")]
    if local:
        objects += [b.service("local", "10.96.0.12", [dict(PORTS[0], nodePort=30082)], type="NodePort",
                              externalTrafficPolicy="Local"),
                    b.endpoint_slice("local", [b.endpoint("10.244.2.7", "n2")], EP_PORTS)]
    path.write_text(yaml.safe_dump_all(objects))


def comparable(answer: dict, names: bool = False, steps: bool = True) -> dict:
    """What a live answer and a compiled one must agree on: the Service's
    name only where the kernel holds names (iptables' comments), the steps
    where the tracer records the same ones either way."""
    keep = ["outcome", "exit_code", "masquerade"] + (["service"] if names else []) + (["decided_by"] if steps else [])
    out = {k: answer[k] for k in keep}
    fields = ("endpoint", "weight", "masquerade") + (("steps",) if steps else ())
    out["endpoints"] = [{k: e[k] for k in fields} for e in answer["endpoints"]]
    return out
