"""Sockets left on a backend that went: destroyed, so clients reconnect.

A socket translated at connect() talks to its backend directly: when the
backend leaves its Service nothing moves it (there is no packet to
translate again), and a connected UDP socket would keep sending into the
void. As Cilium's socket LB does, such sockets are destroyed; the
application sees an error and reconnects, through the programs, to a live
backend. Only sockets the programs translated are touched: they are the
ones whose cookie the reverse-translation map holds with that backend, so
a pod that dials the old backend's address itself keeps its socket.

How: the cookies come from the pinned `revnat` map; the sockets live in
the network namespaces of the cgroup's processes (the pods, the node), so
for each namespace a child process enters it and asks sock_diag for the
sockets connected to the gone backends, and destroys (SOCK_DESTROY) those
whose cookie is in the set. The kernel needs CONFIG_INET_DIAG_DESTROY.

    python -m netplane.proxy.ebpf.sockets '{"cookies": [...], "backends": [["10.244.1.5", 8080], ...]}'
"""
import json
import os
import socket
import struct
import subprocess
import sys

from netplane.proxy.ebpf import entries as e

NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, SOCK_DESTROY = 4, 20, 21
NLM_F_REQUEST, NLM_F_DUMP, NLMSG_DONE, NLMSG_ERROR = 1, 0x300, 3, 2
ALL_STATES = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")                  # nlmsghdr
_REQUEST = struct.Struct("=BBBxI")                # inet_diag_req_v2: family, protocol, ext, pad, states
_ID = struct.Struct(">HH16s16sI")                 # inet_diag_sockid: sport, dport, src, dst, if (then the cookie)
_COOKIE = struct.Struct("=II")
_MESSAGE = struct.Struct("=BBBB")                 # inet_diag_msg: family, state, timer, retrans (then the id)


def namespaces(cgroup: str) -> dict[int, int]:
    """network namespace inode -> a pid in it, for the cgroup's processes (all levels)."""
    found = {}
    for root, _dirs, files in os.walk(cgroup):
        if "cgroup.procs" not in files:
            continue
        with open(os.path.join(root, "cgroup.procs")) as f:
            for pid in f.read().split():
                try:
                    found.setdefault(os.stat(f"/proc/{pid}/ns/net").st_ino, int(pid))
                except OSError:
                    pass                          # gone meanwhile
    return found


def stale(revnat: dict[bytes, bytes], left: list[tuple], gone: set[tuple]) -> tuple[dict, dict]:
    """From the reverse-translation map: the UDP sockets whose backend left the
    Service they dialled (`left`: (service key's where, endpoint)), and the
    TCP ones whose backend is `gone`. Each as cookie -> backend (text, port)."""
    left_by = {}
    for (addr, port, _proto, scope), endpoint in left:
        if not scope & e.SCOPE_EXTERNAL:         # the tc programs' keys: no socket dialled those
            left_by.setdefault((None if scope else addr, port), set()).add(endpoint[:2])
    gone = {endpoint[:2] for endpoint in gone}
    udp, tcp = {}, {}
    for key, value in revnat.items():
        orig, orig_port, backend = e.revnat_value(value)
        cookie = int.from_bytes(key, "little")
        if backend in left_by.get((orig, orig_port), ()) or backend in left_by.get((None, orig_port), ()):
            udp[cookie] = (e.text(backend[0]), backend[1])
        if backend in gone:
            tcp[cookie] = (e.text(backend[0]), backend[1])
    return udp, tcp


def destroy(cgroup: str, udp: dict, tcp: dict) -> int:
    """Destroy those sockets, in every network namespace of the cgroup; returns how many."""
    if not (udp or tcp):
        return 0
    job = json.dumps({"udp": [[c, *b] for c, b in udp.items()], "tcp": [[c, *b] for c, b in tcp.items()]})
    done = 0
    for pid in namespaces(cgroup).values():
        run = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-m",
                              "netplane.proxy.ebpf.sockets", job], capture_output=True, text=True)
        if run.returncode == 0 and run.stdout.strip().isdigit():
            done += int(run.stdout)
    return done


def destroy_here(udp: dict[int, tuple], tcp: dict[int, tuple]) -> int:
    """In this process's namespace: the sockets of those cookies, each only
    if it is still connected to the backend its cookie was translated to."""
    killed = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        for proto, wanted in ((socket.IPPROTO_UDP, udp), (socket.IPPROTO_TCP, tcp)):
            if not wanted:
                continue
            for family in (socket.AF_INET, socket.AF_INET6):
                size = 4 if family == socket.AF_INET else 16
                for sockid, cookie in _dump(nl, family, proto):
                    backend = wanted.get(cookie)
                    if backend and sockid[3][:size] == _packed(backend[0], family) and sockid[1] == backend[1]:
                        killed += _destroy(nl, family, proto, sockid, cookie)
    return killed


def _packed(addr: str, family: int) -> bytes:
    """A backend's address as a socket of `family` holds it (v4-mapped on IPv6 sockets)."""
    if family == socket.AF_INET6 and ":" not in addr:
        return bytes(10) + b"\xff\xff" + socket.inet_pton(socket.AF_INET, addr)
    return socket.inet_pton(family, addr) if (":" in addr) == (family == socket.AF_INET6) else b""


def _request(kind: int, flags: int, family: int, proto: int, sockid=None, cookie=(0xFFFFFFFF, 0xFFFFFFFF)) -> bytes:
    body = _REQUEST.pack(family, proto, 0, ALL_STATES)
    body += _ID.pack(*(sockid or (0, 0, bytes(16), bytes(16), 0))) + _COOKIE.pack(*cookie)
    return _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | flags, 1, 0) + body


def _dump(nl, family: int, proto: int):
    nl.send(_request(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, family, proto))
    while True:
        data = nl.recv(65536)
        offset = 0
        while offset < len(data):
            length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                return
            body = offset + _HEADER.size + _MESSAGE.size
            sockid = _ID.unpack_from(data, body)
            low, high = _COOKIE.unpack_from(data, body + _ID.size)
            yield sockid, low | high << 32
            offset += (length + 3) & ~3


def _destroy(nl, family: int, proto: int, sockid, cookie: int) -> int:
    nl.send(_request(SOCK_DESTROY, 0x4, family, proto, sockid, (cookie & 0xFFFFFFFF, cookie >> 32)))  # NLM_F_ACK
    reply = nl.recv(4096)
    _, kind, _, _, _ = _HEADER.unpack_from(reply, 0)
    return 1 if kind == NLMSG_ERROR and struct.unpack_from("=i", reply, _HEADER.size)[0] == 0 else 0


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(destroy_here({c: (a, p) for c, a, p in job["udp"]}, {c: (a, p) for c, a, p in job["tcp"]}))
