#!/usr/bin/python3 -IS
"""netplane CNI plugin, as a runtime runs it: a thin client of the node agent.

A runtime starts the plugin once per pod, so start-up time is the pod's
time. This file is what `netplane cni install` puts in the CNI bin
directory, under the interpreter's real path with -IS. It imports only
built-in modules (the wire format below uses nothing else), connects to
the node agent, hands over the CNI_* environment, stdin and the pod's
netns descriptor, and relays the agent's answer. The agent keeps netlink,
the IPAM store and pyroute2 warm, so the whole ADD costs about one bare
interpreter start.

The agent's socket is in the abstract namespace, which is scoped to the
network namespace: a plugin run in a node's namespace reaches exactly that
node's agent. If none answers, the plugin execs the standalone path, which
does the same work in-process (slower to start, same result), or, when
installed without one, answers CNI error 11 ("try again later").
cni/netplane-cni.c is this client's native twin; both speak this format.

The netns travels as a descriptor (SCM_RIGHTS) rather than a path, so the
agent need not share the runtime's mount namespace to open it.
"""
import _socket
import posix
import sys

# Set by `netplane cni install`.
AGENT_SOCKET = "\0netplane-cni"
STANDALONE = ["/usr/bin/python3", "-I", "-m", "netplane.cni.standalone"]

MAGIC = b"NPCNI1\n"
REPLY_TIMEOUT = 240.0
TRY_AGAIN_LATER = 11
INTERNAL = 999


def encode_request(env: dict, stdin: bytes) -> bytes:
    """MAGIC, a 4-byte length, the NUL-separated KEY=VALUE env, then stdin."""
    blob = b"\0".join(k + b"=" + v for k, v in env.items())
    return MAGIC + len(blob).to_bytes(4, "big") + blob + stdin


def decode_request(data: bytes) -> tuple:
    """(env as str dict, stdin bytes); ValueError if it is not a request."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise ValueError("not a netplane CNI request")
    start = len(MAGIC) + 4
    end = start + int.from_bytes(data[len(MAGIC):start], "big")
    if end > len(data):
        raise ValueError("truncated netplane CNI request")
    env = {}
    for item in filter(None, data[start:end].split(b"\0")):
        key, _, value = item.partition(b"=")
        # As os.environ decodes a process's environment: bytes that are not
        # UTF-8 survive as surrogates, so the agent refuses them in the same
        # words as the standalone path does.
        env[key.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    return env, data[end:]


def encode_reply(exit_code: int, stdout: bytes) -> bytes:
    return b"%d\n" % exit_code + stdout


def decode_reply(data: bytes) -> tuple:
    head, sep, body = data.partition(b"\n")
    if not sep or not head.isdigit():
        raise ValueError("malformed reply from the netplane agent")
    return int(head), body


def main() -> int:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(AGENT_SOCKET)
    except OSError as why:
        sock.close()
        if not STANDALONE:
            _write_all(1, _error_json(TRY_AGAIN_LATER, "the netplane agent is not running",
                                      f"nothing answers on {_display(AGENT_SOCKET)} in this network namespace "
                                      f"({why.strerror}); start `netplane agent` on this node"))
            return 1
        try:
            posix.execv(STANDALONE[0], STANDALONE)  # no agent here: do the work in-process
        except OSError as exc:
            _write_all(1, _error_json(INTERNAL, "cannot start the standalone netplane plugin",
                                      f"{STANDALONE[0]}: {exc.strerror}"))
            return 1
    sock.settimeout(REPLY_TIMEOUT)
    env = {k: v for k, v in posix.environ.items() if k.startswith(b"CNI_")}  # a duplicated key: the last
    try:
        _send(sock, encode_request(env, _read_all(0)), env.get(b"CNI_NETNS"))
        code, out = decode_reply(_recv_all(sock))
    except OSError as exc:
        code, out = 1, _error_json(TRY_AGAIN_LATER, "the netplane agent did not answer", exc.strerror or exc)
    except ValueError:
        code, out = 1, _error_json(TRY_AGAIN_LATER, "the netplane agent did not answer", "it hung up without a reply")
    _write_all(1, out)
    return code


def _send(sock, payload: bytes, netns_path) -> None:
    ancillary = []
    fd = -1
    if netns_path:
        try:
            fd = posix.open(netns_path, posix.O_RDONLY | posix.O_CLOEXEC)
            ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))]
        except OSError:
            pass  # the agent reports a missing netns, or ignores it for DEL
    try:
        sent = sock.sendmsg([payload], ancillary)
        sock.sendall(payload[sent:])
        sock.shutdown(_socket.SHUT_WR)
    finally:
        if fd >= 0:
            posix.close(fd)


def _display(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = posix.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _recv_all(sock) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[posix.write(fd, data):]


def _json_char(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    return c if c >= " " else "\\u%04x" % ord(c)


def _error_json(code: int, msg: str, exc) -> bytes:
    """The spec's error object, built without the json module (8 ms to import)."""
    details = "".join(_json_char(c) for c in str(exc))
    return ('{"cniVersion": "1.1.0", "code": %d, "msg": "%s", "details": "%s"}\n' % (code, msg, details)).encode()


if __name__ == "__main__":
    # Everything went out through posix.write, so nothing is buffered:
    # skip interpreter finalisation, which costs ~1.5 ms per pod.
    posix._exit(main())
