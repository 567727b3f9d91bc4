"""Malformed input, found by fuzzing: refused with the right code before
anything is touched, and answered the same way wherever plugin.run runs."""
import json
import os
import socket
import sys
import tempfile
import threading

import pytest

from netplane.cni import config, plugin, result, shim, versions
from netplane.cni.errors import CniError
from netplane.cni.invocation import parse_environment
from netplane.cni.server import CniServer

BASE = {"cniVersion": "1.0.0", "name": "net", "type": "netplane", "subnet": "10.9.0.0/29"}
PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "np0", "mac": "0a:58:0a:09:00:01"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
        "ips": [{"address": "10.9.0.2/29", "gateway": "10.9.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}],
        "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["svc"], "options": ["ndots:5"]}}
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = ('{"a":' * 5000 + "1" + "}" * 5000).encode()


def env(command="ADD", **extra):
    base = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none-such",
            "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
    return {**base, **extra}


def stdin_for(tmp_path, **overrides) -> bytes:
    body = {**BASE, "dataDir": str(tmp_path / "ipam"), **overrides}
    return json.dumps(body).encode()


def run(environment, stdin) -> tuple[int, dict]:
    reply = plugin.run(environment, stdin)
    return reply.exit_code, json.loads(reply.stdout) if reply.stdout else {}


def refused(environment, stdin, code) -> dict:
    exit_code, out = run(environment, stdin)
    assert exit_code == 1 and out["code"] == code, out
    return out


def with_prev(**changes) -> dict:
    """PREV with top-level members replaced (a value of None drops the member)."""
    return {k: v for k, v in {**PREV, **changes}.items() if v is not None}


def with_member(key: str, index: int, **changes) -> dict:
    """PREV with one member of prevResult[key][index] replaced."""
    items = [dict(item) for item in PREV[key]]
    items[index].update(changes)
    return with_prev(**{key: items})


# 1 and 2: prevResult is checked whole, up front, naming the key path.

@pytest.mark.parametrize("prev, path", [
    (with_prev(dns="x"), "dns"),
    (with_prev(dns=5), "dns"),
    (with_prev(dns=["8.8.8.8"]), "dns"),
    (with_prev(dns={"nameservers": "8.8.8.8"}), "dns.nameservers"),
    (with_prev(dns={"nameservers": [8]}), "dns.nameservers"),
    (with_prev(dns={"search": "svc"}), "dns.search"),
    (with_prev(dns={"options": [["ndots:5"]]}), "dns.options"),
    (with_prev(dns={"domain": ["a"]}), "dns.domain"),
    (with_member("interfaces", 0, name=5), "interfaces[0].name"),
    (with_member("interfaces", 0, name=""), "interfaces[0].name"),
    (with_prev(interfaces=[{"mac": "0a:58:0a:09:00:01"}]), "interfaces[0].name"),
    (with_member("interfaces", 1, mac=5), "interfaces[1].mac"),
    (with_member("interfaces", 1, sandbox=["/run/netns/p"]), "interfaces[1].sandbox"),
    (with_member("interfaces", 1, mtu=True), "interfaces[1].mtu"),
    (with_member("interfaces", 1, mtu="1500"), "interfaces[1].mtu"),
    (with_member("interfaces", 1, mtu=-1), "interfaces[1].mtu"),
    (with_prev(interfaces="eth0"), "interfaces"),
    (with_prev(interfaces=["eth0"]), "interfaces[0]"),
    (with_member("ips", 0, interface="x"), "ips[0].interface"),
    (with_member("ips", 0, interface=True), "ips[0].interface"),
    (with_member("ips", 0, interface=-1), "ips[0].interface"),
    (with_member("ips", 0, interface=2), "ips[0].interface"),       # only two interfaces
    (with_member("ips", 0, interface=1.0), "ips[0].interface"),
    (with_member("ips", 0, address=5), "ips[0].address"),
    (with_member("ips", 0, address="x"), "ips[0].address"),
    (with_member("ips", 0, address="10.9.0.2"), "ips[0].address"),   # no prefix length
    (with_member("ips", 0, address="10.9.0.2/29\n"), "ips[0].address"),
    (with_member("ips", 0, address="10.9.0.2/255.255.255.248"), "ips[0].address"),
    (with_member("ips", 0, gateway="nope"), "ips[0].gateway"),
    (with_member("ips", 0, gateway=" 10.9.0.1"), "ips[0].gateway"),
    (with_member("ips", 0, gateway=10), "ips[0].gateway"),
    (with_member("ips", 0, version="5"), "ips[0].version"),
    (with_prev(ips=[{"gateway": "10.9.0.1"}]), "ips[0].address"),
    (with_prev(ips="nope"), "ips"),
    (with_member("routes", 0, dst="nonsense"), "routes[0].dst"),
    (with_member("routes", 0, dst=None), "routes[0].dst"),
    (with_member("routes", 0, gw="10.9.0.1/29"), "routes[0].gw"),
    (with_member("routes", 0, mtu="1500"), "routes[0].mtu"),
    (with_prev(routes={"dst": "0.0.0.0/0"}), "routes"),
    (with_prev(cniVersion=1), "cniVersion"),
])
def test_malformed_prev_result_names_the_path(prev, path):
    with pytest.raises(CniError) as exc:
        result.decode(prev)
    assert exc.value.code == 7 and exc.value.msg == "invalid network configuration key 'prevResult'"
    assert exc.value.details.startswith(f"{path}: "), exc.value.details


@pytest.mark.parametrize("verb", ["ADD", "CHECK"])
@pytest.mark.parametrize("dns", ["x", 5, ["8.8.8.8"]])
def test_bad_dns_is_refused_before_anything_is_taken(tmp_path, verb, dns):
    out = refused(env(verb), stdin_for(tmp_path, prevResult=with_prev(dns=dns)), 7)
    assert "prevResult" in out["msg"] and out["details"].startswith("dns: ")
    assert not (tmp_path / "ipam").exists()


def test_bad_interface_index_is_refused_before_anything_is_taken(tmp_path):
    out = refused(env(), stdin_for(tmp_path, prevResult=with_member("ips", 0, interface="x")), 7)
    assert out["details"].startswith("ips[0].interface: ")
    assert not (tmp_path / "ipam").exists()


def test_well_formed_prev_result_decodes():
    decoded = result.decode(PREV)
    assert [i.name for i in decoded.interfaces] == ["np0", "eth0"]
    assert decoded.ips == (result.IPConfig("10.9.0.2/29", "10.9.0.1", 1),)
    assert decoded.routes == (result.Route("0.0.0.0/0", "10.9.0.1"),)
    assert decoded.dns == PREV["dns"]


def test_null_members_count_as_absent_as_in_go():
    decoded = result.decode({"interfaces": [{"name": "eth0", "mac": None, "mtu": None}],
                             "ips": [{"address": "10.9.0.2/29", "gateway": None, "interface": None}],
                             "routes": None, "dns": {"nameservers": None, "domain": "x"}})
    assert decoded.interfaces == (result.Interface("eth0"),)
    assert decoded.ips == (result.IPConfig("10.9.0.2/29"),)
    assert decoded.routes == () and decoded.dns == {"domain": "x"}


def test_unknown_dns_members_are_not_printed_back():
    # As the Go types do; and a member of any shape or depth could not be printed.
    decoded = result.decode(with_prev(dns={"nameservers": ["10.96.0.10"], "extra": [[[[1]]]]}))
    assert result.encode(decoded, "1.0.0")["dns"] == {"nameservers": ["10.96.0.10"]}


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_our_own_results_still_decode(version):
    ours = result.Result(
        interfaces=(result.Interface("np0", "0a:58:0a:09:00:01"), result.Interface("eth0", "0a:58:0a:09:00:02",
                                                                                    "/run/netns/p", 1400)),
        ips=(result.IPConfig("10.9.0.2/29", "10.9.0.1", 1), result.IPConfig("fd00::2/64", "fd00::1", 1)),
        routes=(result.Route("0.0.0.0/0", "10.9.0.1"), result.Route("::/0", "fd00::1")),
        dns={"nameservers": ["10.96.0.10"]})
    assert result.encode(result.decode(result.encode(ours, version)), version) == result.encode(ours, version)


# 3: deeply nested stdin is code 6 (and VERSION still answers); nothing raises.

@pytest.mark.parametrize("stdin", [DEEP_ARRAY, DEEP_OBJECT, b"[" * 100_000,
                                   b'{"cniVersion": "1.0.0", "x": ' + b"[" * 150 + b"]" * 150 + b"}"])
def test_deeply_nested_stdin_is_code_6(stdin):
    out = refused(env(), stdin, 6)
    assert out["cniVersion"] == versions.LATEST


@pytest.mark.parametrize("stdin", [DEEP_ARRAY, DEEP_OBJECT])
def test_version_answers_deeply_nested_stdin(stdin):
    assert run({"CNI_COMMAND": "VERSION"}, stdin) == (
        0, {"cniVersion": versions.LATEST, "supportedVersions": list(versions.SUPPORTED)})


def test_nesting_up_to_the_limit_is_fine():
    deep = {**BASE, "runtimeConfig": json.loads("[" * (config.MAX_DEPTH - 1) + "]" * (config.MAX_DEPTH - 1))}
    assert config.decode(json.dumps(deep).encode())["name"] == "net"
    too_deep = {**BASE, "runtimeConfig": json.loads("[" * config.MAX_DEPTH + "]" * config.MAX_DEPTH)}
    with pytest.raises(CniError) as exc:
        config.decode(json.dumps(too_deep).encode())
    assert exc.value.code == 6 and "nested too deeply" in exc.value.msg


def _at_depth(frames: int, fn):
    """fn() called `frames` Python frames further down the stack."""
    return fn() if frames == 0 else _at_depth(frames - 1, fn)


@pytest.mark.parametrize("depth", [150, 900, 990, 5000])
def test_the_answer_does_not_depend_on_the_callers_stack_depth(depth):
    # The agent runs plugin.run on a worker thread, the standalone path near
    # the top of the main thread: Python's recursion limit falls at a
    # different input depth in each, so the explicit limit must decide.
    stdin = ("[" * depth + "]" * depth).encode()
    shallow = plugin.run(env(), stdin)
    deep = _at_depth(sys.getrecursionlimit() // 2, lambda: plugin.run(env(), stdin))
    assert shallow == deep and json.loads(shallow.stdout)["code"] == 6


def test_an_error_handler_never_raises(monkeypatch):
    def recursion(_stdin):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(config, "decode", recursion)
    code, out = run(env(), b"{}")
    assert code == 1 and out["code"] == 999 and out["cniVersion"] == versions.LATEST


def test_an_environment_error_outranks_a_stdin_one():
    out = refused({"CNI_COMMAND": "ADD"}, DEEP_ARRAY, 4)
    assert out["details"] == "CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME"


def test_the_agent_answers_deeply_nested_stdin():
    """Through the agent's server: the worker used to die, leaving the
    client without an answer (code 11)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        server = CniServer(os.path.join(tmp, "s"))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            for stdin in (DEEP_ARRAY, DEEP_OBJECT):
                assert _ask(server.address, env(), stdin) == plugin.run(env(), stdin)
        finally:
            server.shutdown()
            server.server_close()


def _ask(address: str, environment: dict, stdin: bytes) -> plugin.Reply:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(address)
        sock.sendall(shim.encode_request({k.encode(): v.encode() for k, v in environment.items()}, stdin))
        sock.shutdown(socket.SHUT_WR)
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    return plugin.Reply(*shim.decode_reply(data))


# 4: names that become file or interface names.

@pytest.mark.parametrize("name", ["a" * 70_000, "a" * 300, "a" * (config.MAX_NETWORK_NAME + 1)])
def test_long_network_name_is_code_7(tmp_path, name):
    out = refused(env(), stdin_for(tmp_path, name=name), 7)
    assert "'name'" in out["msg"] and f"at most {config.MAX_NETWORK_NAME}" in out["details"]
    assert len(out["details"]) < 100
    assert not (tmp_path / "ipam").exists()


def test_network_name_at_the_limit_is_fine():
    assert config.parse({**BASE, "name": "a" * config.MAX_NETWORK_NAME}).name == "a" * config.MAX_NETWORK_NAME


@pytest.mark.parametrize("bridge", ["np\x00", "np\x01", "\x7f", "np\x85"])
def test_control_characters_in_bridge_are_code_7(tmp_path, bridge):
    out = refused(env(), stdin_for(tmp_path, bridge=bridge), 7)
    assert "'bridge'" in out["msg"] and "control characters" in out["details"]
    assert not (tmp_path / "ipam").exists()


@pytest.mark.parametrize("ifname", ["eth\x00", "eth\x1b", "\x7f"])
def test_control_characters_in_cni_ifname_are_code_4(ifname):
    with pytest.raises(CniError) as exc:
        parse_environment(env(CNI_IFNAME=ifname))
    assert exc.value.code == 4 and "control characters" in exc.value.details


def test_undecodable_environment_bytes_in_ifname_are_code_4():
    # The standalone path reads non-UTF-8 environment bytes as surrogates.
    with pytest.raises(CniError) as exc:
        parse_environment(env(CNI_IFNAME="eth\udcff"))
    assert exc.value.code == 4 and "UTF-8" in exc.value.details


@pytest.mark.parametrize("key, value, phrase", [
    ("dataDir", "/var/" + "a" * 256, "component longer than 255"),
    ("dataDir", "/a" * (config.MAX_PATH // 2 + 1), f"longer than {config.MAX_PATH}"),
    ("stateFile", "/run/" + "b" * 300, "component longer than 255"),
])
def test_overlong_paths_are_code_7(tmp_path, key, value, phrase):
    out = refused(env(), stdin_for(tmp_path, **{key: value}), 7)
    assert f"'{key}'" in out["msg"] and phrase in out["details"]


# 5: a subnet is exactly CIDR text; stdin is exactly UTF-8 JSON.

@pytest.mark.parametrize("subnet", ["10.88.0.0/16\n", " 10.88.0.0/16", "10.88.0.0/16 ", "10.88.0.0/255.255.0.0",
                                    "10.88.0.0/016", "10.88.0.0/+16", "010.88.0.0/16", ["10.88.0.0/16", "fd00::/64\t"],
                                    "fe80::%eth0/64"])
def test_subnet_must_be_exactly_cidr_text(tmp_path, subnet):
    out = refused(env(), stdin_for(tmp_path, subnet=subnet), 7)
    assert out["msg"] == "invalid network configuration key 'subnet'"
    assert not (tmp_path / "ipam").exists()


def test_plain_cidr_subnets_still_parse():
    conf = config.parse({**BASE, "subnet": ["FD00:88::/64", "10.88.0.0/16"]})
    assert [str(s) for s in conf.subnets] == ["10.88.0.0/16", "fd00:88::/64"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig"])
def test_stdin_must_be_utf8(tmp_path, encoding):
    text = stdin_for(tmp_path).decode()
    out = refused(env(), text.encode(encoding), 6)
    assert out["msg"] == "network configuration is not UTF-8 JSON"
    assert not (tmp_path / "ipam").exists()


@pytest.mark.parametrize("stdin, msg", [
    (b'{"cniVersion": "1.0.0", "name": "n\xe9t"}', "not UTF-8 JSON"),           # Latin-1
    (b'{"cniVersion": "1.0.0", "bridge": "\\ud800"}', "not UTF-8 JSON"),        # lone surrogate escape
    (b'{"cniVersion": "1.0.0", "mtu": NaN}', "not valid JSON"),
    (b'{"cniVersion": "1.0.0", "mtu": -Infinity}', "not valid JSON"),
    (b'{"cniVersion": "1.0.0", "mtu": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    (b'{"cniVersion": "1.0.0"} trailing', "not valid JSON"),
    (b"null", "must be a JSON object"),
    (b" \n\t ", "no network configuration"),
    (json.dumps({**BASE, "pad": "x" * config.MAX_STDIN}).encode(), "too large"),
])
def test_other_undecodable_stdin_is_code_6(stdin, msg):
    assert msg in refused(env(), stdin, 6)["msg"]


def test_non_ascii_text_in_utf8_is_fine():
    assert config.decode(json.dumps({**BASE, "comment": "r\u00e9seau \u2603"}, ensure_ascii=False).encode())


def test_version_with_undecodable_stdin_still_answers():
    for stdin in (b"\xff\xfe", '{"cniVersion": "0.4.0"}'.encode("utf-16"), b'{"cniVersion": NaN}'):
        assert run({"CNI_COMMAND": "VERSION"}, stdin)[1]["cniVersion"] == versions.LATEST
    assert run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')[1]["cniVersion"] == "0.4.0"
