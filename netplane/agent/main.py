"""`netplane agent`: run the node agent until SIGTERM or SIGINT."""
import functools
import logging
import signal
import threading

from netplane import nodestate
from netplane.cni import plugin
from netplane.cni.reaper import Reaper
from netplane.cni.server import CniServer, display, parse_address

log = logging.getLogger("netplane.agent")


def publish_node_state(path: str, node_name: str, pod_cidrs, mtu: int | None) -> None:
    nodestate.write(path, nodestate.NodeState(node_name, tuple(pod_cidrs), mtu))
    log.info("node state written to %s: %s", path, ", ".join(map(str, pod_cidrs)))


def run(cni_socket: str, deferred_teardown: bool = True) -> int:
    reaper = Reaper().start() if deferred_teardown else None
    server = CniServer(parse_address(cni_socket), handler=functools.partial(plugin.run, reaper=reaper))
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()
        # shutdown() waits for serve_forever() to return, so not from its thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("serving the CNI fast path on %s", display(server.address))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        if reaper:
            reaper.stop()
    log.info("stopped")
    return 0
