"""The agent side of the CNI fast path: serve the thin client's requests.

A fixed pool of worker threads runs plugin.run() with each request's
environment, stdin and netns descriptor. Threads are safe here: the IPAM
store serialises on its flock, netlink sockets are per request, and a
worker enters a pod's namespace only for the instant of opening a socket
there (netlink.netns). A long-lived pool rather than a thread per
connection saves ~0.1 ms a request, which a burst of pods feels.

The socket is reachable by any process in the node's network namespace,
so only root (or this agent's own user) may talk to it.
"""
import array
import contextlib
import logging
import os
import select
import socket
import socketserver
import stat
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from netplane.cni import plugin, shim

log = logging.getLogger("netplane.agent.cni")

DEFAULT_ADDRESS = shim.AGENT_SOCKET
MAX_REQUEST = 4 << 20      # network configs are kilobytes; the plugin refuses more than 1 MiB
MAX_CONCURRENT = 64
CLIENT_TIMEOUT = 30.0      # the client sends everything at once; a silent one is stuck


class _Handler(socketserver.BaseRequestHandler):
    server: "CniServer"

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(CLIENT_TIMEOUT)
        fd = None
        try:
            if not self.server.trusted(conn):
                return
            data, fd = _receive(conn)
            if not data:
                return  # a readiness probe: connected, sent nothing
            env, stdin = shim.decode_request(data)
            with self.server.attachments.held(env):
                self._answer(conn, env, stdin, fd)
        except (OSError, ValueError) as exc:
            log.warning("dropped a CNI request: %s", exc)
        finally:
            if fd is not None:
                os.close(fd)

    def _answer(self, conn: socket.socket, env: dict, stdin: bytes, fd: int | None) -> None:
        """Run the request and deliver its answer, as one step for the runtime.

        A runtime whose plugin died (killed on a timeout, say) takes the ADD
        as failed and DELs the attachment; its DEL may even reach us before
        the ADD does. An ADD nobody can hear is therefore not run, and one
        whose answer cannot be delivered is undone, so a pod the runtime
        never saw is never left wired, holding addresses IPAM gave back.
        """
        if _hung_up(conn):
            log.warning("dropped a CNI %s: its client is gone", env.get("CNI_COMMAND", "?"))
            return
        reply = self.server.handler(env, stdin, fd)
        try:
            conn.sendall(shim.encode_reply(reply.exit_code, reply.stdout))
        except OSError:
            if env.get("CNI_COMMAND") == "ADD" and reply.exit_code == 0:
                log.warning("undoing ADD %s/%s: its client is gone", env.get("CNI_CONTAINERID"), env.get("CNI_IFNAME"))
                self.server.handler({**env, "CNI_COMMAND": "DEL"}, stdin, fd)
            raise


def _hung_up(conn: socket.socket) -> bool:
    """Has the client closed its end entirely? (It half-closes its sending
    side to end the request; POLLHUP means it is gone, not just done.)"""
    poller = select.poll()
    poller.register(conn, select.POLLHUP)
    return bool(poller.poll(0))


class AttachmentLocks:
    """One lock per (container ID, interface): ADD, DEL and CHECK of the
    same attachment run one at a time, never interleaved (a DEL must not
    release addresses an ADD still in flight is wiring). Different
    attachments run in parallel."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple, list] = {}   # key -> [lock, users]

    @contextlib.contextmanager
    def held(self, env: dict) -> Iterator[None]:
        key = (env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", ""))
        if not key[0]:
            yield  # GC, STATUS, VERSION: no attachment
            return
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if not entry[1]:
                    del self._locks[key]


class CniServer(socketserver.UnixStreamServer):
    allow_reuse_address = False

    def __init__(self, address: str = DEFAULT_ADDRESS, handler=plugin.run) -> None:
        self.handler = handler
        self.attachments = AttachmentLocks()
        self.workers = ThreadPoolExecutor(MAX_CONCURRENT, thread_name_prefix="cni")
        self.address = address
        if not address.startswith("\0"):
            _remove_stale_socket(address)
        super().__init__(address, _Handler)

    def trusted(self, conn: socket.socket) -> bool:
        pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid in (0, os.getuid()):
            return True
        log.warning("refused a CNI request from pid %d, uid %d", pid, uid)
        return False

    def process_request(self, request, client_address) -> None:
        self.workers.submit(self._process, request, client_address)

    def _process(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            log.exception("CNI request handler failed")
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self.workers.shutdown(wait=True)
        if not self.address.startswith("\0"):
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a dead agent may go; anything else may not."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    if answers(path):
        raise OSError(f"another agent is serving {path}")
    os.unlink(path)


def _receive(conn: socket.socket) -> tuple[bytes, int | None]:
    """Read the whole request; the netns descriptor rides on the first chunk.
    On any failure the descriptor is closed before the error propagates."""
    fds = array.array("i")
    data, ancdata, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    for extra in fds[1:]:
        os.close(extra)
    fd = fds[0] if fds else None
    try:
        chunks, size = [data], len(data)
        while data:
            data = conn.recv(65536)
            size += len(data)
            # Beyond the limit, read on but keep nothing: the client sends
            # everything before it reads, so hanging up would cost it its
            # answer, and the plugin refuses an oversized config (code 6)
            # from the first MAX_REQUEST bytes as the standalone path does.
            if size <= MAX_REQUEST:
                chunks.append(data)
        return b"".join(chunks), fd
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise


def answers(address: str = DEFAULT_ADDRESS, netns_fd: int | None = None) -> bool:
    """Is an agent serving `address`? Asked from inside netns_fd if given
    (an abstract address is only visible from its own namespace)."""
    from netplane.netlink.netns import call_in_netns

    def probe() -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(address)
            except OSError:
                return False
            return True

    return probe() if netns_fd is None else call_in_netns(netns_fd, probe)


def display(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address


def parse_address(text: str) -> str:
    """'@name' is an abstract socket (scoped to the netns); anything else a path."""
    return "\0" + text[1:] if text.startswith("@") else text
