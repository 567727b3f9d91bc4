"""The IPVS mode's nftables side on this machine's kernel (which has no
IPVS: that is the VM tier's): the real applier's transactions through real
nft, in a namespace of its own, over fakes of IPVS and np-ipvs0. Full and
partial syncs load, the table ends as a fresh full sync leaves it, the
drift check reads it back, and cleanup removes it."""
import json
import sys

import pytest

from netplane import sandbox

pytestmark = pytest.mark.kernel

# runs inside the namespace; prints what it saw as JSON
SCRIPT = """
import json, random, subprocess, sys
sys.path.insert(0, "tests/unit")
import netaddr
from netplane.proxy import build as b
from netplane.proxy.dataplane import Dataplane
from netplane.proxy import modes
from netplane.proxy.ipvs.mode import IpvsApplier
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.settings import Settings
from netplane.proxy.state import snapshot
from netplane.testing.ipvs_fake import FakeDevice, FakeIpvs
from test_ipvs_compile import VARIANTS, endpoints, web

settings = Settings(Node("n1"), (netaddr.IPAddress("192.168.200.11"),), (netaddr.IPNetwork("10.244.0.0/16"),))

def plane():
    device = FakeDevice()
    return Dataplane(modes.get("ipvs"), settings, clean_conntrack=lambda *a: None, sweep=False,
                     applier=lambda f, o: IpvsApplier(f, o, kernel=FakeIpvs(f), device=device,
                                                      write_sysctls=lambda v: None))

def policies(services, slices):
    return {4: family_policies(snapshot(list(services.values()), list(slices.values())).ports, 4, Node("n1"))}

def table():
    out = subprocess.run(["nft", "-j", "list", "table", "ip", "netplane-ipvs"], capture_output=True, text=True)
    items = json.loads(out.stdout)["nftables"]
    return sorted(json.dumps(i, sort_keys=True) for i in items if "metainfo" not in i and "table" not in i)

rnd = random.Random(7)
services = {f"s{i}": web(f"s{i}", f"10.96.0.{i + 1}", **rnd.choice(VARIANTS)) for i in range(8)}
slices = {k: endpoints(k, rnd.randint(0, 3)) for k in services}
p, pol = plane(), policies(services, slices)
p.sync(pol, None)
for _ in range(20):
    name = f"s{rnd.randrange(8)}"
    if rnd.random() < 0.6:
        slices[name] = endpoints(name, rnd.randint(0, 3), base=rnd.randrange(4))
    else:
        services[name] = web(name, f"10.96.0.{int(name[1:]) + 1}", **rnd.choice(VARIANTS))
    new = policies(services, slices)
    p.sync(new, {k for k in set(pol[4]) | set(new[4]) if pol[4].get(k) != new[4].get(k)})
    pol = new
applier = p.appliers[4]
result = {"partial": table(), "drift": applier.drift()}
subprocess.run(["nft", "delete", "table", "ip", "netplane-ipvs"], check=True)
p.syncers[4].plan = None
p.sync(pol, None)
result["full"] = table()
subprocess.run(["nft", "flush", "chain", "ip", "netplane-ipvs", "input"], check=True)
result["flushed"] = applier.drift()
result["cleanup"] = applier.cleanup()
result["left"] = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
print(json.dumps(result))
"""


def test_syncs_load_into_nftables_and_partial_ones_end_where_a_full_one_does():
    with sandbox.Sandbox() as sb:
        done = sb.run(sb.netns("ipvs"), [sys.executable, "-c", SCRIPT], text=True, capture_output=True)
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
    assert got["drift"] is None
    assert got["partial"] == got["full"] and any("classify" in rule for rule in got["full"])
    assert got["flushed"] == "base chain(s) input of table ip netplane-ipvs are gone or flushed"
    assert "IPv4 table ip netplane-ipvs" in got["cleanup"] and "netplane-ipvs" not in got["left"]
