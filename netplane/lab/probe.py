"""The lab's client: connect to a service and report who answered.

    python -m netplane.lab.probe tcp|udp HOST PORT [--count N] [--interval S]
                                 [--source IP] [--sport PORT] [--timeout S]

prints one JSON object: {"ok": n, "failed": n, "answers": {"<name> <client>": n},
"errors": {"<error>": n}}. With --count 0 it runs until --duration passes.
A refused connection (the proxy's REJECT) shows as "refused", a silent
drop as "timeout".
"""
import argparse
import json
import socket
import time
from collections import Counter


def once(proto: str, host: str, port: int, timeout: float, source: str = "", sport: int = 0) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as s:
        s.settimeout(timeout)
        if source or sport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((source or ("::" if family == socket.AF_INET6 else "0.0.0.0"), sport))
        if proto == "tcp":
            s.connect((host, port))
            return s.makefile().readline().strip()
        s.sendto(b"hello", (host, port))
        return s.recv(2048).decode().strip()


def probe(proto, host, port, count=1, interval=0.0, timeout=2.0, source="", sport=0, duration=0.0) -> dict:
    answers, errors = Counter(), Counter()
    deadline = time.monotonic() + duration
    n = 0
    while (n < count) if count else (time.monotonic() < deadline):
        n += 1
        try:
            answers[once(proto, host, port, timeout, source, sport)] += 1
        except ConnectionRefusedError:
            errors["refused"] += 1
        except (socket.timeout, TimeoutError):
            errors["timeout"] += 1
        except OSError as err:
            errors[err.strerror or str(err)] += 1
        if interval:
            time.sleep(interval)
    return {"ok": sum(answers.values()), "failed": sum(errors.values()), "answers": dict(answers),
            "errors": dict(errors)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("proto", choices=["tcp", "udp"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--source", default="")
    p.add_argument("--sport", type=int, default=0)
    a = p.parse_args(argv)
    print(json.dumps(probe(a.proto, a.host, a.port, a.count, a.interval, a.timeout, a.source, a.sport, a.duration)))


if __name__ == "__main__":
    main()
