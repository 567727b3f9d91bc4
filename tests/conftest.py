"""Shared test configuration: the tiers, and the guard on the host.

- unit:   no root and no kernel changes (`pytest tests/unit`).
- kernel: root and throwaway network namespaces on this machine's kernel.
- vm:     Debian 12's 6.1 kernel (IPVS) in a VM that netplane.vm boots with
          virtme-ng; tests/vm, skipped anywhere else (`make test-vm`).
`make test` runs unit and kernel as root, then the vm tier in one VM, where
this file's guard checks the guest's namespace. Whenever the tests run as root,
every test is bracketed by a snapshot of the host's network namespace,
and a test that changed it fails: nothing may touch the host.
"""
import json
import os
import re
import subprocess

import pytest

from netplane import sandbox


def _ip_json(*args: str):
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True).stdout
    return json.loads(out or "[]")


def host_snapshot() -> dict:
    # Link details without counters, addresses, routes and the sysctls the
    # plugin sets: enough to see any link, address, route or forwarding
    # change. Namespace bind mounts, top-level cgroups (the podman test
    # makes one, the labs one each), nftables tables and bpffs mounts are
    # listed too, so leaks show up.
    links = [{k: v for k, v in link.items() if k not in ("stats64", "stats")}
             for link in _ip_json("-d", "link", "show")]
    return {
        "links": links,
        "addresses": [(a["ifname"], a.get("addr_info")) for a in _ip_json("addr", "show")],
        "routes": _ip_json("route", "show", "table", "all") + _ip_json("-6", "route", "show", "table", "all"),
        "forwarding": [open(p).read() for p in ("/proc/sys/net/ipv4/ip_forward",
                                                "/proc/sys/net/ipv6/conf/all/forwarding")],
        "netns": sorted(filter(_not_anothers, sandbox.listdir(sandbox.RUN_NETNS))),
        "cgroups": sorted(filter(_not_anothers, (f"{h}/{d}" for h in os.listdir(CGROUPS)
                                                 for d in _subdirs(f"{CGROUPS}/{h}")))),
        # the proxy's own kernel objects, had a test reached the host's: nftables tables, bpffs mounts
        "nft": subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout,
        "mounts": sorted(line.split()[4] for line in open("/proc/self/mountinfo") if " - bpf " in line),
    }


CGROUPS = "/sys/fs/cgroup"
# Sandboxes (np.<pid>.) and test labs (t<pid>x<n>) name the process that made them.
OWNER = re.compile(r"(?:^|/|-)(?:np\.|t)(\d+)[.x]")


def _not_anothers(name: str) -> bool:
    """Another live test run's namespaces and cgroups come and go on their
    own (two runs may share the machine); ours and everyone else's count."""
    owner = OWNER.search(name)
    return not owner or int(owner.group(1)) == os.getpid() or not sandbox.alive(int(owner.group(1)))


def _subdirs(path: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(path) if e.is_dir()]
    except OSError:
        return []


@pytest.fixture(scope="session", autouse=True)
def _reap_leftovers_of_killed_runs():
    if os.geteuid() == 0:
        sandbox.reap_stale()


@pytest.fixture(autouse=True)
def host_untouched():
    if os.geteuid() != 0:
        yield
        return
    before = host_snapshot()
    yield
    after = host_snapshot()
    changed = [key for key in before if before[key] != after[key]]
    assert not changed, f"the test changed the host network namespace: {changed}"
