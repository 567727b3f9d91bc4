"""`netplane agent`: one process per node, one module per job.

- the CNI fast path (netplane/cni/server.py), always;
- the pod network across nodes (netplane/podnet/controller.py), when the
  agent has a node source (a nodes file or the Kubernetes API);
- /healthz, /livez and /metrics (netplane/agent/observe.py), unless turned off.
All run as threads until SIGTERM or SIGINT. Stopping the agent leaves the
kernel state in place, so pods keep their connectivity while it restarts.
"""
import functools
import logging
import signal
import threading

from netplane import nodestate
from netplane.agent.observe import Observer
from netplane.cni import plugin
from netplane.cni.reaper import Reaper
from netplane.cni.server import CniServer, answers, display, parse_address

log = logging.getLogger("netplane.agent")


def publish_node_state(path: str, node_name: str, pod_cidrs, mtu: int | None) -> None:
    nodestate.write(path, nodestate.NodeState(node_name, tuple(pod_cidrs), mtu))
    log.info("node state written to %s: %s", path, ", ".join(map(str, pod_cidrs)))


def run(cni_socket: str, deferred_teardown: bool = True, network=None,
        healthz: tuple[str, int] | None = None, metrics: tuple[str, int] | None = None) -> int:
    """Serve until a signal. `network` is a podnet Controller (or None);
    `healthz` and `metrics` are (host, port) to serve them on (None: off)."""
    observer = Observer(network)
    # bound first: a taken port stops the agent before it touches the kernel
    observe_servers = observer.serve(healthz, metrics)
    try:
        return _serve(cni_socket, deferred_teardown, network, observer)
    finally:
        for observed in observe_servers:
            observed.stop()


def _serve(cni_socket: str, deferred_teardown: bool, network, observer: Observer) -> int:
    reaper = Reaper().start() if deferred_teardown else None
    handler = functools.partial(plugin.run, reaper=reaper, client_opens_netns=True)
    server = CniServer(parse_address(cni_socket), handler=observer.counted(handler))
    serving = threading.Event()
    # healthy while the loop runs and the socket takes connections (a path socket can be deleted under us)
    observer.health.cni_serving = lambda: serving.is_set() and answers(server.address)
    network_thread = _start_network(network)

    def on_signal(signum, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return, so not from its thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("serving the CNI fast path on %s", display(server.address))
    try:
        serving.set()
        server.serve_forever(poll_interval=0.5)
    finally:
        serving.clear()
        server.server_close()
        if reaper:
            reaper.stop()
        _stop_network(network, network_thread)
    log.info("stopped")
    return 0


def _start_network(network) -> threading.Thread | None:
    if network is None:
        return None
    network.source.start()
    thread = threading.Thread(target=network.run, name="pod-network", daemon=True)
    thread.start()
    log.info("pod network: %s mode, node %s", network.settings.mode, network.node_name)
    return thread


def _stop_network(network, thread: threading.Thread | None) -> None:
    if network is None:
        return
    network.stop()
    network.source.stop()
    thread.join(timeout=10)
