"""`netplane demo`: the CNI plugin end to end on a throwaway node.

Builds a node namespace with the agent in it, installs the plugin into a
temporary CNI bin directory, ADDs pods through it exactly as a runtime
would, pings every pod from every other pod and the gateway over IPv4 and
IPv6, DELs them and checks that no address leaked. Everything lives in
namespaces and a temporary directory that are removed at the end, also on
failure. The multi-node lab replaces this as the main job later.
"""
import os
import shutil
import sys
import tempfile

from netplane import sandbox
from netplane.agent.launch import start_agent
from netplane.cni import install, runtime
from netplane.cni.ipam.store import DiskStore

SUBNETS = ["10.244.0.0/24", "fd00:10:244::/64"]


def run(pods: int) -> int:
    sandbox.reap_stale()
    tmp = tempfile.mkdtemp(prefix="netplane-demo-")
    try:
        with sandbox.Sandbox() as sb:
            return _demo(sb, tmp, pods)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _demo(sb: sandbox.Sandbox, tmp: str, count: int) -> int:
    plugin = install.install(os.path.join(tmp, "bin"))[0]
    conf = {"cniVersion": "1.1.0", "name": "demo", "type": "netplane", "subnet": SUBNETS,
            "mtu": 1450, "dataDir": os.path.join(tmp, "ipam")}
    node = sb.netns("node")
    start_agent(sb, node, os.path.join(tmp, "agent.log"))
    print(f"node namespace {os.path.basename(node)}, agent up, plugin at {plugin}\n")

    pods = {}
    print(f"{'pod':6} {'ADD ms':>7}  {'IPv4':18} {'IPv6':22} MAC")
    for i in range(count):
        netns = sb.netns(f"pod{i}")
        out = runtime.invoke(plugin, runtime.env_for("ADD", container_id=f"demo-pod{i}", netns=netns,
                                                     ifname="eth0"), conf, node_netns=node)
        if not out.ok:
            print(f"ADD pod{i} failed: {out.stdout.decode()}", file=sys.stderr)
            return 1
        result = out.json()
        v4, v6 = (ip["address"] for ip in result["ips"])
        pods[f"pod{i}"] = (netns, v4.split("/")[0], v6.split("/")[0])
        print(f"pod{i:<3} {out.seconds * 1e3:7.1f}  {v4:18} {v6:22} {result['interfaces'][2]['mac']}")

    gaps = print_matrix(sb, pods)
    gaps += teardown(sb, plugin, conf, node, pods)
    return 1 if gaps else 0


def print_matrix(sb: sandbox.Sandbox, pods: dict) -> int:
    targets = {"gw": ("10.244.0.1", "fd00:10:244::1")} | {name: (v4, v6) for name, (_, v4, v6) in pods.items()}
    print("\nreachability (ping, IPv4/IPv6):")
    print("        " + "".join(f"{t:>9}" for t in targets))
    gaps = 0
    for src, (netns, _, _) in pods.items():
        row = []
        for v4, v6 in targets.values():
            marks = "".join("ok" if ping(sb, netns, ip) else "XX" for ip in (v4, v6))
            gaps += marks.count("XX")
            row.append(f"{marks[:2]}/{marks[2:]}")
        print(f"{src:8}" + "".join(f"{cell:>9}" for cell in row))
    print("all pods reach each other and the gateway" if not gaps else f"{gaps} gap(s)")
    return gaps


def ping(sb: sandbox.Sandbox, netns: str, ip: str) -> bool:
    return sb.run(netns, ["ping", "-c1", "-W1", ip], check=False).returncode == 0


def teardown(sb: sandbox.Sandbox, plugin: str, conf: dict, node: str, pods: dict) -> int:
    timings = []
    for name, (netns, _, _) in pods.items():
        out = runtime.invoke(plugin, runtime.env_for("DEL", container_id=f"demo-{name}", netns=netns,
                                                     ifname="eth0"), conf, node_netns=node)
        if not out.ok:
            print(f"DEL {name} failed: {out.stdout.decode()}", file=sys.stderr)
            return 1
        timings.append(out.seconds * 1e3)
    left = sum(len(ips) for ips in DiskStore(conf["dataDir"], conf["name"]).owners().values())
    print(f"\nDEL ms: {', '.join(f'{t:.1f}' for t in timings)}; addresses still reserved: {left}")
    return left
