"""The benchmark's client, one long-lived process in a pod (or the external
client's namespace), told what to do over stdin, so no interpreter start
falls inside a measurement. `python -m netplane.bench.proxy.client`.

Every job names the answer it expects: the echo server's line starts with
the pod's name (and, where it matters, the address it saw), so a number is
only ever made of connections that reached the right pod.

Jobs, one JSON line each, answered with one JSON line:
- {"job": "block", "host", "port", "n", "expect"[, "timeout"]}: n
  connections, one after the other, each timed from connect() to the first
  byte back -> {"us": [...], "errors": {kind: count}};
- {"job": "until", "host", "port", "expect", "timeout", "interval"}: connect
  every `interval` s until an answer starts with `expect`
  -> {"at": time.monotonic() of that answer (the clock is system-wide, so
  the caller compares it with its own), "tries": n} or {"error": ...};
- {"job": "rate", "host", "port", "seconds", "expect"[, "timeout"]}: as many
  connections as one client makes in `seconds` -> {"ok": n, "seconds":
  elapsed, "errors"}. Its timeout is short (0.2 s), so that a lost
  connection costs the window little; the caller counts the losses.
"""
import json
import socket
import struct
import sys
import time

# SO_LINGER 0: the close is a reset, so no TIME_WAIT piles up over thousands of connections
LINGER_RESET = struct.pack("ii", 1, 0)


def exchange(host: str, port: int, timeout: float) -> bytes:
    """One connection: connect, send a byte, read the first answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        s.send(b"x")
        return s.recv(64)
    finally:
        s.close()


def _count(errors: dict, kind: str) -> None:
    errors[kind] = errors.get(kind, 0) + 1


def block(host: str, port: int, n: int, expect: str, timeout: float = 1.0) -> dict:
    us, errors, want = [], {}, expect.encode()
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            answer = exchange(host, port, timeout)
        except OSError as err:
            _count(errors, type(err).__name__)
            continue
        t1 = time.perf_counter()
        if answer.startswith(want):
            us.append((t1 - t0) * 1e6)
        else:
            _count(errors, "wrong answer")
    return {"us": us, "errors": errors}


def until(host: str, port: int, expect: str, timeout: float, interval: float) -> dict:
    want, deadline, tries = expect.encode(), time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        tries += 1
        try:
            if exchange(host, port, max(interval, 0.02)).startswith(want):
                return {"at": time.monotonic(), "tries": tries}
        except OSError:
            pass
        time.sleep(interval)
    return {"error": f"no answer from {expect.strip()} through {host}:{port} within {timeout:g} s", "tries": tries}


def rate(host: str, port: int, seconds: float, expect: str, timeout: float = 0.2) -> dict:
    ok, errors, want = 0, {}, expect.encode()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        try:
            answer = exchange(host, port, timeout)
        except OSError as err:
            _count(errors, type(err).__name__)
            continue
        if answer.startswith(want):
            ok += 1
        else:
            _count(errors, "wrong answer")
    return {"ok": ok, "seconds": time.perf_counter() - t0, "errors": errors}


JOBS = {"block": block, "until": until, "rate": rate}


def main() -> None:
    for line in sys.stdin:
        job = json.loads(line)
        print(json.dumps(JOBS[job.pop("job")](**job)), flush=True)


if __name__ == "__main__":
    main()
