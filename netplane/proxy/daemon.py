"""`netplane proxy`: the node daemon, and the one-shot jobs beside it
(--once and --cleanup; `netplane compile` is dry_run.py).

The daemon runs the Proxier's sync loop on the main thread, the source on
its own thread, and serves /healthz and /livez (default 0.0.0.0:10256) and
/metrics (default 127.0.0.1:10249). SIGTERM or SIGINT stops it; the rules
stay in the kernel, so services keep working while it restarts (as with
kube-proxy); `--cleanup` removes them.
"""
import logging
import signal
import socket
import time

from netplane.errors import OperatorError
from netplane.proxy.config import Checked, ProxyConfig, options_of
from netplane.proxy.dataplane import Dataplane, dataplane
from netplane.proxy.health import HealthServer, HealthState
from netplane.proxy.metrics import ProxyMetrics
from netplane.proxy.policy import Node
from netplane.proxy.proxier import Proxier
from netplane.proxy.service_health import HealthChecks
from netplane.proxy.settings import Settings
from netplane.proxy.syncloop import Schedule

log = logging.getLogger("netplane.proxy")


def settings(cfg: ProxyConfig, checked: Checked) -> Settings:
    return Settings(Node(cfg.node_name or socket.gethostname().lower(), cfg.zone), checked.node_ips,
                    checked.cluster_cidrs, checked.nodeport_addresses, cfg.masquerade_all, cfg.masquerade_bit,
                    checked.service_cidrs)


def make_dataplane(cfg: ProxyConfig, checked: Checked, **kwargs) -> Dataplane:
    return dataplane(cfg.mode, settings(cfg, checked), options_of(cfg, cfg.mode), all_options=cfg.mode_options,
                     **kwargs)


def source(cfg: ProxyConfig):
    from netplane.proxy.sources import KubeSource, ManifestSource

    if cfg.manifests is not None:
        return ManifestSource(cfg.manifests)
    from netplane.kube import client

    return KubeSource(client.api_client(None if cfg.in_cluster else cfg.kubeconfig))


def run(cfg: ProxyConfig, checked: Checked, once: bool = False, wait_timeout: float = 30.0) -> int:
    schedule = Schedule(min_interval=cfg.min_sync_period, sync_interval=cfg.sync_period,
                        full_interval=cfg.full_sync_period)
    dataplane = make_dataplane(cfg, checked)
    health = HealthState(timeout=2 * cfg.sync_period)
    checks = None if once else HealthChecks(dataplane.settings.node.name, health.healthy)
    proxier = Proxier(source(cfg), dataplane, ProxyMetrics(), health, schedule, checks)
    proxier.hold_gc()
    proxier.source.start()
    try:
        if once:
            return _once(proxier, wait_timeout)
        return _serve(proxier, checked)
    finally:
        proxier.source.stop()


def _once(proxier: Proxier, wait_timeout: float) -> int:
    deadline = time.monotonic() + wait_timeout
    while not proxier.source.ready:
        if time.monotonic() > deadline:
            log.error("the source did not load within %.0f s: %s", wait_timeout, proxier.source.errors)
            return 1
        time.sleep(0.1)
    try:
        proxier.sync(full=True)
    except Exception as err:                 # one line, not a traceback: --once is for scripts
        log.error("sync failed: %s", err)
        return 1
    return 0


def _listening(path: str, address: tuple[str, int], start):
    """Start a server before the first sync touches the kernel; a taken
    port (kube-proxy still running, during a migration) is one line."""
    try:
        return start()
    except OSError as exc:
        flag = "--healthz-bind-address" if path == "/healthz" else "--metrics-bind-address"
        raise OperatorError(f"cannot serve {path} on {address[0]}:{address[1]}: {exc.strerror} (is kube-proxy "
                            f"still running on this node? stop it first, or move us with {flag})") from None


def _serve(proxier: Proxier, checked: Checked) -> int:
    servers = []
    if checked.healthz:
        servers.append(_listening("/healthz", checked.healthz,
                                  lambda: HealthServer(checked.healthz, proxier.health).start()))
        log.info("serving /healthz and /livez on %s:%d", *checked.healthz)
    if checked.metrics:
        servers.append(_listening("/metrics", checked.metrics, lambda: proxier.metrics.serve(*checked.metrics)))
        log.info("serving /metrics on %s:%d", *checked.metrics)

    def on_signal(signum, _frame) -> None:
        log.info("received %s, stopping (the rules stay in place)", signal.Signals(signum).name)
        proxier.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("proxy running: mode %s, node %s", proxier.dataplane.mode.name, proxier.dataplane.settings.node.name)
    try:
        proxier.run()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    return 0


def cleanup(cfg: ProxyConfig, checked: Checked) -> list[str]:
    """Remove what every mode installed, the configured one first (as
    kube-proxy's --cleanup does: a node may have run another mode before)."""
    plane = make_dataplane(cfg, checked, sweep=False)
    return plane.cleanup() + plane.sweep_other_modes(kept_too=True)
