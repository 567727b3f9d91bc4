"""Localhost node ports (iptables.localhostNodePorts) on real packets: a node
namespace with a pod behind it and a neighbour in front. With the option
(kube-proxy's default), the node's own 127.0.0.1:<nodePort> reaches the
pod, route_localnet is 1 in the node's namespace only, and a packet to
127.0.0.1 from the neighbour is dropped by the safeguard; without it,
127.0.0.1:<nodePort> does not answer."""
import json
import subprocess
import sys

import pytest

from netplane import sandbox

pytestmark = pytest.mark.kernel

NODE_PORT, TARGET, GUARDED = 30080, 8080, 9999
NODE_IP, POD_IP, NEIGHBOUR_IP = "192.168.77.1", "10.244.0.5", "192.168.77.2"
MANIFESTS = f"""kind: Service
apiVersion: v1
metadata: {{name: web}}
spec: {{type: NodePort, clusterIP: 10.96.0.10, ports: [{{name: http, port: 80, targetPort: {TARGET}, nodePort: {NODE_PORT}}}]}}
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
endpoints: [{{addresses: [{POD_IP}], nodeName: n, conditions: {{ready: true}}}}]
ports: [{{name: http, port: {TARGET}, protocol: TCP}}]
"""
# run in the node: one TCP connection, what it read (or why it failed)
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        print(s.recv(100).decode().strip())
except OSError as err:
    print("failed:", type(err).__name__)
"""
# run in the neighbour: a SYN to 127.0.0.1, sent straight to the node's MAC
SPOOF = """
import sys
from scapy.all import Ether, IP, TCP, conf, sendp
conf.verb = 0
sendp(Ether(dst=sys.argv[1]) / IP(src=sys.argv[2], dst="127.0.0.1") / TCP(sport=40000, dport=int(sys.argv[3]), flags="S"),
      iface="eth0")
"""


def link(sb, a: str, a_name: str, a_ip: str, b: str, b_name: str, b_ip: str) -> None:
    """A veth pair between namespaces a and b, /24 addresses on both ends."""
    tmp = f"npl{id(a_ip) % 100000}"
    subprocess.run(["ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp + "p"], check=True)
    subprocess.run(["ip", "link", "set", tmp, "netns", a], check=True)
    subprocess.run(["ip", "link", "set", tmp + "p", "netns", b], check=True)
    for ns, old, new, ip in ((a, tmp, a_name, a_ip), (b, tmp + "p", b_name, b_ip)):
        sb.run(ns, ["ip", "link", "set", old, "name", new])
        sb.run(ns, ["ip", "addr", "add", f"{ip}/24", "dev", new])
        sb.run(ns, ["ip", "link", "set", new, "up"])


@pytest.fixture
def node(tmp_path):
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(MANIFESTS)
    with sandbox.Sandbox() as sb:
        node, pod, neighbour = sb.netns("node"), sb.netns("pod"), sb.netns("neighbour")
        link(sb, node, "veth-pod", "10.244.0.1", pod, "eth0", POD_IP)
        link(sb, node, "eth0", NODE_IP, neighbour, "eth0", NEIGHBOUR_IP)
        sb.run(pod, ["ip", "route", "add", "default", "via", "10.244.0.1"])
        server = sb.spawn(pod, [sys.executable, "-m", "netplane.lab.echo", "--name", "pod", "--port", str(TARGET)])
        sandbox.wait_for(lambda: "pod" in connect(sb, node, POD_IP, TARGET), what="the pod's server")
        yield sb, node, neighbour, manifests
        sb.stop(server)


def proxy_once(sb, node: str, manifests, *flags: str) -> None:
    done = subprocess.run(sandbox.enter(node, [sys.executable, "-m", "netplane", "proxy", "--once", "--manifests",
                                               str(manifests), "--node-name", "n", "--node-ip", NODE_IP,
                                               "--cluster-cidr", "10.244.0.0/16", *flags]),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def connect(sb, netns: str, host: str, port: int) -> str:
    return sb.run(netns, [sys.executable, "-c", CONNECT, host, str(port)], text=True).stdout.strip()


def route_localnet(sb, netns: str) -> str:
    return sb.run(netns, ["cat", "/proc/sys/net/ipv4/conf/all/route_localnet"], text=True).stdout.strip()


def test_the_node_reaches_a_node_port_on_localhost(node):
    sb, netns, _, manifests = node
    host_before = open("/proc/sys/net/ipv4/conf/all/route_localnet").read()
    proxy_once(sb, netns, manifests)
    assert connect(sb, netns, "127.0.0.1", NODE_PORT).startswith("pod ")
    assert connect(sb, netns, NODE_IP, NODE_PORT).startswith("pod ")
    assert route_localnet(sb, netns) == "1"
    assert open("/proc/sys/net/ipv4/conf/all/route_localnet").read() == host_before      # the node's namespace only


def test_off_localhost_does_not_answer_but_the_node_address_does(node):
    sb, netns, _, manifests = node
    proxy_once(sb, netns, manifests, "--iptables-localhost-nodeports=false")
    assert connect(sb, netns, "127.0.0.1", NODE_PORT).startswith("failed:")
    assert connect(sb, netns, NODE_IP, NODE_PORT).startswith("pod ")
    assert route_localnet(sb, netns) == "0"


def half_open_from(sb, netns: str, peer: str) -> bool:
    """Whether a SYN from `peer` reached a listening socket (its SYN-ACK
    cannot leave with a loopback source, so the connection stays half-open)."""
    return peer in sb.run(netns, ["ss", "-tan", "state", "syn-recv"], text=True).stdout


def test_a_packet_to_localhost_from_outside_is_dropped(node):
    """route_localnet=1 lets the kernel route it; the safeguard drops it
    before the node's localhost-only server sees it. With the safeguard
    flushed, the same packet reaches that server: the hole it closes."""
    sb, netns, neighbour, manifests = node
    proxy_once(sb, netns, manifests)
    guarded = sb.spawn(netns, [sys.executable, "-c", "import socket, time\n"
                               f"s = socket.create_server(('127.0.0.1', {GUARDED}))\ntime.sleep(60)"])
    sandbox.wait_for(lambda: connect(sb, netns, "127.0.0.1", GUARDED) != "failed: ConnectionRefusedError",
                     what="the localhost-only server")
    mac = json.loads(sb.run(netns, ["ip", "-j", "link", "show", "eth0"], text=True).stdout)[0]["address"]
    spoof = [sys.executable, "-c", SPOOF, mac, NEIGHBOUR_IP, str(GUARDED)]
    sb.run(neighbour, spoof)
    counters = sb.run(netns, ["iptables", "-L", "NP-FIREWALL", "-v", "-x", "-n"], text=True).stdout
    assert int(next(line.split() for line in counters.splitlines() if "DROP" in line)[0]) >= 1, counters
    assert not half_open_from(sb, netns, NEIGHBOUR_IP)
    sb.run(netns, ["iptables", "-F", "NP-FIREWALL"])
    sb.run(neighbour, spoof)
    sandbox.wait_for(lambda: half_open_from(sb, netns, NEIGHBOUR_IP), what="the SYN without the safeguard")
    sb.stop(guarded)
