"""kube-proxy's conntrack: settings applied inside a throwaway network
namespace, as the proxy applies them inside a node's: the timeouts are the
namespace's own and change there; nf_conntrack_max and the hash size are
the host's, which the kernel keeps out of reach (a warning, not a failure).
The host's values must not move.

`apply` runs in a child process entered into the namespace; the child
first checks that it is not in the host's namespace, so a broken nsenter
can never point it at the host's sysctls.
"""
import json
import os
import sys

import pytest

NETFILTER = "/proc/sys/net/netfilter"
HASHSIZE = "/sys/module/nf_conntrack/parameters/hashsize"
SYSCTLS = ("nf_conntrack_max", "nf_conntrack_tcp_timeout_established", "nf_conntrack_tcp_timeout_close_wait",
           "nf_conntrack_tcp_be_liberal", "nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream")

CHILD = """
import json, logging, os, sys
from netplane.proxy.conntrack_settings import ConntrackSettings, apply

host_ns, settings = int(sys.argv[1]), json.loads(sys.argv[2])
assert os.stat("/proc/self/ns/net").st_ino != host_ns, "not in a namespace of our own: refusing"
warnings = []
handler = logging.Handler()
handler.emit = lambda r: warnings.append({"sysctl": getattr(r, "sysctl", None), "msg": r.getMessage()})
handler.setLevel(logging.WARNING)
logging.getLogger("netplane.proxy").addHandler(handler)
changed = apply(ConntrackSettings(**settings), ncpu=2)
values = {n: int(open(f"/proc/sys/net/netfilter/{n}").read()) for n in sys.argv[3:]}
print(json.dumps({"changed": changed, "warnings": warnings, "values": values}))
"""


def host_values() -> dict:
    values = {n: int(open(f"{NETFILTER}/{n}").read()) for n in SYSCTLS}
    values["hashsize"] = int(open(HASHSIZE).read())
    return values


def apply_in(sb, netns: str, **settings) -> dict:
    out = sb.run(netns, [sys.executable, "-c", CHILD, str(os.stat("/proc/self/ns/net").st_ino),
                         json.dumps(settings), *SYSCTLS], text=True)
    return json.loads(out.stdout)


@pytest.fixture
def host():
    if not os.path.exists(f"{NETFILTER}/nf_conntrack_max"):
        pytest.skip("the nf_conntrack module is not loaded on this machine")
    before = host_values()
    yield before
    assert host_values() == before, "the host's conntrack settings changed"


def test_timeouts_are_set_in_the_namespace_and_the_host_keeps_its_own(sb, host):
    netns = sb.netns("ct")
    wanted = {"tcp_established_timeout": host["nf_conntrack_tcp_timeout_established"] + 7,
              "tcp_close_wait_timeout": host["nf_conntrack_tcp_timeout_close_wait"] + 11,
              "udp_timeout": host["nf_conntrack_udp_timeout"] + 13,
              "udp_stream_timeout": host["nf_conntrack_udp_timeout_stream"] + 17,
              "tcp_be_liberal": True, "max_per_core": 0}
    result = apply_in(sb, netns, **wanted)
    values = result["values"]
    assert values["nf_conntrack_tcp_timeout_established"] == wanted["tcp_established_timeout"]
    assert values["nf_conntrack_tcp_timeout_close_wait"] == wanted["tcp_close_wait_timeout"]
    assert values["nf_conntrack_udp_timeout"] == wanted["udp_timeout"]
    assert values["nf_conntrack_udp_timeout_stream"] == wanted["udp_stream_timeout"]
    assert values["nf_conntrack_tcp_be_liberal"] == 1
    assert len(result["changed"]) == 5 and result["warnings"] == []
    # a second start finds them set: nothing to change
    assert apply_in(sb, netns, **wanted)["changed"] == []


def test_a_max_above_the_hosts_is_a_warning_inside_a_namespace(sb, host):
    """The namespace's nf_conntrack_max is read-only and the hash size is
    refused outside the initial namespace: both warn, the timeouts still apply."""
    netns = sb.netns("ct")
    floor = 8 * host["hashsize"] + host["nf_conntrack_max"]       # above both: max and hash size are asked for
    result = apply_in(sb, netns, max_per_core=1, min=floor, tcp_established_timeout=3600)
    assert [w["sysctl"] for w in result["warnings"]] == ["net.netfilter.nf_conntrack_max", "nf_conntrack hashsize"]
    assert all("only the host can raise it" in w["msg"] for w in result["warnings"])
    assert result["changed"][0].startswith("net.netfilter.nf_conntrack_tcp_timeout_established=3600")
    assert result["values"]["nf_conntrack_max"] == host["nf_conntrack_max"]


def test_a_max_the_host_already_meets_is_quiet(sb, host):
    netns = sb.netns("ct")
    result = apply_in(sb, netns, max_per_core=1, min=host["nf_conntrack_max"], tcp_established_timeout=0,
                      tcp_close_wait_timeout=0)
    assert result == {"changed": [], "warnings": [], "values": result["values"]}
