"""The plugin without an agent: the same work, done in this process.

The thin client execs this when no agent answers on the node. It imports
pyroute2 and the rest cold (about 0.3 s), which is the price of needing
nothing running; the result is the same as through the agent.
"""
import json
import logging
import os
import sys


def main() -> int:
    try:
        from netplane.cni import plugin
        from netplane.logs import configure_logging
    except Exception as exc:  # a broken install must still answer in JSON
        print(json.dumps({"cniVersion": "1.1.0", "code": 999, "msg": "the netplane plugin cannot load",
                          "details": f"{type(exc).__name__}: {exc}"}))
        return 1
    # Runtimes read stdout as the result, so logs go to stderr only.
    configure_logging(os.environ.get("NETPLANE_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    reply = plugin.run(os.environ, sys.stdin.buffer.read())
    sys.stdout.buffer.write(reply.stdout)
    sys.stdout.buffer.flush()
    return reply.exit_code


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
