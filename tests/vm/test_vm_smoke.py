"""The VM tier's smoke test: the VM runs Debian 12's 6.1 kernel with IPVS
and the modules the runner loads, and IPVS is programmable in a namespace
of the test's own, both with ipvsadm and with pyroute2's IPVS (which
netplane's IPVS mode builds on), each reading back what the other wrote.
"""
import os
import platform
import socket

import pytest
from pyroute2 import IPVS, IPVSDest, IPVSService

from netplane import sandbox, vm

pytestmark = pytest.mark.vm


def test_the_kernel_is_debians_6_1_with_ipvs():
    assert platform.release().startswith("6.1.0-") and platform.release().endswith("-amd64")
    assert os.path.exists("/proc/net/ip_vs")
    loaded = {line.split()[0] for line in open("/proc/modules")}
    assert set(vm.MODULES) <= loaded


@pytest.fixture
def netns():
    with sandbox.Sandbox() as box:
        path = box.netns("ipvs")
        yield box, path
    assert not os.path.exists(path), "the Sandbox left its namespace behind"


def ipvsadm(box: sandbox.Sandbox, path: str, *args: str) -> str:
    out = box.run(path, ["ipvsadm", *args], text=True, check=False)
    assert out.returncode == 0, f"ipvsadm {' '.join(args)}: {out.stderr}"
    return out.stdout


def test_ipvsadm_writes_what_pyroute2_reads(netns):
    box, path = netns
    assert ipvsadm(box, path, "-Sn") == ""
    ipvsadm(box, path, "-A", "-t", "10.96.0.10:80", "-s", "rr")
    ipvsadm(box, path, "-a", "-t", "10.96.0.10:80", "-r", "10.244.1.5:8080", "-m", "-w", "3")
    ipvsadm(box, path, "-A", "-u", "[fd00:10:96::a]:53", "-s", "mh")
    assert sorted(ipvsadm(box, path, "-Sn").splitlines()) == [
        "-A -t 10.96.0.10:80 -s rr",
        "-A -u [fd00:10:96::a]:53 -s mh",
        "-a -t 10.96.0.10:80 -r 10.244.1.5:8080 -m -w 3",
    ]
    with IPVS(netns=path, flags=0) as ipvs:      # flags=0: never create the namespace
        services = {s["addr"]: s for s in map(IPVSService.from_message, ipvs.service("dump"))}
        [dest] = [IPVSDest.from_message(m) for m in ipvs.dest("dump", service=services["10.96.0.10"])]
    assert sorted((s["protocol"], s["port"], s["sched_name"]) for s in services.values()) == \
        [(socket.IPPROTO_TCP, 80, "rr"), (socket.IPPROTO_UDP, 53, "mh")]
    # from_message leaves fwd_method at IPVSDest's default (3, direct routing): read the attribute
    assert (dest["addr"], dest["port"], dest["weight"], dest["IPVS_DEST_ATTR_FWD_METHOD"]) == \
        ("10.244.1.5", 8080, 3, 0)      # 0: masquerading (NAT)


def test_pyroute2_writes_what_ipvsadm_reads(netns):
    box, path = netns
    service = IPVSService(addr="10.96.0.53", port=53, protocol=socket.IPPROTO_UDP, sched_name="sh")
    with IPVS(netns=path, flags=0) as ipvs:
        ipvs.service("add", service=service)
        ipvs.dest("add", service=service, dest=IPVSDest(addr="10.244.2.9", port=5353, fwd_method=0, weight=2))
    assert ipvsadm(box, path, "-Sn").splitlines() == [
        "-A -u 10.96.0.53:53 -s sh",
        "-a -u 10.96.0.53:53 -r 10.244.2.9:5353 -m -w 2",
    ]
    # IPVS state is per namespace: the VM's own has none of it
    assert ipvsadm(box, "/proc/1/ns/net", "-Sn") == ""
