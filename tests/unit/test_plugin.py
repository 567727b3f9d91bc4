"""plugin.run on inputs that must be refused before anything is touched."""
import json

import pytest

from netplane import nodestate
from netplane.cni import plugin, versions
from netplane.cni.config import Attachment
from netplane.cni.ipam import allocator
from netplane.cni.ipam.pool import Pool
from netplane.cni.ipam.store import DiskStore

import netaddr


def env(command="ADD", **extra):
    base = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none",
            "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
    return {**base, **extra}


def conf(tmp_path, **overrides) -> bytes:
    body = {"cniVersion": "1.0.0", "name": "net", "type": "netplane", "subnet": "10.9.0.0/29",
            "dataDir": str(tmp_path / "ipam"), **overrides}
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def run(*args, **kwargs) -> tuple[int, dict]:
    reply = plugin.run(*args, **kwargs)
    return reply.exit_code, json.loads(reply.stdout) if reply.stdout else {}


def test_version_echoes_asked_version():
    code, out = run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert code == 0 and out == {"cniVersion": "0.4.0", "supportedVersions": list(versions.SUPPORTED)}
    assert run({"CNI_COMMAND": "VERSION"}, b"")[1]["cniVersion"] == versions.LATEST
    assert run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.2.0"}')[1]["cniVersion"] == "0.2.0"


@pytest.mark.parametrize("stdin", [b"", b"not json", b'["a list"]'])
def test_undecodable_stdin_is_code_6(tmp_path, stdin):
    code, out = run(env(), stdin)
    assert code == 1 and out["code"] == 6 and out["msg"]


def test_missing_env_is_code_4_naming_them(tmp_path):
    code, out = run({"CNI_COMMAND": "ADD"}, conf(tmp_path))
    assert code == 1 and out["code"] == 4
    assert out["details"] == "CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME"
    assert out["cniVersion"] == "1.0.0"  # answered in the config's version


def test_unsupported_field_names_key_and_value(tmp_path):
    code, out = run(env(), conf(tmp_path, ipam={"type": "host-local"}))
    assert code == 1 and out["code"] == 2 and "ipam" in out["msg"] and "host-local" in out["msg"]


def test_bad_prev_result_on_add_is_refused_before_anything_is_taken(tmp_path):
    code, out = run(env(), conf(tmp_path, prevResult={"ips": [{"address": "x"}]}))
    assert code == 1 and out["code"] == 7 and "prevResult" in out["msg"]
    assert not (tmp_path / "ipam").exists()


def test_malformed_subnet_is_code_7_naming_the_key(tmp_path):
    code, out = run(env(), conf(tmp_path, subnet="10.9.0.0/99"))
    assert code == 1 and out["code"] == 7 and "'subnet'" in out["msg"]


@pytest.mark.parametrize("version", ["0.2.0", "1.2.0", None])
def test_unsupported_version_is_code_1(tmp_path, version):
    code, out = run(env(), conf(tmp_path, cniVersion=version))
    assert code == 1 and out["code"] == 1


@pytest.mark.parametrize("verb, version", [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "0.4.0")])
def test_verbs_newer_than_the_config_are_code_1(tmp_path, verb, version):
    code, out = run(env(verb), conf(tmp_path, cniVersion=version))
    assert code == 1 and out["code"] == 1 and verb in out["msg"]


@pytest.mark.parametrize("cid", ["../../../tmp/evil", "a/b"])
def test_bad_container_id_refused_before_the_disk_is_touched(tmp_path, cid):
    code, out = run(env(CNI_CONTAINERID=cid), conf(tmp_path))
    assert code == 1 and out["code"] == 4
    assert not (tmp_path / "ipam").exists()


def test_missing_netns_is_code_3_and_takes_nothing(tmp_path):
    code, out = run(env(CNI_NETNS=str(tmp_path / "gone")), conf(tmp_path))
    assert code == 1 and out["code"] == 3
    assert not (tmp_path / "ipam").exists()


def test_netns_that_is_not_a_namespace(tmp_path):
    (tmp_path / "file").write_text("x")
    code, out = run(env(CNI_NETNS=str(tmp_path / "file")), conf(tmp_path))
    assert code == 1 and out["code"] == 4 and "not a network namespace" in out["msg"]


def test_the_nodes_own_namespace_is_refused(tmp_path):
    code, out = run(env(CNI_NETNS="/proc/self/ns/net"), conf(tmp_path))
    assert code == 1 and out["code"] == 4 and "own network namespace" in out["msg"]


def test_gc_without_the_valid_list_is_refused(tmp_path):
    code, out = run(env("GC"), conf(tmp_path, cniVersion="1.1.0"))
    assert code == 1 and out["code"] == 7 and "cni.dev/valid-attachments" in out["details"]


def test_check_without_prev_result_is_code_7(tmp_path):
    code, out = run(env("CHECK"), conf(tmp_path))
    assert code == 1 and out["code"] == 7 and "prevResult" in out["msg"]


def test_status_ready(tmp_path):
    assert run(env("STATUS"), conf(tmp_path, cniVersion="1.1.0")) == (0, {})


def test_status_without_subnet_or_state_file_is_50(tmp_path):
    code, out = run(env("STATUS"), conf(tmp_path, cniVersion="1.1.0", subnet=None,
                                          stateFile=str(tmp_path / "none.json")))
    assert code == 1 and out["code"] == 50 and "state file" in out["details"]


def test_status_reads_the_state_file(tmp_path):
    state = tmp_path / "node.json"
    nodestate.write(str(state), nodestate.NodeState("n1", (netaddr.IPNetwork("10.9.0.0/29"),), 1450))
    assert run(env("STATUS"), conf(tmp_path, cniVersion="1.1.0", subnet=None, stateFile=str(state))) == (0, {})


def test_status_with_a_full_range_is_50(tmp_path):
    store = DiskStore(str(tmp_path / "ipam"), "net")
    for n in range(5):
        allocator.allocate(store, Attachment(f"c{n}", "eth0"), [Pool(netaddr.IPNetwork("10.9.0.0/29"))])
    code, out = run(env("STATUS"), conf(tmp_path, cniVersion="1.1.0"))
    assert code == 1 and out["code"] == 50 and "taken" in out["details"]


def test_malformed_state_file(tmp_path):
    state = tmp_path / "node.json"
    state.write_text('{"podCIDRs": ["nonsense"]}')
    code, out = run(env("STATUS"), conf(tmp_path, cniVersion="1.1.0", subnet=None, stateFile=str(state)))
    assert code == 1 and out["code"] == 50 and "malformed" in out["details"]


def test_unexpected_exceptions_become_code_999_not_tracebacks(tmp_path, monkeypatch):
    from netplane.cni import housekeeping

    def boom(_conf):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(housekeeping, "status", boom)
    code, out = run(env("STATUS"), conf(tmp_path, cniVersion="1.1.0"))
    assert code == 1 and out == {"cniVersion": "1.1.0", "code": 999, "msg": "kaboom"}
