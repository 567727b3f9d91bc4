"""CHECK notices drift; GC and STATUS act on the whole network."""
import pytest

from netplane.cni.errors import CHECK_MISMATCH, NOT_AVAILABLE

V11 = {"cniVersion": "1.1.0"}


def check(node, pod, result):
    return node.cni("CHECK", pod, prevResult=result, **V11)


@pytest.mark.parametrize("drift, phrase", [
    (["ip", "addr", "del", "10.88.0.2/24", "dev", "eth0"], "lacks address"),
    (["ip", "route", "del", "default"], "default route"),
    (["ip", "link", "set", "eth0", "down"], "down"),
])
def test_check_reports_drift_inside_the_pod(node, mode, drift, phrase):
    result = node.add("p1", **V11)
    assert check(node, "p1", result).ok
    node.sb.run(node.pods["p1"], drift)
    out = check(node, "p1", result)
    err = out.json()
    assert not out.ok and err["code"] == CHECK_MISMATCH and phrase in f"{err['msg']}: {err['details']}"


def test_check_reports_a_missing_node_end(node, mode):
    result = node.add("p1", **V11)
    node.sb.run(node.netns, ["ip", "link", "del", result["interfaces"][1]["name"]])
    out = check(node, "p1", result)
    assert out.json()["code"] == CHECK_MISMATCH and "missing" in out.json()["msg"]


def test_check_reports_a_lost_reservation(node, mode):
    result = node.add("p1", **V11)
    (node.tmp / "ipam" / "testnet" / "attachments" / "p1:eth0").unlink()
    (node.tmp / "ipam" / "testnet" / "ips" / "10.88.0.2").unlink()
    out = check(node, "p1", result)
    assert out.json()["code"] == CHECK_MISMATCH and "reservations" in out.json()["details"]


def test_check_reports_addresses_that_are_not_this_pods(node, mode):
    result = node.add("p1", **V11)
    other = node.add("p2", **V11)
    out = check(node, "p1", {**result, "ips": other["ips"]})
    assert out.json()["code"] == CHECK_MISMATCH and "reservations" in out.json()["details"]


def test_gc_releases_what_is_not_valid_and_removes_its_links(node, mode):
    results = {p: node.add(p, **V11) for p in ("keep", "stale1", "stale2")}
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    assert node.cni("GC", **V11, **{"cni.dev/valid-attachments": valid}).ok
    assert [owner.container_id for owner in node.reserved()] == ["keep"]
    assert node.veths() == [results["keep"]["interfaces"][1]["name"]]
    assert node.ping("keep", "10.88.0.1") and not node.ping("stale1", "10.88.0.1")


def test_gc_accepts_the_older_key(node, mode):
    node.add("a", **V11)
    node.add("b", **V11)
    assert node.cni("GC", **V11, **{"cni.dev/attachments": [{"containerID": "a", "ifname": "eth0"}]}).ok
    assert [o.container_id for o in node.reserved()] == ["a"]


def test_status_turns_unavailable_when_the_range_is_full(node, mode):
    small = {"subnet": "10.88.0.0/30", **V11}     # one pod address
    assert node.cni("STATUS", **small).ok
    node.add("p1", **small)
    out = node.cni("STATUS", **small)
    assert out.json()["code"] == NOT_AVAILABLE
