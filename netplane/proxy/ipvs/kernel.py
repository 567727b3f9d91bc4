"""IPVS in one network namespace, for one family: read it, and change it in batches.

Theory of operation. IPVS is configured over generic netlink ("IPVS"
family, resolved once per socket). One socket, opened in the target
namespace (a socket stays in the namespace it was created in, whoever
uses it later), serves both directions:

- Reads are dumps: every virtual server, then each one's real servers (the
  kernel dumps real servers one virtual server per request), decoded by a
  plain TLV walk (netlink.py), not pyroute2, which costs ~100 us a message.

- Writes are one path for every size: all operations encoded first
  (netlink.py; an operation that cannot be encoded fails before anything
  is sent), then concatenated, as many per sendmsg as the socket's send buffer
  accepts (the kernel refuses a larger send with EMSGSIZE), without
  NLM_F_ACK. The kernel runs each message in order, inside the sendmsg,
  and answers only the ones that fail (an NLMSG_ERROR carrying the failing
  sequence number). The last message of each chunk asks for an ack, so
  its ack says the whole chunk was processed. A chunk's errors and acks
  fit the receive buffer, which is raised for that; were it to overflow
  (ENOBUFS), everything left is read without waiting, as the kernel has
  already answered by the time sendmsg returns.

A batch is not a transaction: messages after a failure still run, and so
do later chunks, so the kernel ends as close to the plan as it can. The
first failure (the lowest sequence number) is raised at the end as an
IpvsError naming the operation, with a count of the others.

Idempotency: none is assumed. Adding a virtual or real server that exists
is the kernel's EEXIST, changing or deleting one that does not is ESRCH
(virtual server) or ENOENT (real server); all of them raise. The caller's
mirror (plan.py) guarantees they do not happen, and an error means the
mirror is wrong, which a full sync (a dump) repairs.
"""
import errno
import os
import socket
import struct

from netplane.netlink import netns as ns
from netplane.netlink.channel import (ACK_BUFFER, NLMSG_ERROR, TIMEOUT, Channel, NetlinkError, Request,
                                      _ext_ack_message)
from netplane.proxy.ipvs import netlink as nl
from netplane.proxy.ipvs.plan import FWMARK, Dest, Key, VirtualServer, endpoint

NETLINK_GENERIC = 16
NLM_F_DUMP = 0x300
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
# A chunk of 256 KB holds ~2,300 real-server messages (~3,000 deletes);
# were every one to fail, their errors would take ~2-3 MB of receive buffer
# (one small skb each). The kernel doubles both sizes given here.
RCVBUF = 4 << 20
MAX_CHUNK = 256 << 10
RUN_NETNS = "/run/netns"
# IPVS answers "no such virtual server" with ESRCH, whose text is about processes
HINTS = {errno.ESRCH: " (no such virtual server)"}
Servers = dict[Key, tuple[VirtualServer, dict[Dest, tuple[int, int, int]]]]


class IpvsError(RuntimeError):
    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.errno = code


class IpvsKernel:
    """IPVS of one family (4 or 6) in the current namespace, or in `netns`
    (a path, or a name under /run/netns)."""

    def __init__(self, family: int, netns: str | None = None) -> None:
        self.family = family
        self.channel = Channel(_open_socket(netns))
        self.sock = self.channel.sock
        try:
            self.genl = self._resolve_family()
            self.chunk_bytes = _size_buffers(self.sock)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "IpvsKernel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading

    def servers(self) -> Servers:
        """Every virtual server of this family, with its real servers as
        {dest: (weight, active connections, inactive connections)}."""
        out = {}
        for raw in self._dump(nl.dump_services_body(), "list IPVS virtual servers"):
            family, key, server = nl.parse_service(raw)
            if family == self.family:
                out[key] = (server, self._dests(key))
        return out

    def dests(self, key: Key) -> dict[Dest, tuple[int, int, int]]:
        """One virtual server's real servers; IpvsError if it does not exist.

        The kernel's dump answers nothing for a missing virtual server, as
        for one without real servers; an empty answer is told apart by
        asking for the virtual server itself (ESRCH when it is missing)."""
        found = self._dests(key)
        if not found:
            body = nl.get_service_body(self.family, key)
            try:
                self.channel.send(Request(body, self.genl, 0, f"reading virtual server {describe(key)}"))
            except NetlinkError as exc:
                raise IpvsError(exc.strerror + HINTS.get(exc.errno, ""), exc.errno) from None
        return found

    def _dests(self, key: Key) -> dict[Dest, tuple[int, int, int]]:
        raws = self._dump(nl.dump_dests_body(self.family, key), f"listing the real servers of {describe(key)}")
        return dict(nl.parse_dest(raw, self.family) for raw in raws)

    def _dump(self, body: bytes, what: str) -> list[bytes]:
        try:
            return self.channel.dump(Request(body, self.genl, NLM_F_DUMP, what))
        except NetlinkError as exc:
            raise IpvsError(exc.strerror, exc.errno) from None

    # --- writing

    def apply(self, add_servers=(), edit_servers=(), dests=(), delete_servers=()) -> None:
        """Add virtual servers, change them, run the real-server operations
        ((op, key, dest, weight), op "add" | "set" | "delete") in order,
        then delete virtual servers. Raises IpvsError for the first failure."""
        ops = (list(add_servers), list(edit_servers), list(dests), list(delete_servers))
        count = sum(map(len, ops))
        if not count:
            return
        if self.channel.seq + count >= 1 << 32:     # the sequence number is a u32
            self.channel.seq = 0
        base = self.channel.seq + 1
        self.channel.seq += count
        # all encoded before anything is sent: a bad operation fails alone
        messages = []
        try:
            for message in self._encode(base, *ops):
                messages.append(message)
        except (ValueError, KeyError, OSError, struct.error) as exc:
            raise IpvsError(f"{describe_operation(len(messages), *ops)}: cannot encode it ({exc!r})") from None
        failures, lost = self._send(messages, base)
        if failures or lost:
            raise _error(failures, lost, base, ops)

    def _encode(self, seq, add_servers, edit_servers, dests, delete_servers):
        return nl.messages(self.genl, self.family, seq, add_servers, edit_servers, dests, delete_servers)

    def _send(self, messages: list[bytes], seq: int) -> tuple[list, bool]:
        """Send in chunks, each ending with an acked message; returns the
        failures [(seq, errno, kernel text)] and whether replies were lost."""
        failures, lost = [], False
        chunk, size = [], 0
        for message in messages:
            if size + len(message) > self.chunk_bytes and chunk:
                lost |= self._send_chunk(chunk, seq, failures)
                seq += len(chunk)
                chunk, size = [], 0
            chunk.append(message)
            size += len(message)
        lost |= self._send_chunk(chunk, seq, failures)
        return failures, lost

    def _send_chunk(self, chunk: list[bytes], first: int, failures: list) -> bool:
        """Send one chunk and read its replies; True if some were lost."""
        last = first + len(chunk) - 1
        chunk[-1] = nl.with_ack(chunk[-1])
        self.sock.send(b"".join(chunk))
        try:
            while True:
                if _collect(self.sock.recv(ACK_BUFFER), first, last, failures):
                    return False
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
        self._drain(first, last, failures)
        return True

    def _drain(self, first: int, last: int, failures: list) -> None:
        """After an overrun: read what is queued, without waiting for the
        final ack, which may have been one of the replies dropped."""
        self.sock.settimeout(0)
        try:
            while True:
                try:
                    _collect(self.sock.recv(ACK_BUFFER), first, last, failures)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.sock.settimeout(TIMEOUT)

    def _resolve_family(self) -> int:
        req = Request(nl.get_family_body(), nl.GENL_ID_CTRL, 0, "look up the IPVS generic netlink family")
        try:
            self.channel.send(req)
        except NetlinkError as exc:
            if exc.errno == errno.ENOENT:
                raise IpvsError("the kernel has no IPVS (is the ip_vs module loaded?)", exc.errno) from None
            raise IpvsError(exc.strerror, exc.errno) from None
        genl = nl.family_id(req.replies[0]) if req.replies else None
        if genl is None:
            raise IpvsError("the kernel's answer for the IPVS generic netlink family carries no id")
        return genl


def describe(key: Key) -> str:
    if key.protocol == FWMARK:
        return f"firewall mark {key.port:#x}"
    return f"{key.protocol} {endpoint(key.address, key.port)}"


def describe_operation(index: int, add_servers, edit_servers, dests, delete_servers) -> str:
    """The index-th operation of a batch, in words."""
    if index < len(add_servers):
        key, server = add_servers[index]
        return f"adding virtual server {describe(key)} ({server.scheduler})"
    index -= len(add_servers)
    if index < len(edit_servers):
        key, server = edit_servers[index]
        return f"changing virtual server {describe(key)} to {server.scheduler}, persistence {server.timeout} s"
    index -= len(edit_servers)
    if index < len(dests):
        op, key, (address, port), weight = dests[index]
        real = endpoint(address, port)
        return {"add": f"adding real server {real} to {describe(key)}",
                "set": f"setting real server {real} of {describe(key)} to weight {weight}",
                "delete": f"deleting real server {real} from {describe(key)}"}[op]
    return f"deleting virtual server {describe(delete_servers[index - len(dests)])}"


def _error(failures: list, lost: bool, base: int, ops: tuple) -> IpvsError:
    if not failures:
        return IpvsError("IPVS changes: the kernel's replies overflowed the socket's buffer; some may have failed")
    seq, code, text = min(failures)
    message = f"{describe_operation(seq - base, *ops)}: {os.strerror(code)}{HINTS.get(code, '')}"
    message += f" ({text})" if text else ""
    others = len(failures) - 1
    if others or lost:
        plural = "s" if others != 1 or lost else ""
        message += f"; and {others}{' or more' if lost else ''} other failure{plural} in the same batch"
    return IpvsError(message, code)


def _collect(data: bytes, first: int, last: int, failures: list) -> bool:
    """Note the failures among one read's replies; True once the ack of
    `last` (the chunk's acked message) is among them."""
    done = False
    offset = 0
    while offset + 16 <= len(data):
        length, kind, flags, seq, _ = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            break
        if kind == NLMSG_ERROR and first <= seq <= last:
            body = data[offset + 16: offset + length]
            code = -struct.unpack_from("=i", body)[0]
            if code:
                failures.append((seq, code, _ext_ack_message(body, flags)))
            done |= seq == last
        offset += (length + 3) & ~3
    return done


def _open_socket(netns: str | None) -> socket.socket:
    if netns is None:
        return _genl_socket()
    fd = ns.open_netns(netns if "/" in netns else os.path.join(RUN_NETNS, netns))
    try:
        # on a thread of its own: this thread never leaves its namespace
        return ns.call_in_netns(fd, _genl_socket)
    finally:
        os.close(fd)


def _genl_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_GENERIC)
    sock.bind((0, 0))
    return sock


def _size_buffers(sock: socket.socket) -> int:
    """Raise both buffers (see RCVBUF); returns the largest send the kernel
    takes (it refuses one over its send buffer less 32 bytes)."""
    for force, plain, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, RCVBUF),
                               (SO_SNDBUFFORCE, socket.SO_SNDBUF, MAX_CHUNK)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except PermissionError:     # without CAP_NET_ADMIN: as far as net.core.[rw]mem_max allow
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
    return min(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 64, MAX_CHUNK)
