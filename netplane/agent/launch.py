"""Start a node agent inside a namespace and wait until it serves.

Used wherever netplane builds nodes out of namespaces: the demo, the
tests and the benchmarks (and the lab, later).
"""
import os
import subprocess
import sys

from netplane import sandbox
from netplane.cni.server import answers
from netplane.netlink.netns import open_netns


def start_agent(sb: sandbox.Sandbox, node: str, log_file: str, *flags: str) -> subprocess.Popen:
    agent = sb.spawn(node, [sys.executable, "-m", "netplane", "agent", "--log-file", log_file, *flags])
    fd = open_netns(node)
    try:
        sandbox.wait_for(lambda: agent.poll() is not None or answers(netns_fd=fd), what="the agent")
    finally:
        os.close(fd)
    if agent.poll() is not None:
        raise RuntimeError(f"the agent exited with {agent.returncode}; see {log_file}")
    return agent
