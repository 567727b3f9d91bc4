"""One NETLINK_ROUTE socket: send a batch of requests, collect their acks."""
import errno
import os
import socket
import struct
from dataclasses import dataclass, field

from netplane.netlink import netns

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_ACK_TLVS = 0x200
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270
HEADER = struct.Struct("=IHHII")  # length, type, flags, seq, pid
# The kernel answers in microseconds; only a wedged kernel takes this long,
# and an agent worker must not hang on it forever.
TIMEOUT = 30.0
DUMP_RETRIES = 5
# Acks are tens of bytes; a dump part can be tens of kilobytes. Keeping the
# ack buffer under malloc's mmap threshold keeps ADD's reads cheap.
ACK_BUFFER, DUMP_BUFFER = 1 << 16, 1 << 18
# Requests per write. Each ack takes about a kilobyte of the socket's
# receive buffer (an skb's truesize, whatever its length), and a full buffer
# drops acks (ENOBUFS): 1,000 at once overflowed the default 208 KiB.
ACKED_PER_WRITE = 100


@dataclass
class Request:
    """One rtnetlink message to send, as plain data.

    `body` is the encoded message after the netlink header (the channel adds
    the header with its own sequence number); `what` says in words what the
    request does, for error messages.
    """
    body: bytes
    type: int
    flags: int
    what: str
    tolerate: frozenset = frozenset()
    replies: list = field(default_factory=list)  # raw reply messages, filled on send


class DumpInterrupted(Exception):
    """The dumped table changed while it was being read; read it again."""


class NetlinkError(OSError):
    def __init__(self, code: int, what: str, detail: str = "") -> None:
        text = f"{what}: {os.strerror(code)}" + (f" ({detail})" if detail else "")
        super().__init__(code, text)
        self.what = what


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.seq = 0
        # Ask for the kernel's own error text, and not the echoed request.
        for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            sock.setsockopt(SOL_NETLINK, opt, 1)

    @classmethod
    def open(cls, netns_fd: int | None = None) -> "Channel":
        """A channel in this thread's namespace, or in the one netns_fd names."""
        if netns_fd is None:
            return cls(_route_socket())
        return cls(netns.call_in_netns_inline(netns_fd, _route_socket))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, *requests: Request) -> list[Request]:
        """Send the batch, ACKED_PER_WRITE requests a write, and wait for every ack.

        The kernel runs the messages in order, and runs all of them: a batch
        is not a transaction, so later messages take effect even when an
        earlier one failed. The first failure whose errno the request does
        not tolerate is raised after all acks are read, so the socket is
        clean for the next batch.
        """
        failure = None
        for start in range(0, len(requests), ACKED_PER_WRITE):
            failure = self._send_acked(requests[start:start + ACKED_PER_WRITE]) or failure
        if failure:
            raise failure
        return list(requests)

    def _send_acked(self, requests) -> NetlinkError | None:
        """One write and its acks; the first failure not tolerated, if any."""
        by_seq = {}
        chunks = []
        for req in requests:
            self.seq += 1
            by_seq[self.seq] = req
            req.replies = []
            chunks.append(self._frame(req, NLM_F_ACK))
        self.sock.send(b"".join(chunks))
        failure = None
        pending = set(by_seq)
        while pending:
            for seq, code, detail, raw in _parse(self.sock.recv(ACK_BUFFER)):
                req = by_seq.get(seq)
                if req is None:
                    continue
                if raw is not None:
                    req.replies.append(raw)
                    continue
                pending.discard(seq)
                if code and code not in req.tolerate and failure is None:
                    failure = NetlinkError(code, req.what, detail)
        return failure

    def dump(self, req: Request) -> list[bytes]:
        """Run a dump request; returns the raw reply messages."""
        for _ in range(DUMP_RETRIES):
            try:
                return self._dump_once(req)
            except DumpInterrupted:
                continue
        raise NetlinkError(errno.EAGAIN, req.what, "the table kept changing while it was read")

    def _dump_once(self, req: Request) -> list[bytes]:
        self.seq += 1
        self.sock.send(self._frame(req, 0))
        out, interrupted = [], False
        while True:
            for seq, code, detail, raw in _parse(self.sock.recv(DUMP_BUFFER)):
                if seq != self.seq:
                    continue
                if raw is None and code:
                    raise NetlinkError(code, req.what, detail)
                if raw is None:
                    if interrupted:
                        raise DumpInterrupted()
                    return out
                interrupted |= bool(HEADER.unpack_from(raw)[2] & NLM_F_DUMP_INTR)
                out.append(raw)


    def _frame(self, req: Request, extra_flags: int) -> bytes:
        flags = req.flags | NLM_F_REQUEST | extra_flags
        return HEADER.pack(HEADER.size + len(req.body), req.type, flags, self.seq, 0) + req.body


def _route_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


def _parse(data: bytes):
    """Yield (seq, errno, kernel message, raw) for each message in a read.

    raw is the message bytes for data replies and None for acks, errors and
    the end of a dump (errno 0 there).
    """
    offset = 0
    while offset + HEADER.size <= len(data):
        length, mtype, flags, seq, _ = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            break
        body = data[offset + HEADER.size: offset + length]
        if mtype == NLMSG_ERROR:
            code = -struct.unpack_from("=i", body)[0]
            yield seq, code, _ext_ack_message(body, flags) if code else "", None
        elif mtype == NLMSG_DONE:
            # A dump that failed part way carries its errno in the DONE message.
            code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
            yield seq, code, "", None
        else:
            yield seq, 0, "", data[offset: offset + length]
        offset += (length + 3) & ~3


def _ext_ack_message(body: bytes, flags: int) -> str:
    if not flags & NLM_F_ACK_TLVS:
        return ""
    offset = 4 + HEADER.size  # error code, then the (capped) original header
    while offset + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, offset)
        if length < 4:
            break
        if kind & 0x3FFF == NLMSGERR_ATTR_MSG:
            return body[offset + 4: offset + length].rstrip(b"\0").decode(errors="replace")
        offset += (length + 3) & ~3
    return ""


ENODEV = errno.ENODEV
EEXIST = errno.EEXIST
