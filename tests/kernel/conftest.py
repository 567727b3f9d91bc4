"""Kernel tier: real network namespaces on this machine's kernel, as root.

Every test builds its node and pods as throwaway namespaces through a
Sandbox, which removes them afterwards, also on failure; tests/conftest.py
fails any test that changed the host namespace. Most tests run twice:
through the agent (the fast path) and standalone (no agent), because both
must behave the same.
"""
import itertools
import json
import os
import re

import pytest

from netplane import sandbox
from netplane.cni import install, runtime
from netplane.cni.ipam.store import DiskStore
from netplane.agent.launch import start_agent
from netplane.lab import Lab


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/kernel/" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="kernel tier needs root"))


@pytest.fixture(scope="session")
def plugin(tmp_path_factory) -> str:
    return install.install(str(tmp_path_factory.mktemp("cni-bin")))[0]


class Node:
    """One node namespace with the plugin, its config and helpers to inspect it."""

    def __init__(self, sb: sandbox.Sandbox, plugin: str, tmp, name: str = "node") -> None:
        self.sb, self.plugin, self.tmp = sb, plugin, tmp
        self.netns = sb.netns(name)
        self.conf = {"cniVersion": "1.0.0", "name": "testnet", "type": "netplane",
                     "subnet": ["10.88.0.0/24", "fd00:88::/64"], "mtu": 1400, "dataDir": str(tmp / "ipam")}
        self.agent = None
        self.pods: dict[str, str] = {}

    def start_agent(self, *flags: str):
        self.agent = start_agent(self.sb, self.netns, str(self.tmp / "agent.log"), *flags)
        return self.agent

    def pod(self, name: str) -> str:
        self.pods[name] = self.sb.netns(name)
        return self.pods[name]

    def cni(self, verb: str, pod: str | None = None, cid: str | None = None, ifname: str = "eth0",
            netns: str | None = None, **conf) -> runtime.Outcome:
        env = runtime.env_for(verb, container_id=cid or pod or "", ifname=ifname if verb in ("ADD", "DEL", "CHECK") else "",
                              netns=netns if netns is not None else self.pods.get(pod, "") if pod else "")
        body = {**self.conf, **conf}
        return runtime.invoke(self.plugin, env, {k: v for k, v in body.items() if v is not None},
                              node_netns=self.netns)

    def add(self, pod: str, **kw) -> dict:
        if pod not in self.pods:
            self.pod(pod)
        out = self.cni("ADD", pod, **kw)
        assert out.ok, out.stdout.decode() + out.stderr.decode()
        return out.json()

    def ip(self, netns: str, *args: str):
        return json.loads(self.sb.run(netns, ["ip", "-j", *args]).stdout or "[]")

    def node_links(self) -> list[dict]:
        return self.ip(self.netns, "-d", "link", "show")

    def veths(self) -> list[str]:
        return [l["ifname"] for l in self.node_links() if l.get("linkinfo", {}).get("info_kind") == "veth"]

    def pod_addresses(self, pod: str, ifname: str = "eth0") -> set[str]:
        [link] = self.ip(self.pods[pod], "addr", "show", "dev", ifname)
        return {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a.get("scope") == "global"}

    def ping(self, pod: str, address: str) -> bool:
        return self.sb.run(self.pods[pod], ["ping", "-c1", "-W1", address], check=False).returncode == 0

    def reserved(self) -> dict:
        return DiskStore(self.conf["dataDir"], self.conf["name"]).owners()

    def wait_for_no_veths(self) -> None:
        sandbox.wait_for(lambda: not self.veths(), timeout=10, what="retired veths to be deleted")


@pytest.fixture
def sb():
    with sandbox.Sandbox() as box:
        yield box


@pytest.fixture
def node(sb, plugin, tmp_path) -> Node:
    return Node(sb, plugin, tmp_path)


@pytest.fixture(params=["agent", "standalone"])
def mode(request, node) -> str:
    if request.param == "agent":
        node.start_agent()
    return request.param


@pytest.fixture(scope="session", autouse=True)
def _reap_labs_of_killed_runs():
    """Test labs are named t<pid>x<n> and live under pytest's tmp dir; a run
    killed before its teardown leaves namespaces and agents behind. Remove
    those of runs whose process is gone (never a live run's)."""
    if os.geteuid() != 0:
        return
    stale = {m.group(1) for n in sandbox.listdir(sandbox.RUN_NETNS)
             if (m := re.match(r"npl-(t(\d+)x\d+)-", n)) and not sandbox.alive(int(m.group(2)))}
    for name in stale:
        for root in _lab_roots_of_processes(name) or {"/nonexistent"}:
            Lab(name, root).down()      # stops the processes that name its directory, deletes its namespaces


def _lab_roots_of_processes(lab_name: str) -> set[str]:
    """Where a test lab's directory was, read from its processes' command lines."""
    marker, roots = f"/{lab_name}/", set()
    for pid in filter(str.isdigit, sandbox.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.startswith("netplane") for a in argv):
            roots |= {arg[:arg.index(marker)] for arg in argv if marker in arg}
    return roots


_labs = itertools.count()


def new_lab(root) -> Lab:
    """A test lab, named t<pid>x<n> so a later run can reap it if this one is killed."""
    return Lab(f"t{os.getpid()}x{next(_labs)}", root=str(root))


@pytest.fixture
def make_lab(tmp_path):
    labs = []

    def make(nodes=2, mode="vxlan", **options) -> Lab:
        lab = new_lab(tmp_path / "labs")
        labs.append(lab)
        return lab.up(nodes, mode, **{"pods_per_node": 1, "resync_interval": 1.0} | options)

    yield make
    for lab in labs:
        lab.down()
