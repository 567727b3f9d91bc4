"""The data-path side of the programming benchmark: a pod's echo server, and
the prober that watches which pod answers a Service.

    python probe.py echo --bind IP --port 8080 --name POD
    python probe.py watch HOST PORT [--interval 0.001] [--timeout 0.05]

`echo` listens on one address only (netplane.lab.echo binds every address,
so two pods sharing one namespace could not both use port 8080). Each TCP
connection gets one line, "<name> <client address>", and is closed. It
prints "ready" once it listens.

`watch` connects to HOST:PORT in a tight loop, reads the answer and closes
with a reset (SO_LINGER 0: no TIME_WAIT, so a thousand connections a second
never run out of ports). It prints "<time.monotonic()> <state>" whenever
the state changes, and once at start: the state is the name of the pod that
answered, or "!refused", "!timeout", "!<errno name>" when nothing did.
CLOCK_MONOTONIC is the same in every network namespace, so these times
compare directly with the harness's.

Standard library only, and runnable by path: the harness starts it with
its own interpreter whatever netplane tree is under test.
"""
import argparse
import errno
import socket
import struct
import sys
import time

LINGER_RESET = struct.pack("ii", 1, 0)


def classify(answer: bytes) -> str:
    """The pod's name from an echo answer ("<name> <client>")."""
    words = answer.split(None, 1)
    return words[0].decode(errors="replace") if words else "!empty"


def once(host: str, port: int, timeout: float) -> str:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        s.settimeout(timeout)
        s.connect((host, port))
        return classify(s.recv(256))
    except ConnectionRefusedError:
        return "!refused"
    except (TimeoutError, socket.timeout):
        return "!timeout"
    except OSError as err:
        return "!" + errno.errorcode.get(err.errno or 0, "error")
    finally:
        s.close()


def watch(host: str, port: int, interval: float, timeout: float, out=sys.stdout) -> None:
    last = None
    while True:
        state = once(host, port, timeout)
        now = time.monotonic()
        if state != last:
            out.write(f"{now:.6f} {state}\n")
            out.flush()
            last = state
        if interval:
            time.sleep(interval)


def echo(bind: str, port: int, name: str) -> None:
    srv = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(1024)
    print("ready", flush=True)
    while True:
        conn, peer = srv.accept()
        try:
            conn.sendall(f"{name} {peer[0]}\n".encode())
        except OSError:
            pass                                   # the prober gave up (timeout) or reset first
        finally:
            conn.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="job", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--bind", required=True)
    e.add_argument("--port", type=int, default=8080)
    e.add_argument("--name", required=True)
    w = sub.add_parser("watch")
    w.add_argument("host")
    w.add_argument("port", type=int)
    w.add_argument("--interval", type=float, default=0.001)
    w.add_argument("--timeout", type=float, default=0.05)
    args = p.parse_args(argv)
    try:
        if args.job == "echo":
            echo(args.bind, args.port, args.name)
        else:
            watch(args.host, args.port, args.interval, args.timeout)
    except (KeyboardInterrupt, BrokenPipeError):
        pass


if __name__ == "__main__":
    main()
