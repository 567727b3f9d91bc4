"""The installed thin clients, native and python, run for real against an
in-process agent: the two twins must behave the same on every path."""
import json
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

from netplane.cni import install, plugin, shim
from netplane.cni.server import CniServer


def test_request_round_trip():
    env = {b"CNI_COMMAND": b"ADD", b"CNI_ARGS": b"A=1;B=x=y", b"CNI_IFNAME": "\u00e9th0".encode()}
    decoded_env, stdin = shim.decode_request(shim.encode_request(env, b'{"x": 1}'))
    assert decoded_env == {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1;B=x=y", "CNI_IFNAME": "\u00e9th0"}
    assert stdin == b'{"x": 1}'


@pytest.mark.parametrize("data", [b"", b"GET / HTTP/1.1\r\n", shim.MAGIC + b"\0\0\1\0" + b"short"])
def test_garbage_requests_are_refused(data):
    with pytest.raises(ValueError):
        shim.decode_request(data)


def test_reply_round_trip_and_garbage():
    assert shim.decode_reply(shim.encode_reply(7, b"{}\n")) == (7, b"{}\n")
    with pytest.raises(ValueError):
        shim.decode_reply(b"no newline")


@pytest.fixture
def address():
    return f"\0netplane-test-{os.getpid()}-{threading.get_ident()}"


def write_client(path, client: str, address: str, standalone: bool = True) -> str:
    socket_name = "@" + address[1:]
    if client == "native":
        data = install.render_native(socket_name, install.standalone_command(sys.executable) if standalone else [])
    else:
        data = install.render_shim(sys.executable, socket_name, standalone).encode()
    path.write_bytes(data)
    path.chmod(0o755)
    return str(path)


@pytest.fixture(params=["native", "python"])
def stub(request, tmp_path, address):
    return write_client(tmp_path / "netplane", request.param, address)


@pytest.fixture
def agent(address):
    calls = []

    def handler(env, stdin, fd):
        calls.append((env, stdin, os.fstat(fd) if fd is not None else None))
        return plugin.Reply(3, b'{"answer": 42}\n')

    server = CniServer(address, handler=handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield calls
    server.shutdown()
    server.server_close()


def run_stub(stub, env, stdin=b"{}"):
    return subprocess.run([stub], input=stdin, env=env, capture_output=True, timeout=30)


def test_stub_forwards_cni_env_stdin_and_netns_descriptor(stub, agent, tmp_path):
    netns = tmp_path / "fake-netns"
    netns.write_text("")
    env = {"CNI_COMMAND": "ADD", "CNI_NETNS": str(netns), "CNI_IFNAME": "eth0", "HOME": "/root", "SECRET": "x"}
    proc = run_stub(stub, env, b'{"cniVersion": "1.0.0"}')
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b'{"answer": 42}\n', b"")
    [(seen_env, seen_stdin, seen_stat)] = agent
    assert seen_env == {"CNI_COMMAND": "ADD", "CNI_NETNS": str(netns), "CNI_IFNAME": "eth0"}
    assert seen_stdin == b'{"cniVersion": "1.0.0"}'
    assert (seen_stat.st_dev, seen_stat.st_ino) == (netns.stat().st_dev, netns.stat().st_ino)


def test_stub_without_netns_sends_no_descriptor(stub, agent):
    assert run_stub(stub, {"CNI_COMMAND": "DEL"}).returncode == 3
    assert agent[0][2] is None


def test_agent_that_hangs_up_gives_try_again_later(stub, address):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(1)

    def hang_up():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    proc = run_stub(stub, {"CNI_COMMAND": "ADD"})
    thread.join()
    listener.close()
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["code"] == 11 and "agent" in out["msg"]


def test_without_an_agent_the_stub_runs_the_standalone_path(stub):
    proc = run_stub(stub, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"cniVersion": "0.4.0", "supportedVersions": list(plugin.versions.SUPPORTED)}


def test_standalone_errors_are_json_on_stdout(stub):
    proc = run_stub(stub, {"CNI_COMMAND": "ADD"}, b"garbage")
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["code"] == 4 and "Traceback" not in proc.stdout.decode()


def test_python_stub_names_a_real_interpreter_with_isolation_flags(tmp_path, address):
    first = open(write_client(tmp_path / "netplane", "python", address)).readline()
    assert first == f"#!{sys.executable} -IS\n"


def test_the_twins_answer_alike_when_no_agent_runs_and_no_standalone_is_installed(tmp_path, address):
    """Code 11, naming the agent and its socket, in the same words."""
    answers = []
    for client in ("native", "python"):
        stub = write_client(tmp_path / client, client, address, standalone=False)
        proc = run_stub(stub, {"CNI_COMMAND": "ADD"})
        answers.append((proc.returncode, proc.stdout, proc.stderr))
    assert answers[0] == answers[1]
    out = json.loads(answers[0][1])
    assert answers[0][0] == 1 and out["code"] == 11 and "agent" in out["msg"]
    assert "@" + address[1:] in out["details"] and "netplane agent" in out["details"]


def test_large_requests_and_replies_pass_intact(stub, address):
    body = b"x" * (3 << 20)
    seen = []

    def handler(env, stdin, fd):
        seen.append(stdin)
        return plugin.Reply(0, body)

    server = CniServer(address, handler=handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = run_stub(stub, {"CNI_COMMAND": "ADD"}, body[:1 << 20])
    finally:
        server.shutdown()
        server.server_close()
    assert (proc.returncode, proc.stdout == body, seen == [body[:1 << 20]]) == (0, True, True)


def test_native_client_needs_no_dynamic_loader():
    """Static: no PT_INTERP program header, so it runs on any Linux host."""
    image = install.NATIVE_CLIENT.read_bytes()
    assert image[:4] == b"\x7fELF" and image[4] == 2  # 64-bit
    phoff, = struct.unpack_from("<Q", image, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", image, 0x36)
    types = [struct.unpack_from("<I", image, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types  # PT_INTERP


def test_native_settings_block_is_written_once_and_checked(tmp_path):
    image = install.render_native("@some-socket", ["/usr/bin/python3", "-I", "-m", "netplane.cni.standalone"])
    at = image.index(install.CONFIG_MARK)
    block = image[at + len(install.CONFIG_MARK): at + install.CONFIG_SIZE]
    assert block.split(b"\0")[:6] == [b"@some-socket", b"/usr/bin/python3", b"-I", b"-m",
                                      b"netplane.cni.standalone", b""]
    assert len(image) == len(install.NATIVE_CLIENT.read_bytes())
    with pytest.raises(install.InstallError, match="settings take"):
        install.render_native("@x", ["/p" * 3000])
