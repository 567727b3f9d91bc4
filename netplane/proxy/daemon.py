"""`netplane proxy`: the node daemon, and the one-shot jobs beside it
(--once and --cleanup; `netplane compile` is dry_run.py).

The daemon binds its ports first (/healthz and /livez, default
0.0.0.0:10256; /metrics and /proxyMode, default 127.0.0.1:10249), then
writes kube-proxy's conntrack settings, reads its Node (zone, eligibility),
and runs the Proxier's sync loop on the main thread, the source and the
Node watch on their own threads. SIGTERM or SIGINT stops it; the rules
stay in the kernel, so services keep working while it restarts (as with
kube-proxy); `--cleanup` removes them.
"""
import logging
import signal
import socket
import time

from netplane.observe_http import where
from netplane.proxy import conntrack_settings, startup
from netplane.proxy.config import Checked, ProxyConfig, options_of
from netplane.proxy.dataplane import Dataplane, dataplane
from netplane.proxy.health import HealthState
from netplane.proxy.health import serve as serve_health
from netplane.proxy.metrics import ProxyMetrics
from netplane.proxy.nodes import NodeWatch
from netplane.proxy.policy import Node
from netplane.proxy.proxier import Proxier
from netplane.proxy.service_health import HealthChecks
from netplane.proxy.settings import Settings
from netplane.proxy.syncloop import Schedule

log = logging.getLogger("netplane.proxy")


NODE_WAIT = 5.0           # s the first sync waits for this node's Node object (its zone)


def node_name(cfg: ProxyConfig) -> str:
    return cfg.node_name or socket.gethostname().lower()


def settings(cfg: ProxyConfig, checked: Checked, zone: str | None = None) -> Settings:
    """The node's settings; `zone` is the Node's topology label (else --zone)."""
    return Settings(Node(node_name(cfg), cfg.zone if zone is None else zone), checked.node_ips,
                    checked.cluster_cidrs, checked.nodeport_addresses, cfg.masquerade_all, cfg.masquerade_bit,
                    checked.service_cidrs)


def make_dataplane(cfg: ProxyConfig, checked: Checked, zone: str | None = None, **kwargs) -> Dataplane:
    return dataplane(cfg.mode, settings(cfg, checked, zone), options_of(cfg, cfg.mode),
                     all_options=cfg.mode_options, **kwargs)


def api_of(cfg: ProxyConfig):
    """The API server's client, when the source is the API server."""
    if cfg.manifests is not None:
        return None
    from netplane.kube import client

    return client.api_client(None if cfg.in_cluster else cfg.kubeconfig)


def source(cfg: ProxyConfig, api=None):
    from netplane.proxy.sources import KubeSource, ManifestSource

    if cfg.manifests is not None:
        return ManifestSource(cfg.manifests)
    return KubeSource(api or api_of(cfg))


def run(cfg: ProxyConfig, checked: Checked, once: bool = False, wait_timeout: float = 30.0) -> int:
    """The daemon (or one sync, `once`). Its ports are bound before anything
    touches the kernel: a port kube-proxy still holds stops the start there."""
    schedule = Schedule(min_interval=cfg.min_sync_period, sync_interval=cfg.sync_period,
                        full_interval=cfg.full_sync_period)
    health, metrics = HealthState(timeout=2 * cfg.sync_period), ProxyMetrics()
    api = api_of(cfg)
    node = NodeWatch.from_config(cfg, node_name(cfg), api=api).start()
    servers = []
    try:
        servers = [] if once else _listen(cfg, checked, health, metrics, node)
        conntrack_settings.apply(cfg.conntrack)       # before the first rule, as kube-proxy does
        _wait_for(node)
        dataplane = make_dataplane(cfg, checked, zone=node.zone())
        _announce(cfg, checked, dataplane)
        checks = None if once else HealthChecks(dataplane.settings.node.name, health.healthy)
        proxier = Proxier(source(cfg, api), dataplane, metrics, health, schedule, checks)
        node.on_change(proxier.set_zone)
        proxier.set_zone(node.zone())                 # had the label moved since the dataplane was made
        proxier.hold_gc()
        proxier.source.start()
        try:
            return _once(proxier, wait_timeout) if once else _serve(proxier)
        finally:
            proxier.source.stop()
    finally:
        node.stop()
        for server in servers:
            server.stop()


def _wait_for(node: NodeWatch) -> None:
    """This node's Node object, from the same source as the Services: its
    zone label (topology hints) should be known to the first sync."""
    if not node.wait(NODE_WAIT):
        log.warning("node %s not read yet; zone %r until it is", node.name, node.zone(),
                    extra={"node": node.name, "errors": node.errors})


def _listen(cfg: ProxyConfig, checked: Checked, health: HealthState, metrics: ProxyMetrics,
            node: NodeWatch) -> list:
    """/healthz and /livez (503 while the Node is being deleted), /metrics
    and /proxyMode; a taken port is one line naming the flag and kube-proxy."""
    servers = []
    if checked.healthz:
        servers.append(serve_health(checked.healthz, health, node_eligible=node.eligible, metrics=metrics))
        log.info("serving /healthz and /livez", extra={"address": where(checked.healthz)})
    if checked.metrics:
        servers.append(metrics.serve(*checked.metrics, mode=cfg.mode))
        log.info("serving /metrics and /proxyMode", extra={"address": where(checked.metrics)})
    return servers


def _announce(cfg: ProxyConfig, checked: Checked, plane: Dataplane) -> None:
    """The startup summary (what the proxy runs with, in fields), then what
    an operator should know before the first sync: a missing --cluster-cidr,
    br_netfilter off."""
    startup.summary(cfg, checked, plane.settings, iptables_backend=_iptables_backend(cfg)).emit(log)
    for notice in startup.warnings(cfg, plane.settings):
        notice.emit(log)


def _iptables_backend(cfg: ProxyConfig) -> str | None:
    """The iptables backend (detected once per process, logged with its
    reason), for the modes that write iptables rules."""
    if cfg.mode != "iptables":
        return None
    from netplane.proxy.iptables import backend

    return backend.resolve(options_of(cfg, cfg.mode).backend)


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


def _serve(proxier: Proxier) -> int:
    def on_signal(signum, _frame) -> None:
        log.info("received %s, stopping (the rules stay in place)", signal.Signals(signum).name)
        proxier.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("proxy running", extra={"mode": proxier.dataplane.mode.name, "node": proxier.dataplane.settings.node.name})
    proxier.run()
    return 0


def cleanup(cfg: ProxyConfig, checked: Checked) -> list[str]:
    """Remove what every mode installed, the configured one first (as
    kube-proxy's --cleanup does: a node may have run another mode before)."""
    plane = make_dataplane(cfg, checked, sweep=False)
    return plane.cleanup() + plane.sweep_other_modes(kept_too=True)
