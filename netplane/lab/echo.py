"""The lab's backend server: says who answered and whom it saw.

`python -m netplane.lab.echo --name POD --port 8080 --marker DIR` serves TCP
and UDP on every address (IPv4 and IPv6) of the pod's namespace. Each TCP
connection gets one line, "<name> <client address>", and is closed; each UDP
datagram gets the same line back. The client address is what proves
masquerading or its absence (externalTrafficPolicy: Local). `--marker` is
the lab directory: the lab finds and stops its servers by it.
"""
import argparse
import selectors
import socket


def serve(name: str, port: int) -> None:
    sel = selectors.DefaultSelector()
    for family in (socket.AF_INET6,):                 # dual-stack sockets: IPv4 arrives mapped
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        tcp.bind(("::", port))
        tcp.listen(512)
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        udp.bind(("::", port))
        sel.register(tcp, selectors.EVENT_READ, "tcp")
        sel.register(udp, selectors.EVENT_READ, "udp")
    while True:
        for key, _ in sel.select():
            answer(key.fileobj, key.data, name)


def answer(sock: socket.socket, kind: str, name: str) -> None:
    """One TCP connection or one datagram. A client that went away first (a
    reset before the answer, as a prober with a short timeout makes) costs
    its own answer only, never the server."""
    try:
        if kind == "tcp":
            conn, peer = sock.accept()
            with conn:
                conn.sendall(f"{name} {_plain(peer[0])}\n".encode())
        else:
            _data, peer = sock.recvfrom(2048)
            sock.sendto(f"{name} {_plain(peer[0])}\n".encode(), peer)
    except OSError:
        pass


def _plain(address: str) -> str:
    return address[7:] if address.startswith("::ffff:") else address


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--marker", default="", help="the lab directory (how the lab recognises its servers)")
    args = p.parse_args(argv)
    try:
        serve(args.name, args.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
