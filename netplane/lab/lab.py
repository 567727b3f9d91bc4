"""A lab cluster on one machine: nodes and pods as network namespaces.

    underlay netns:  bridge ul0 ── veth ──┬── node1 netns: eth0, agent, bridge np0 ── pods
                                          ├── node2 netns: ...
The lab outlives the command that built it (`netplane lab up`, then
`status`, `check`, `down`), so everything it creates is recorded in
<root>/<name>/lab.json as it is created: namespaces, process pids, pods.
`down` works from that record, and also from the namespace name prefix if
the record is lost; it stops only processes whose command line names this
lab's directory. Nothing is ever created in the host namespace: veths are
made inside the underlay namespace and their node ends moved away.

Pods are added through the real CNI plugin, executed with the CNI protocol
exactly as a runtime would, and each node's agent learns its peers from
the nodes file, a list of ordinary v1 Node objects.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from netplane import sandbox
from netplane.cni import install, runtime
from netplane.cni.server import answers
from netplane.kube.fields import rfc3339_seconds
from netplane.lab import cgroups, topology
from netplane.netlink.netns import open_netns

DEFAULT_ROOT = "/run/netplane/lab"
MODES = ("vxlan", "routed")


class LabError(RuntimeError):
    pass


@dataclass
class NodeRecord:
    netns: str
    internal_ips: list[str]
    pod_cidrs: list[str]
    agent_pid: int = 0


@dataclass
class PodRecord:
    node: str
    netns: str
    ips: list[str] = field(default_factory=list)


@dataclass
class LabRecord:
    name: str
    mode: str
    underlay_family: int = 4
    resync_interval: float = 10.0
    kubeconfig: str | None = None
    namespaces: list[str] = field(default_factory=list)   # every netns we made, in creation order
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    pods: dict[str, PodRecord] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)   # "proxy/node1", "echo/node1-pod1" -> pid
    client: str = ""                                         # the external client's netns path, once added
    proxy_mode: str = ""                                     # the mode the proxies were last started in


class Lab:
    def __init__(self, name: str = "default", root: str = DEFAULT_ROOT) -> None:
        # no dashes: namespaces are npl-<name>-<node>, and one lab's prefix must never match another's
        if not (name.isascii() and name.isalnum()) or len(name) > 20:
            raise LabError(f"lab name {name!r}: use up to 20 ASCII letters and digits")
        self.name, self.dir = name, os.path.join(root, name)
        self.record: LabRecord | None = None

    # -- building -----------------------------------------------------------

    def up(self, nodes: int, mode: str, pods_per_node: int = 2, underlay_family: int = 4,
           resync_interval: float = 10.0, control_plane=None) -> "Lab":
        """Build the lab. `control_plane(underlay_netns_path) -> kubeconfig`
        starts an API server on the underlay (at topology.CONTROL_PLANE_*)
        before the agents start; they then watch its Node objects, which the
        caller fills, instead of the nodes file."""
        _check_args(nodes, mode, pods_per_node, underlay_family)
        if self.exists():
            raise LabError(f"lab {self.name} already exists ({self.dir}); run `netplane lab down` first")
        os.makedirs(self.dir)
        self.record = LabRecord(self.name, mode, underlay_family, resync_interval)
        try:
            self._build(nodes, pods_per_node, control_plane)
        except (OSError, subprocess.CalledProcessError, install.InstallError) as err:
            self.down()
            raise LabError(f"building lab {self.name} failed: {err}") from err
        except BaseException:
            self.down()
            raise
        return self

    def _build(self, nodes: int, pods_per_node: int, control_plane) -> None:
        install.install(os.path.join(self.dir, "bin"), python=sys.executable)
        underlay = self._netns("underlay")
        # the underlay namespace doubles as the control plane: an API server
        # (tests run a fake one) listens on CONTROL_PLANE_IP, on-link for every node
        _ip(underlay, "link add ul0 type bridge", "link set ul0 up", f"addr add {topology.CONTROL_PLANE_V4} dev ul0",
            f"addr add {topology.CONTROL_PLANE_V6} dev ul0 nodad")
        addressing = [topology.node_addressing(i, self.record.underlay_family) for i in range(1, nodes + 1)]
        for node in addressing:
            self._add_node(node)
        self._write_nodes_file()
        if control_plane:
            self.record.kubeconfig = control_plane(underlay)
        for name in self.record.nodes:
            self._start_agent(name)
        for name in self.record.nodes:
            self.wait_ready(name)
            for j in range(1, pods_per_node + 1):
                self.add_pod(name, f"{name}-pod{j}")

    def _add_node(self, node: topology.NodeAddressing) -> None:
        netns = self._netns(node.name)
        i = topology.node_number(node.name)
        _ip(self._path("underlay"), f"link add n{i} type veth peer name eth0 netns {os.path.basename(netns)}",
            f"link set n{i} master ul0 up")
        # the node forwards IPv6 out of eth0 only once its link-local is usable
        subprocess.run(sandbox.enter(netns, ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"]), check=True)
        _ip(netns, "link set eth0 up",
            *(f"addr add {cidr} dev eth0" + (" nodad" if ":" in cidr else "") for cidr in node.underlay))
        self.record.nodes[node.name] = NodeRecord(netns, list(node.internal_ips), list(node.pod_cidrs))
        self._save()

    def _netns(self, name: str) -> str:
        full = f"npl-{self.name}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True, capture_output=True)
        self.record.namespaces.append(full)
        self._save()
        path = os.path.join(sandbox.RUN_NETNS, full)
        _ip(path, "link set lo up")
        return path

    def _path(self, name: str) -> str:
        return os.path.join(sandbox.RUN_NETNS, f"npl-{self.name}-{name}")

    def _write_nodes_file(self) -> None:
        family = self.record.underlay_family
        nodes = [topology.node_addressing(topology.node_number(n), family) for n in self.record.nodes]
        tmp = self.nodes_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(topology.node_list(nodes), f, indent=1)
        os.replace(tmp, self.nodes_file)      # agents poll it; never show them half a file

    # -- agents ---------------------------------------------------------------

    def node_dir(self, node: str) -> str:
        return os.path.join(self.dir, node)

    @property
    def nodes_file(self) -> str:
        return os.path.join(self.dir, "nodes.json")

    def _start_agent(self, node: str) -> None:
        rec, home = self.record.nodes[node], self.node_dir(node)
        os.makedirs(home, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):    # a previous agent's status must not count as ready
            os.unlink(f"{home}/network.json")
        source = ["--kubeconfig", self.record.kubeconfig] if self.record.kubeconfig else ["--nodes-file", self.nodes_file]
        argv = [sys.executable, "-m", "netplane", "agent", "--node-name", node, *source,
                "--mode", self.record.mode, "--resync-interval", str(self.record.resync_interval),
                "--state-file", f"{home}/node.json", "--status-file", f"{home}/network.json",
                "--log-file", f"{home}/agent.log"]
        rec.agent_pid = self._daemon(rec.netns, argv, f"{home}/agent.out", f"the agent on {node}")
        self._save()

    def _daemon(self, netns: str, argv: list[str], output: str, what: str, preexec=None) -> int:
        """Start a lab process (its argv must name a path in the lab directory) and return its pid."""
        with open(output, "ab") as out:
            proc = subprocess.Popen(sandbox.enter(netns, argv), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec)
        # until the child has exec'd, its command line is ours, not the daemon's (nsenter execs: same pid)
        sandbox.wait_for(lambda: _ours(proc.pid, self.dir) or _exited(proc.pid), timeout=10,
                         what=f"{what} to start")
        return proc.pid

    def wait_ready(self, node: str, timeout: float = 20.0) -> dict:
        """Wait until the node's agent serves the plugin and its pod network converged."""
        rec = self.record.nodes[node]
        fd = open_netns(rec.netns)
        try:
            # exited, not "cmdline does not match": during an exec the command line reads empty
            sandbox.wait_for(lambda: _exited(rec.agent_pid) or
                             (answers(netns_fd=fd) and self.network_status(node).get("ready")),
                             timeout=timeout, what=f"the agent on {node}")
        finally:
            os.close(fd)
        if _exited(rec.agent_pid):
            raise LabError(f"the agent on {node} exited: {self._tail(node, 'agent')}")
        return self.network_status(node)

    def _tail(self, node: str, what: str, lines: int = 5) -> str:
        """The end of a node process's log and output, for an error message
        (the lab directory, and the log with it, goes when a failed up tears down)."""
        text = []
        for suffix in ("log", "out"):
            with contextlib.suppress(OSError):
                with open(os.path.join(self.node_dir(node), f"{what}.{suffix}"), errors="replace") as f:
                    text += f.read().splitlines()[-lines:]
        return " | ".join(text) or "no log"

    def network_status(self, node: str) -> dict:
        try:
            with open(os.path.join(self.node_dir(node), "network.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def stop_agent(self, node: str) -> None:
        rec = self.record.nodes[node]
        _stop(rec.agent_pid, self.dir)
        rec.agent_pid = 0
        self._save()

    def restart_agent(self, node: str) -> None:
        self.stop_agent(node)
        self._start_agent(node)
        self.wait_ready(node)

    # -- pods -----------------------------------------------------------------

    def add_pod(self, node: str, pod: str) -> PodRecord:
        netns = self._netns(pod)
        out = runtime.invoke(self.plugin, runtime.env_for("ADD", container_id=f"lab-{pod}", netns=netns,
                                                          ifname="eth0"), self.cni_conf(node),
                             node_netns=self.record.nodes[node].netns)
        if not out.ok:
            raise LabError(f"CNI ADD for {pod} on {node} failed: {out.stdout.decode(errors='replace').strip()}")
        ips = [ip["address"].split("/")[0] for ip in out.json()["ips"]]
        self.record.pods[pod] = PodRecord(node, netns, ips)
        self._save()
        return self.record.pods[pod]

    @property
    def plugin(self) -> str:
        return os.path.join(self.dir, "bin", "netplane")

    def cni_conf(self, node: str) -> dict:
        home = self.node_dir(node)
        return {"cniVersion": "1.0.0", "name": "lab", "type": "netplane",
                "stateFile": f"{home}/node.json", "dataDir": f"{home}/ipam"}

    # -- changing the cluster -------------------------------------------------

    def remove_node(self, node: str) -> None:
        """Take a node out of the cluster: out of the nodes file, agent and namespaces gone."""
        rec = self.record.nodes.pop(node)
        self._write_nodes_file()
        _stop(rec.agent_pid, self.dir)
        for pod in [p for p, r in self.record.pods.items() if r.node == node]:
            self._delete_netns(self.record.pods.pop(pod).netns)
        self._delete_netns(rec.netns)
        self._save()

    def _delete_netns(self, path: str) -> None:
        name = os.path.basename(path)
        sandbox.delete_netns(name)
        if name in self.record.namespaces:
            self.record.namespaces.remove(name)

    # -- running things in it -------------------------------------------------

    def netns(self, where: str) -> str:
        """The namespace path of a node or a pod, by name."""
        if where in self.record.nodes:
            return self.record.nodes[where].netns
        if where in self.record.pods:
            return self.record.pods[where].netns
        if where == "client" and self.record.client:
            return self.record.client
        raise LabError(f"no node or pod named {where} in lab {self.name}")

    def run(self, where: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(sandbox.enter(self.netns(where), argv), preexec_fn=self._joiner(where), **kwargs)

    def spawn(self, where: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """A process in the lab; the caller stops it (by this Popen)."""
        return subprocess.Popen(sandbox.enter(self.netns(where), argv), preexec_fn=self._joiner(where), **kwargs)

    def cgroup(self, where: str) -> str | None:
        """The cgroup of a node, which its pods' processes share (None: the client, the underlay)."""
        node = where if where in self.record.nodes else getattr(self.record.pods.get(where), "node", None)
        return cgroups.node_cgroup(self.name, node) if node else None

    def _joiner(self, where: str):
        path = self.cgroup(where)
        return cgroups.joiner(path) if path else None

    # -- services: echo servers, the proxy, an external client ----------------

    def start(self, key: str, where: str, argv: list[str], output: str) -> int:
        """A named lab process in a node or pod (stopped by stop(key) or down())."""
        self.stop(key)
        pid = self._daemon(self.netns(where), argv, output, key, self._joiner(where))
        self.record.processes[key] = pid
        self._save()
        return pid

    def stop(self, key: str) -> None:
        pid = self.record.processes.pop(key, 0)
        if pid:
            _stop(pid, self.dir)
            self._save()

    def serve(self, pod: str, port: int = 8080, wait: bool = True) -> None:
        """The echo server (netplane/lab/echo.py) in a pod; returns once it
        listens (a pod is ready only then, as a readiness probe would say),
        or at once without `wait` (then wait_serving() before using it)."""
        self.start(f"echo/{pod}", pod, [sys.executable, "-m", "netplane.lab.echo", "--name", pod,
                                        "--port", str(port), "--marker", f"{self.dir}/echo"],
                   os.path.join(self.dir, f"echo-{pod}.out"))
        if wait:
            self.wait_serving(pod, port)

    def wait_serving(self, pod: str, port: int = 8080) -> None:
        sandbox.wait_for(lambda: self.run(pod, ["ss", "-Hltn", f"sport = :{port}"]).stdout.strip() != "",
                         timeout=10, interval=0.05, what=f"the echo server in {pod} to listen")

    @property
    def manifests_dir(self) -> str:
        return os.path.join(self.dir, "manifests")

    @property
    def bpffs_dir(self) -> str:
        """The lab's own bpffs (mounted when a proxy needs it, unmounted by down())."""
        return os.path.join(self.dir, "bpf")

    def _mode_args(self, node: str, mode: str) -> tuple[str, ...]:
        """What the modes need from the lab: the eBPF mode, the node's cgroup and
        a pin directory (given in every mode: a proxy switched to another mode
        finds the eBPF mode's objects there, to remove them); the IPVS mode,
        strict ARP."""
        cgroups.mount_bpffs(self.bpffs_dir)
        # The lab routes the service range on-link (eth0): without strict ARP, a
        # node would answer ARP for the addresses on its np-ipvs0 (the IPVS mode's),
        # and serve another node's pods the Services that node has not got.
        return ("--ebpf-cgroup-path", self.cgroup(node), "--ebpf-pin-path", os.path.join(self.bpffs_dir, node),
                "--ipvs-strict-arp")

    def start_proxy(self, node: str, *extra: str, source: tuple[str, ...] = (), mode: str = "iptables") -> None:
        """`netplane proxy --mode MODE` on a node, reading the lab's manifests
        directory (or `source`, e.g. ("--kubeconfig", path))."""
        rec, home = self.record.nodes[node], self.node_dir(node)
        os.makedirs(self.manifests_dir, exist_ok=True)
        # a real node reaches service IPs through its default route; the lab's
        # nodes have none (nothing may leave the lab), so name the service range.
        # Load-balancer IPs are local on every node, as a cloud's guest agent
        # makes them: the LB delivers to the node, the proxy takes it from there.
        _ip(rec.netns, *(f"route replace {cidr} dev eth0" for cidr in topology.SERVICE_CIDRS),
            f"route replace local {topology.VIP_RANGE} dev lo")
        argv = [*self._proxy_argv(node, mode, extra), *(source or ("--manifests", self.manifests_dir)),
                "--min-sync-period", "0.2s", "--log-file", f"{home}/proxy.log"]
        self.record.proxy_mode = mode
        self.start(f"proxy/{node}", node, argv, f"{home}/proxy.out")

    def cleanup_proxy(self, node: str, *extra: str, mode: str = "iptables", timeout: float = 120.0) -> None:
        """`netplane proxy --cleanup` on a node, as an operator leaving a mode
        runs it (the proxy stopped first): the node is left without the mode's
        rules, maps and devices."""
        done = self.run(node, [*self._proxy_argv(node, mode, extra), "--cleanup"], timeout=timeout)
        if done.returncode:
            raise LabError(f"`netplane proxy --mode {mode} --cleanup` on {node} failed: "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")

    def _proxy_argv(self, node: str, mode: str, extra: tuple[str, ...]) -> list[str]:
        rec = self.record.nodes[node]
        return [sys.executable, "-m", "netplane", "proxy", "--mode", mode,
                "--node-name", node, "--node-ip", ",".join(rec.internal_ips),
                "--cluster-cidr", ",".join(topology.CLUSTER_CIDRS), "--service-cidr", ",".join(topology.SERVICE_CIDRS),
                *self._mode_args(node, mode), *extra]

    def proxies_synced_since(self, since: float) -> bool:
        return all(self.proxy_synced_since(node, since) for node in self.record.nodes)

    def proxy_synced_since(self, node: str, since: float) -> bool:
        """Whether the node's proxy reports a sync that put in everything it
        had heard of, finished after `since` (a time.time()). /healthz answers
        200 before the first sync, so its status alone proves nothing;
        lastUpdated does, whatever the mode."""
        last = self.proxy_last_sync(node)
        return last is not None and last > since

    def proxy_last_sync(self, node: str) -> float | None:
        """When the node's proxy finished its last complete sync (time.time(),
        /healthz's lastUpdated); None before the first."""
        done = self.run(node, ["curl", "-s", "--max-time", "2", "http://127.0.0.1:10256/healthz"])
        try:
            return rfc3339_seconds(json.loads(done.stdout)["lastUpdated"])
        except (ValueError, KeyError, TypeError):
            return None

    def add_client(self) -> str:
        """A namespace outside the cluster on the underlay segment, with the
        client addresses and a route to the service VIP range via node1 (as a
        cloud load balancer would send it)."""
        if self.record.client:
            return self.record.client
        netns = self._netns("client")
        _ip(self._path("underlay"), f"link add client type veth peer name eth0 netns {os.path.basename(netns)}",
            "link set client master ul0 up")
        subprocess.run(sandbox.enter(netns, ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"]), check=True)
        first = self.record.nodes[min(self.record.nodes, key=topology.node_number)].internal_ips
        via4 = next(ip for ip in first if ":" not in ip)
        _ip(netns, "link set eth0 up", *(f"addr add {a} dev eth0" + (" nodad" if ":" in a else "")
                                         for a in topology.CLIENT_ADDRESSES),
            f"route add {topology.VIP_RANGE} via {via4}")
        self.record.client = netns
        self._save()
        return netns

    # -- persistence and teardown ---------------------------------------------

    def exists(self) -> bool:
        return os.path.exists(self.dir) or bool(self._leftover_namespaces())

    def load(self) -> "Lab":
        try:
            with open(os.path.join(self.dir, "lab.json")) as f:
                raw = json.load(f)
            raw["nodes"] = {k: NodeRecord(**v) for k, v in raw["nodes"].items()}
            raw["pods"] = {k: PodRecord(**v) for k, v in raw["pods"].items()}
            self.record = LabRecord(**raw)
        except FileNotFoundError:
            raise LabError(f"no lab named {self.name} (nothing at {self.dir}); run `netplane lab up`") from None
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise LabError(f"lab record {self.dir}/lab.json is unreadable ({err}); `netplane lab down` "
                           "still removes everything") from None
        return self

    def _save(self) -> None:
        tmp = os.path.join(self.dir, "lab.json.tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self.record), f, indent=1)
        os.replace(tmp, os.path.join(self.dir, "lab.json"))

    def down(self) -> list[str]:
        """Remove everything; works from a partial or lost record. Returns what it removed."""
        removed = []
        if self.record is None:
            try:
                self.load()
            except LabError:
                pass
        recorded = [rec.agent_pid for rec in self.record.nodes.values()] if self.record else []
        recorded += list(self.record.processes.values()) if self.record else []
        # also processes the record lost track of: their command line names this lab's directory
        for pid in recorded + [p for p in _lab_pids(self.dir) if p not in recorded]:
            if _stop(pid, self.dir):
                removed.append(f"process {pid}")
        for name in reversed(self._leftover_namespaces()):
            sandbox.delete_netns(name)
            removed.append(f"netns {name}")
        removed += cgroups.unmount_bpffs(self.bpffs_dir)
        removed += cgroups.remove(self.name)
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
            removed.append(self.dir)
        self._remove_empty_root()
        self.record = None
        return removed

    def _remove_empty_root(self) -> None:
        """The last lab out removes /run/netplane/lab (and /run/netplane), which `up` made."""
        if os.path.dirname(self.dir) != DEFAULT_ROOT:
            return                                  # a caller's own root stays
        for path in (DEFAULT_ROOT, os.path.dirname(DEFAULT_ROOT)):
            with contextlib.suppress(OSError):      # not empty: another lab, or an agent's state
                os.rmdir(path)

    def _leftover_namespaces(self) -> list[str]:
        prefix = f"npl-{self.name}-"
        made = self.record.namespaces if self.record else []
        found = [n for n in sandbox.listdir(sandbox.RUN_NETNS) if n.startswith(prefix)]
        return made + sorted(n for n in found if n not in made)


def _check_args(nodes: int, mode: str, pods_per_node: int, underlay_family: int) -> None:
    if not 1 <= nodes <= topology.MAX_NODES:
        raise LabError(f"--nodes {nodes}: must be 1..{topology.MAX_NODES}")
    if mode not in MODES:
        raise LabError(f"--mode {mode}: must be one of {', '.join(MODES)}")
    if not 0 <= pods_per_node <= 50:
        raise LabError(f"--pods-per-node {pods_per_node}: must be 0..50")
    if underlay_family not in (4, 6):
        raise LabError(f"underlay family {underlay_family}: must be 4 or 6")


def _ip(netns_path: str, *commands: str) -> None:
    """Run `ip` commands inside a namespace, in one batch."""
    proc = subprocess.run(sandbox.enter(netns_path, ["ip", "-batch", "-"]), input="\n".join(commands) + "\n",
                          text=True, capture_output=True)
    if proc.returncode:
        raise LabError(f"ip in {os.path.basename(netns_path)} failed: {proc.stderr.strip()}")


def _ours(pid: int, lab_dir: str) -> bool:
    """Is `pid` alive and one of this lab's processes (agent, proxy, echo
    server: `-m netplane...` with a path in the lab directory)? Never
    signal a recycled pid."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return any(arg.startswith(lab_dir.encode() + b"/") for arg in argv) and \
        any(arg.startswith(b"netplane") for arg in argv)


def _lab_pids(lab_dir: str) -> list[int]:
    return [int(p) for p in sandbox.listdir("/proc") if p.isdigit() and _ours(int(p), lab_dir)]


def _stop(pid: int, lab_dir: str, timeout: float = 10.0) -> bool:
    if not _ours(pid, lab_dir):
        return False
    with contextlib.suppress(ProcessLookupError):     # it may have exited just now
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not _exited(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not _exited(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while not _exited(pid):
            time.sleep(0.02)
    return True


def _exited(pid: int) -> bool:
    """Fully exited: reaped, or a zombie. (Its command line empties earlier,
    while it still holds its sockets, so that is no sign.)"""
    if pid <= 0:
        return True                                   # never started (waitpid(0) would mean "any child")
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:     # our own child (a test's lab): reap it
            return True
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
