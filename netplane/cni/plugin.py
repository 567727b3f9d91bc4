"""One plugin run: environment and stdin in, exit code and stdout out.

This is the single entry point behind both paths: the agent calls run() on
a warm worker thread for each request its thin client forwards, and the
standalone path calls it in a fresh process. It never raises and never
prints: every failure becomes the spec's error JSON, and anything
unexpected is logged with its traceback and reported as code 999.
"""
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Iterator, Mapping

from netplane.cni import check, config, housekeeping, lifecycle, result, versions
from netplane.cni.errors import (INCOMPATIBLE_VERSION, INTERNAL, INVALID_ENVIRONMENT, UNKNOWN_CONTAINER,
                                 CniError)
from netplane.cni.invocation import Invocation, parse_environment
from netplane.cni.reaper import Reaper
from netplane.netlink import netns

log = logging.getLogger("netplane.cni")


@dataclass(frozen=True)
class Reply:
    exit_code: int
    stdout: bytes


def run(env: Mapping[str, str], stdin: bytes, netns_fd: int | None = None, reaper: Reaper | None = None,
        client_opens_netns: bool = False) -> Reply:
    """One request. The agent passes client_opens_netns: its client opened
    CNI_NETNS, so no descriptor means the path did not open there."""
    started = time.perf_counter()
    version = None  # the config's, once known
    raw = None      # stdin decoded, once: error answers read its cniVersion too
    command = env.get("CNI_COMMAND", "?")
    try:
        raw, undecodable = _decode(stdin)
        inv = parse_environment(env)  # an environment error outranks a stdin one
        if inv.command == "VERSION":
            return _ok(version_info(raw))
        if undecodable:
            raise undecodable
        version = config.cni_version(raw)
        if not versions.allows(version, inv.command):
            raise CniError(INCOMPATIBLE_VERSION, f"config version does not allow {inv.command}",
                           f"config is {version!r}; {inv.command} needs {versions.VERB_INTRODUCED[inv.command]} or later")
        conf = config.parse(raw)
        return _ok(_dispatch(inv, conf, netns_fd, reaper, client_opens_netns))
    except CniError as err:
        log.warning("%s failed: %s (code %d)", command, err, err.code)
        return _error(err, version or _answer_version(raw))
    except Exception as exc:  # a bug or a kernel surprise: report, never crash
        log.exception("%s failed unexpectedly", command)
        return _error(CniError(INTERNAL, str(exc) or type(exc).__name__), version or _answer_version(raw))
    finally:
        log.debug("%s took %.2f ms", command, (time.perf_counter() - started) * 1e3)


def _dispatch(inv: Invocation, conf: config.NetConf, netns_fd: int | None, reaper: Reaper | None,
              client_opens_netns: bool = False) -> dict | None:
    if inv.command == "ADD":
        # A chained ADD's prevResult is checked before anything is opened or taken.
        prev = result.decode(conf.prev_result) if conf.prev_result is not None else None
        with pod_netns(inv, netns_fd, client_opens_netns) as fd:
            return lifecycle.add(inv, conf, fd, prev)
    if inv.command == "DEL":
        with del_netns(inv, netns_fd, client_opens_netns) as fd:
            lifecycle.delete(inv, conf, reaper, fd)
        return None
    if inv.command == "CHECK":
        expected = check.expected(conf)
        with pod_netns(inv, netns_fd, client_opens_netns) as fd:
            check.check(inv, conf, expected, fd)
        return None
    if inv.command == "GC":
        housekeeping.gc(conf)
        return None
    housekeeping.status(conf)  # STATUS
    return None


def _decode(stdin: bytes) -> tuple[dict | None, CniError | None]:
    """stdin decoded, or why it cannot be. Decoding happens once, here: a
    second parse in an error handler could fail anew (a RecursionError on
    deeply nested input once crashed the handler itself)."""
    try:
        return config.decode(stdin), None
    except CniError as err:
        return None, err


def version_info(raw: dict | None) -> dict:
    """VERSION echoes the version it was asked about, as the spec says, even
    one it does not speak: supportedVersions tells the runtime what to use.
    `raw` is the decoded stdin, None if there was none or it did not decode."""
    return {"cniVersion": _requested_version(raw) or versions.LATEST, "supportedVersions": list(versions.SUPPORTED)}


def _answer_version(raw: dict | None) -> str:
    """Errors found before the config is parsed still answer in the config's
    version when we speak it."""
    requested = _requested_version(raw)
    return requested if requested in versions.SUPPORTED else versions.LATEST


def _requested_version(raw: dict | None) -> str | None:
    """The decoded config's cniVersion string, if it has one. Never raises."""
    value = raw.get("cniVersion") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value else None


@contextlib.contextmanager
def pod_netns(inv: Invocation, passed_fd: int | None, client_opens: bool = False) -> Iterator[int]:
    """The pod's namespace as a descriptor, checked to be a real, foreign netns.

    The agent receives the descriptor from its client (which opened
    CNI_NETNS in the runtime's own mount namespace); the standalone path
    opens the path itself. The agent never opens the path: in its own
    mount namespace (a container, say) it may name another namespace.
    """
    fd = passed_fd
    if fd is None and client_opens:
        raise CniError(UNKNOWN_CONTAINER, "network namespace does not exist", inv.netns)
    if fd is None:
        try:
            fd = netns.open_netns(inv.netns)
        except FileNotFoundError:
            raise CniError(UNKNOWN_CONTAINER, "network namespace does not exist", inv.netns) from None
        except OSError as exc:
            raise CniError(INVALID_ENVIRONMENT, "cannot open CNI_NETNS", f"{inv.netns}: {exc.strerror}") from None
    try:
        if not netns.is_netns(fd):
            raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS is not a network namespace", inv.netns)
        if netns.same_netns(fd, netns.own_netns_path()):
            raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS is the node's own network namespace", inv.netns)
        yield fd
    finally:
        if passed_fd is None:
            os.close(fd)


@contextlib.contextmanager
def del_netns(inv: Invocation, passed_fd: int | None, client_opens: bool) -> Iterator[int | None]:
    """DEL's pod namespace if there is one, else None: DEL must succeed
    without it (the spec); with it, DEL frees the interface name sooner.
    As for ADD, the agent uses only what its client opened."""
    fd = passed_fd
    if fd is None and not client_opens and inv.netns:
        with contextlib.suppress(OSError):
            fd = netns.open_netns(inv.netns)
    try:
        foreign = fd is not None and netns.is_netns(fd) and not netns.same_netns(fd, netns.own_netns_path())
        yield fd if foreign else None
    finally:
        if fd is not None and passed_fd is None:
            os.close(fd)


def _ok(body: dict | None) -> Reply:
    return Reply(0, json.dumps(body, indent=2).encode() + b"\n" if body else b"")


def _error(err: CniError, version: str) -> Reply:
    return Reply(1, json.dumps(err.to_dict(version), indent=2).encode() + b"\n")
