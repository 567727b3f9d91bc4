"""Every verb in every supported version, checked against the kernel."""
import pytest

from netplane.cni import versions


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_every_verb_in_every_version(node, mode, version):
    node.pod("p1")
    out = node.cni("ADD", "p1", cniVersion=version)
    assert out.ok, out.stdout
    result = out.json()
    assert result["cniVersion"] == version
    assert [i["name"] for i in result["interfaces"]][0] == "np0"
    pod_if = result["interfaces"][2]
    assert pod_if["name"] == "eth0" and pod_if["sandbox"] == node.pods["p1"]
    assert ("mtu" in pod_if) == (version == "1.1.0")
    assert all(("version" in ip) == (version < "1.0.0") for ip in result["ips"])
    assert {ip["address"] for ip in result["ips"]} == node.pod_addresses("p1")   # the kernel agrees
    assert {r["dst"] for r in result["routes"]} == {"0.0.0.0/0", "::/0"}

    if versions.allows(version, "CHECK"):
        check = node.cni("CHECK", "p1", cniVersion=version, prevResult=result)
        assert check.ok and check.stdout == b"", check.stdout
    else:
        assert node.cni("CHECK", "p1", cniVersion=version, prevResult=result).json()["code"] == 1

    if versions.allows(version, "GC"):
        assert node.cni("STATUS", cniVersion=version).ok
        keep = [{"containerID": "p1", "ifname": "eth0"}]
        assert node.cni("GC", cniVersion=version, **{"cni.dev/valid-attachments": keep}).ok
        assert node.ping("p1", "10.88.0.1"), "GC must keep a valid attachment"

    version_out = node.cni("VERSION", cniVersion=version)
    assert version_out.json() == {"cniVersion": version, "supportedVersions": list(versions.SUPPORTED)}

    delete = node.cni("DEL", "p1", cniVersion=version, prevResult=result)
    assert delete.ok and delete.stdout == b""
    assert node.reserved() == {}
    node.wait_for_no_veths()
    assert not [l for l in node.ip(node.pods["p1"], "link", "show") if l["ifname"] == "eth0"]


def test_result_matches_the_wiring(node, mode):
    result = node.add("p1")
    [bridge] = node.ip(node.netns, "-d", "addr", "show", "dev", "np0")
    assert {f"{a['local']}/{a['prefixlen']}" for a in bridge["addr_info"] if a["scope"] == "global"} == \
        {"10.88.0.1/24", "fd00:88::1/64"}
    assert bridge["address"] == result["interfaces"][0]["mac"]
    host = result["interfaces"][1]["name"]
    [host_link] = node.ip(node.netns, "-d", "link", "show", host)
    assert host_link["master"] == "np0" and host_link["mtu"] == 1400
    assert host_link["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert host_link["address"] == result["interfaces"][1]["mac"]
    [pod_link] = node.ip(node.pods["p1"], "-d", "link", "show", "eth0")
    assert pod_link["mtu"] == 1400 and pod_link["address"] == result["interfaces"][2]["mac"]
    assert "UP" in pod_link["flags"]
    routes = node.ip(node.pods["p1"], "route", "show", "default") + node.ip(node.pods["p1"], "-6", "route", "show", "default")
    assert {r["gateway"] for r in routes} == {"10.88.0.1", "fd00:88::1"}
    forwarding = node.sb.run(node.netns, ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"])
    assert forwarding.stdout.decode().split() == ["1", "1"]


def test_single_stack_ipv4(node, mode):
    result = node.add("p1", subnet="10.88.0.0/24")
    assert [ip["address"] for ip in result["ips"]] == ["10.88.0.2/24"]
    assert [r["dst"] for r in result["routes"]] == ["0.0.0.0/0"]
