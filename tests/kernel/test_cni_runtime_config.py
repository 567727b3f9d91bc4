"""runtimeConfig capabilities against the kernel, through both paths, and
hostPort by chaining the reference portmap plugin after netplane."""
import subprocess
import sys

from netplane.cni import runtime
from netplane.cni.errors import INVALID_CONFIG, UNSUPPORTED_FIELD
from netplane.cni.ipam.allocator import ADDRESS_TAKEN

MAC = "c2:11:22:33:44:55"
REQUEST = {"ips": ["10.88.0.42/24", "fd00:88::42/64"], "mac": MAC}
HOSTPORT = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
PORTMAP = f"{runtime.REFERENCE_CNI_PATH}/portmap"

# Answers every connection on port 80 with a greeting: the pod end of the hostPort test.
GREETER = """
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 80)); srv.listen(); print("listening", flush=True)
while True:
    conn, _ = srv.accept(); conn.sendall(b"hello from the pod"); conn.close()
"""
CONNECT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    print(s.recv(100).decode())
"""


def _pod_links(node, pod: str) -> list[str]:
    return [link["ifname"] for link in node.ip(node.pods[pod], "link", "show")]


def test_requested_ips_and_mac_are_served_and_check_passes(node, mode):
    result = node.add("p1", runtimeConfig=REQUEST)
    assert {ip["address"] for ip in result["ips"]} == {"10.88.0.42/24", "fd00:88::42/64"}
    assert node.pod_addresses("p1") == {"10.88.0.42/24", "fd00:88::42/64"}
    assert result["interfaces"][2]["mac"] == MAC
    [link] = node.ip(node.pods["p1"], "link", "show", "eth0")
    assert link["address"] == MAC
    assert node.ping("p1", "10.88.0.1")
    # The runtime sends runtimeConfig on every verb, CHECK and DEL included.
    check = node.cni("CHECK", "p1", prevResult=result, runtimeConfig=REQUEST)
    assert check.ok and check.stdout == b"", check.stdout
    assert node.cni("DEL", "p1", runtimeConfig=REQUEST).ok
    assert node.reserved() == {}
    node.wait_for_no_veths()


def test_a_family_without_a_request_is_allocated_as_usual(node, mode):
    result = node.add("p1", runtimeConfig={"ips": ["fd00:88::42/64"]})
    assert [ip["address"] for ip in result["ips"]] == ["10.88.0.2/24", "fd00:88::42/64"]
    assert result["interfaces"][2]["mac"] == "0a:58:0a:58:00:02"      # derived, as without a request
    assert node.cni("CHECK", "p1", prevResult=result).ok


def test_a_taken_address_is_refused_and_nothing_is_left(node, mode):
    first = node.add("p1")                                           # 10.88.0.2, fd00:88::2
    veths, reserved = node.veths(), node.reserved()
    node.pod("p2")
    taken = {"ips": ["10.88.0.2/24"]}
    out = node.cni("ADD", "p2", runtimeConfig=taken)
    err = out.json()
    assert not out.ok and err["code"] == ADDRESS_TAKEN and "runtimeConfig.ips" in err["msg"]
    assert "10.88.0.2" in err["details"] and "p1" in err["details"]
    assert node.veths() == veths and node.reserved() == reserved
    assert _pod_links(node, "p2") == ["lo"]
    # The runtime's DEL after the failed ADD must not free the holder's address.
    assert node.cni("DEL", "p2", runtimeConfig=taken).ok
    assert node.reserved() == reserved
    assert {ip["address"] for ip in first["ips"]} == node.pod_addresses("p1") and node.ping("p1", "10.88.0.1")


def test_an_address_outside_the_subnet_is_refused_and_nothing_is_left(node, mode):
    node.pod("p1")
    for bad in (["10.89.0.5/24"], ["10.88.0.1/24"], ["10.88.0.5/16"]):
        out = node.cni("ADD", "p1", runtimeConfig={"ips": bad})
        assert not out.ok and out.json()["code"] == INVALID_CONFIG and "runtimeConfig.ips" in out.json()["msg"]
    out = node.cni("ADD", "p1", runtimeConfig={"mac": "01:00:5e:00:00:01"})
    assert not out.ok and out.json()["code"] == INVALID_CONFIG and "runtimeConfig.mac" in out.json()["msg"]
    assert node.reserved() == {} and node.veths() == [] and _pod_links(node, "p1") == ["lo"]


def test_port_mappings_are_refused_with_code_2(node, mode):
    node.pod("p1")
    out = node.cni("ADD", "p1", runtimeConfig=HOSTPORT)
    err = out.json()
    assert not out.ok and err["code"] == UNSUPPORTED_FIELD and "runtimeConfig.portMappings" in err["msg"]
    assert "portmap" in err["details"]
    assert node.reserved() == {} and node.veths() == [] and _pod_links(node, "p1") == ["lo"]
    assert node.add("p1", runtimeConfig={"portMappings": []})["ips"]     # no hostPorts is fine


def _portmap(node, verb: str, pod: str, prev: dict) -> runtime.Outcome:
    conf = {"cniVersion": "1.0.0", "name": node.conf["name"], "type": "portmap",
            "capabilities": {"portMappings": True}, "snat": True, "runtimeConfig": HOSTPORT, "prevResult": prev}
    env = runtime.env_for(verb, container_id=pod, netns=node.pods[pod], ifname="eth0")
    return runtime.invoke(PORTMAP, env, conf, node_netns=node.netns)


def _nat_rules(node) -> str:
    return node.sb.run(node.netns, ["iptables-save", "-t", "nat"]).stdout.decode()


def test_hostport_by_chaining_portmap_after_netplane(node, mode):
    result = node.add("web", runtimeConfig={"ips": ["10.88.0.80/24"]})
    added = _portmap(node, "ADD", "web", result)
    assert added.ok, added.stdout.decode() + added.stderr.decode()
    assert [ip["address"] for ip in added.json()["ips"]] == [ip["address"] for ip in result["ips"]]
    rules = _nat_rules(node)
    assert "--dport 8080" in rules and "--to-destination 10.88.0.80:80" in rules, rules

    # Real traffic: the node connects to its own address on the hostPort and
    # portmap's DNAT takes it to the pod's port 80.
    server = node.sb.spawn(node.pods["web"], [sys.executable, "-c", GREETER], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    reply = node.sb.run(node.netns, [sys.executable, "-c", CONNECT, "10.88.0.1", "8080"], timeout=10)
    assert reply.stdout.decode().strip() == "hello from the pod"
    node.sb.stop(server)

    assert _portmap(node, "DEL", "web", result).ok
    assert "10.88.0.80:80" not in _nat_rules(node)
    assert node.cni("DEL", "web", runtimeConfig={"ips": ["10.88.0.80/24"]}).ok
    assert node.reserved() == {}
    node.wait_for_no_veths()
