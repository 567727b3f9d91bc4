"""The benchmark's throwaway lab: two nodes and an external client.

node1 runs the proxy under test (one subject at a time) and the client pod
node1-pod1; node2 runs no proxy and holds the measured Service's two
possible endpoints, node2-pod1 (pod A) and node2-pod2 (pod B), each with
the lab's echo server on 8080 and iperf3 on 5201. The external client
namespace sits on the underlay beside the nodes, with a route to node2's
pods (for the floor) and the VIP range via node1. Everything lives in the
lab's namespaces and cgroups and goes with `down()`, also on failure.
"""
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from netplane import sandbox
from netplane.bench.procs import end_by_stdin
from netplane.bench.first_packet import EXTERNAL, client_route, failed_syncs, node_ip
from netplane.bench.proxy import cluster
from netplane.bench.proxy.subjects import Subject
from netplane.lab import Lab

PROXY_NODE = "node1"
CLIENT_POD = "node1-pod1"
PODS = ("node2-pod1", "node2-pod2")           # pod A, pod B
CLIENTS = (CLIENT_POD, EXTERNAL)


class Client:
    """netplane.bench.proxy.client running in a pod or the client namespace."""

    def __init__(self, lab: Lab, where: str) -> None:
        self.where, self.err_path = where, os.path.join(lab.dir, f"client-{where}.err")
        with open(self.err_path, "wb") as err:
            self.proc = lab.spawn(where, [sys.executable, "-m", "netplane.bench.proxy.client"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)

    def ask(self, job: str, **kwargs) -> dict:
        self.proc.stdin.write(json.dumps({"job": job, **kwargs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the client in {self.where} exited: "
                               f"{Path(self.err_path).read_text(errors='replace').strip()[-500:]}")
        return json.loads(line)

    def stop(self) -> None:
        end_by_stdin(self.proc)


class Testbed:
    def __init__(self, name: str = "npbench") -> None:
        self.lab, self.clients, self.iperf = Lab(name), {}, None
        self.proxy: Subject | None = None

    def up(self) -> "Testbed":
        self.lab.up(2, "routed", pods_per_node=0)             # a failed up removes what it made
        try:
            for pod in (CLIENT_POD, *PODS):
                self.lab.add_pod(pod.split("-")[0], pod)
            self.lab.add_client()
            client_route(self.lab, cluster.SERVER_NODE)
            # every server and client starts at once, then each is waited for (in the VM an
            # interpreter's start takes seconds)
            for pod in PODS:
                self.lab.serve(pod, wait=False)
            # iperf3 only in pod A: the throughput step runs while the Service's endpoint is there
            self.iperf = self.lab.spawn(PODS[0], ["iperf3", "-s", "-J", "-p", str(cluster.IPERF_PORT)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            self.clients = {where: Client(self.lab, where) for where in CLIENTS}
            for pod in PODS:
                self.lab.wait_serving(pod)
            wait_listening(self.lab, PODS[0], cluster.IPERF_PORT)
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Stop our helpers (by the Popens that started them: their command lines do not name the
        lab, so the lab's removal would not find them), then remove the lab, whatever failed."""
        try:
            for c in self.clients.values():
                c.stop()
            if self.iperf is not None:
                self.iperf.terminate()
                self.iperf.wait()
        finally:
            self.clients, self.iperf = {}, None
            self.lab.down()

    # -- addresses -----------------------------------------------------------

    def pod_ip(self, pod: str) -> str:
        return next(ip for ip in self.lab.record.pods[pod].ips if ":" not in ip)

    @property
    def node_ip(self) -> str:
        return node_ip(PROXY_NODE)

    @property
    def client_ip(self) -> str:
        from netplane.bench.first_packet import EXTERNAL_IP
        return EXTERNAL_IP

    def manifests(self, services: int) -> Path:
        return Path(self.lab.dir, f"manifests-{services}")

    # -- the proxy under test ---------------------------------------------------

    def start_proxy(self, subject: Subject, services: int) -> int:
        """A fresh daemon for `subject`, with fresh log files (the log decides when a subject is
        broken, and must not hold the previous subject's lines)."""
        self.proxy = subject
        for name in ("proxy.log", "proxy.out"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.lab.node_dir(PROXY_NODE), name))
        self.lab.start_proxy(PROXY_NODE, *subject.flags, source=("--manifests", str(self.manifests(services))),
                             mode=subject.mode)
        return self.lab.record.processes[f"proxy/{PROXY_NODE}"]

    def stop_proxy(self, cleanup: bool = True) -> None:
        """Stop the proxy, then `--cleanup` its mode and forget the node's
        connections, so the next subject starts from a bare node."""
        if self.proxy is None:
            return
        subject, self.proxy = self.proxy, None
        self.lab.stop(f"proxy/{PROXY_NODE}")
        if cleanup:
            self.lab.cleanup_proxy(PROXY_NODE, *subject.flags, mode=subject.mode)

    def forget_connections(self) -> None:
        """Empty node1's conntrack table: before a subject (nothing of the previous one's
        connections may match its own), and after its full sync (steps.full_sync says why)."""
        self.lab.run(PROXY_NODE, ["conntrack", "-F"])

    def check_backends(self) -> None:
        """The Service's pods still serve: every number after a dead backend would be a failure
        of the lab, blamed on a mode."""
        for pod in PODS:
            pid = self.lab.record.processes.get(f"echo/{pod}", 0)
            if not pid or _zombie(pid):
                raise RuntimeError(f"the echo server in {pod} exited; the run cannot go on")
        if self.iperf is not None and self.iperf.poll() is not None:
            raise RuntimeError(f"iperf3 in {PODS[0]} exited ({self.iperf.returncode}); the run cannot go on")

    def proxy_pid(self) -> int:
        return self.lab.record.processes[f"proxy/{PROXY_NODE}"]

    def proxy_problem(self) -> str | None:
        """Why the proxy cannot be waited for any longer: it exited, or its syncs keep failing."""
        pid, home = self.proxy_pid(), self.lab.node_dir(PROXY_NODE)
        if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
            tail = Path(home, "proxy.out").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return f"the proxy exited: {tail[0][:300]}"
        failed = failed_syncs(os.path.join(home, "proxy.log"))
        if len(failed) >= 3:
            return f"{len(failed)} syncs failed; the last: {failed[-1].strip().splitlines()[-1][:300]}"
        return None

    def last_sync(self) -> float | None:
        return self.lab.proxy_last_sync(PROXY_NODE)


def wait_listening(lab: Lab, where: str, port: int) -> None:
    sandbox.wait_for(lambda: lab.run(where, ["ss", "-Hltn", f"sport = :{port}"]).stdout.strip() != "",
                     timeout=10, interval=0.05, what=f"iperf3 in {where} to listen")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True

