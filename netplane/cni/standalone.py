"""The plugin without an agent: the same work, done in this process.

The thin client execs this when no agent answers on the node, as
`python -I -S -c <boot>` (install.standalone_command). Everything it
imports is paid on every run, so the ADD/DEL path imports no pyroute2
(netlink messages are encoded by netplane.netlink.wire); the result is
the same as through the agent.
"""
import json
import logging
import os
import sys


def main() -> int:
    try:
        from netplane.cni import plugin
        from netplane.cni.reaper import ChildReaper
        from netplane.logs import configure_logging
    except Exception as exc:  # a broken install must still answer in JSON
        print(json.dumps({"cniVersion": "1.1.0", "code": 999, "msg": "the netplane plugin cannot load",
                          "details": f"{type(exc).__name__}: {exc}"}))
        return 1
    # Runtimes read stdout as the result, so logs go to stderr only.
    configure_logging(os.environ.get("NETPLANE_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    reaper = ChildReaper()
    reply = plugin.run(os.environ, sys.stdin.buffer.read(), reaper=reaper)
    sys.stdout.buffer.write(reply.stdout)
    sys.stdout.buffer.flush()
    reaper.finish()
    return reply.exit_code


def entry() -> None:
    logging.captureWarnings(True)
    code = main()
    # stdout is flushed and log records are flushed as written: skip the
    # interpreter's finalisation, a few ms per pod.
    os._exit(code)


if __name__ == "__main__":
    entry()
