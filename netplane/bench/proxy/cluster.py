"""The cluster the benchmark programs: manifests for N Services (pure).

N counts the measured Service, zz-target, which sorts last:
- cluster IP 10.96.255.254, port 80 -> the echo servers' 8080 (also node
  port 32600, externalTrafficPolicy Cluster) and 5201 -> iperf3's 5201;
- one endpoint, pod A or pod B (both on node2, the node without the proxy),
  so an endpoint change is visible in every answer.
The other N-1 are fillers with `endpoints` fake pod IPs each, spread over 10
nodes as in a 10-node cluster; every 4th is a NodePort (at most 2,500), so
the node-port lookup has a cluster's worth of ports around it. The first
CHURN of them live in a file of their own, which the churn burst rewrites
(a real API server sends only the changed objects; the manifest source
reads only the changed file).
"""
import json
import os
from pathlib import Path

from netplane.bench.first_packet import with_node_ports
from netplane.bench.programming import filler_endpoint, filler_ip

TARGET = "zz-target"
TARGET_IP, TARGET_PORT, POD_PORT, NODE_PORT, IPERF_PORT = "10.96.255.254", 80, 8080, 32600, 5201
SERVER_NODE = "node2"
CHURN = 50
# services x endpoints at most: filler_endpoint() gives valid addresses up to ~9.7 million, and the
# churn's two blocks sit above the cluster's (3 x 1 million)
MAX_ENDPOINTS = 1_000_000
MAX_SERVICES = 62_500             # filler_ip() stays in 10.96.0.0/16 up to here
FILES = ("services.json", "churn.json", f"{TARGET}.json")


def churn_count(services: int) -> int:
    return max(0, min(CHURN, (services - 1) // 2))


def filler(i: int, endpoints: int, revision: int = 0) -> list[dict]:
    """Filler i's Service and slice. Revision 0's endpoints are the cluster's; odd and even
    revisions after it alternate between two other blocks of addresses (above every filler's:
    MAX_ENDPOINTS), so each rewrite moves every endpoint and every address stays valid."""
    from netplane.proxy import build as b

    block = 0 if revision == 0 else MAX_ENDPOINTS * (1 + revision % 2)
    name, first = f"svc{i:05d}", block + i * endpoints
    eps = [b.endpoint(*filler_endpoint(first + k)) for k in range(endpoints)]
    return [b.service(name, filler_ip(i), [{"name": "http", "port": TARGET_PORT}]),
            b.endpoint_slice(name, eps, [{"name": "http", "port": POD_PORT}])]


def fillers(services: int, endpoints: int) -> list[dict]:
    return with_node_ports([o for i in range(services - 1) for o in filler(i, endpoints)])


def target(pod_ip: str) -> list[dict]:
    from netplane.proxy import build as b

    ports = [{"name": "tcp", "port": TARGET_PORT, "protocol": "TCP", "nodePort": NODE_PORT},
             {"name": "iperf", "port": IPERF_PORT, "protocol": "TCP"}]
    return [b.service(TARGET, TARGET_IP, ports, type="NodePort", externalTrafficPolicy="Cluster"),
            b.endpoint_slice(TARGET, [b.endpoint(pod_ip, SERVER_NODE)],
                             [{"name": "tcp", "port": POD_PORT, "protocol": "TCP"},
                              {"name": "iperf", "port": IPERF_PORT, "protocol": "TCP"}])]


def churned(services: int, endpoints: int, revision: int) -> list[dict]:
    """The churn file's Services at a revision (the same names and IPs, new endpoints)."""
    return with_node_ports([o for i in range(churn_count(services)) for o in filler(i, endpoints, revision)])


def as_list(objects: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": objects}


def atomic_write(path: Path, objects: list[dict]) -> None:
    """As kubectl and editors write: a hidden temp file (the source skips
    dotfiles), renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(as_list(objects), separators=(",", ":")))
    os.replace(tmp, path)


def write(directory: Path, services: int, endpoints: int, pod_ip: str) -> None:
    """The whole cluster, the churn file at revision 0."""
    directory.mkdir(parents=True, exist_ok=True)
    everything = fillers(services, endpoints)
    split = 2 * churn_count(services)
    atomic_write(directory / FILES[0], everything[split:])
    atomic_write(directory / FILES[1], everything[:split])
    atomic_write(directory / FILES[2], target(pod_ip))
