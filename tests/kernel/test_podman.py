"""A real container runtime: podman (CNI backend, runc) on a netplane network.

podman runs inside the test's node namespace (nsenter, not `ip netns exec`,
which remounts /sys and hides the cgroup mounts runc needs). Its storage,
configuration and cgroup parent are private to the test and removed after.
Images cannot be pulled here, so containers run busybox from a rootfs dir.
"""
import os
import shutil
import subprocess
import tempfile

import pytest

from netplane import sandbox
from netplane.cni import install
from netplane.cni.ipam.store import DiskStore

NETWORK = "nptest"


class Podman:
    def __init__(self, node, tmp) -> None:
        self.node, self.tmp = node, tmp
        self.storage = tempfile.mkdtemp(prefix="nppm")   # podman wants a runroot under 50 characters
        self.cgroup_parent = f"/netplane-test-{os.getpid()}"
        bin_dir, conf_dir = tmp / "cni-bin", tmp / "net.d"
        install.install(str(bin_dir), str(conf_dir), name=NETWORK,
                        plugin_conf={"subnet": ["10.91.0.0/24", "fd00:91::/64"], "dataDir": str(tmp / "ipam")})
        (tmp / "containers.conf").write_text(
            f'[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["{bin_dir}", "/usr/lib/cni"]\n'
            f'network_config_dir = "{conf_dir}"\n'
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n')
        rootfs = tmp / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
        for applet in ("sh", "ping", "sleep", "ip"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        self.rootfs = rootfs

    def __call__(self, *args: str, check: bool = True) -> str:
        argv = ["nsenter", f"--net={self.node.netns}", "podman", "--root", f"{self.storage}/root",
                "--runroot", f"{self.storage}/run", "--storage-driver", "vfs", *args]
        env = {**os.environ, "CONTAINERS_CONF": str(self.tmp / "containers.conf")}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout.strip()

    def run(self, name: str) -> str:
        # Lowering rlimits is always allowed; runc's defaults would need
        # CAP_SYS_RESOURCE, which this sandbox does not grant.
        self("run", "-d", "--name", name, "--network", NETWORK, "--cap-add", "NET_RAW",
             "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
             "--cgroup-parent", self.cgroup_parent, "--rootfs", str(self.rootfs), "sleep", "600")
        return self("inspect", name, "--format", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}')

    def close(self) -> None:
        try:
            self("rm", "--force", "--all", "--time", "0", check=False)
            for hierarchy in os.listdir("/sys/fs/cgroup"):
                remove_cgroup_tree(f"/sys/fs/cgroup/{hierarchy}{self.cgroup_parent}")
        finally:
            shutil.rmtree(self.storage, ignore_errors=True)


def remove_cgroup_tree(path: str) -> None:
    """Deepest first, each once its processes are gone: `podman rm` returns
    before conmon has left its cgroup."""
    for cgroup, _, _ in sorted(os.walk(path), key=lambda walk: -len(walk[0])):
        sandbox.wait_for(lambda cgroup=cgroup: not open(f"{cgroup}/cgroup.procs").read().strip(), timeout=20,
                         what=f"the processes in {cgroup} to exit")
        os.rmdir(cgroup)


@pytest.fixture
def podman(node, tmp_path):
    had_cni_cache = os.path.exists("/var/lib/cni")
    p = Podman(node, tmp_path)
    try:
        yield p
    finally:
        try:
            p.close()
        finally:
            if not had_cni_cache:
                shutil.rmtree("/var/lib/cni", ignore_errors=True)   # libcni's result cache, made by podman


def test_busybox_containers_ping_each_other(node, podman):
    node.start_agent()
    ip1, ip2 = podman.run("c1"), podman.run("c2")
    assert ip1.startswith("10.91.0.") and ip2.startswith("10.91.0.") and ip1 != ip2
    podman("exec", "c1", "ping", "-c", "2", "-W", "2", ip2)
    podman("exec", "c2", "ping", "-c", "2", "-W", "2", ip1)
    podman("exec", "c1", "ping", "-c", "1", "-W", "2", "10.91.0.1")
    assert open(node.tmp / "agent.log").read().count("msg=\"ADD ") == 2   # served by the agent
    podman("rm", "--force", "--time", "0", "c1")
    left = DiskStore(str(podman.tmp / "ipam"), NETWORK).owners()
    assert [o.container_id for o in left] == [podman("inspect", "c2", "--format", "{{.Id}}")]
