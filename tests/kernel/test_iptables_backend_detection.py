"""The iptables backend on real binaries, in a namespace of its own: with
rules already in the legacy backend, `auto` writes there and leaves nft
empty; forced to nft, the rules go to nft whatever legacy holds."""
import subprocess
import sys

import pytest

from netplane import sandbox

pytestmark = pytest.mark.kernel

SERVICE = "kind: Service\napiVersion: v1\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n"


def once(netns: str, manifests, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(sandbox.enter(netns, [sys.executable, "-m", "netplane", "proxy", "--once", "--manifests",
                                                str(manifests), "--node-name", "n", "--node-ip", "192.168.200.11",
                                                "--cluster-cidr", "10.244.0.0/16", *flags]),
                          capture_output=True, text=True)


def saved(sb, netns: str, backend: str) -> str:
    return sb.run(netns, [f"iptables-{backend}-save"], text=True, check=False).stdout


@pytest.fixture
def node(tmp_path):
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "s.yaml").write_text(SERVICE)
    with sandbox.Sandbox() as sb:
        netns = sb.netns("node")
        for port in (22, 80, 443):                  # the node's own rules, as kubelet or an admin left them
            sb.run(netns, ["iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j", "ACCEPT"])
        yield sb, netns, manifests


def test_auto_follows_the_rules_already_in_legacy(node):
    sb, netns, manifests = node
    done = once(netns, manifests)
    assert done.returncode == 0, done.stderr
    assert 'msg="iptables backend" backend=legacy reason="it holds 3 rules, nft 0"' in done.stderr
    assert "NP-SERVICES" in saved(sb, netns, "legacy") and "default/s has no endpoints" in saved(sb, netns, "legacy")
    assert "NP-" not in saved(sb, netns, "nft")


def test_a_forced_backend_is_used_whatever_the_other_holds(node):
    sb, netns, manifests = node
    done = once(netns, manifests, "--iptables-backend", "nft")
    assert done.returncode == 0, done.stderr
    assert 'backend=nft reason="set by --iptables-backend / iptables.backend"' in done.stderr
    assert "default/s has no endpoints" in saved(sb, netns, "nft")
    assert "NP-" not in saved(sb, netns, "legacy") and "--dport 443 -j ACCEPT" in saved(sb, netns, "legacy")
