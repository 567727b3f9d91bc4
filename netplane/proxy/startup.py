"""What the proxy says when it starts: one summary of its settings, and
the warnings an operator needs before traffic quietly goes missing.

Each is a Notice (a level, a message and fields), built by a pure function
from the config and a few facts, so tests read them without a logger; the
daemon emits them (Notice.emit) as structured log records (logs.py):
- summary(): mode, node, node IPs, families, CIDRs, node-port addresses,
  the iptables backend, the compiled fast path, servers, source, periods;
- cluster_cidr_warning(): no cluster CIDR for a family (kube-proxy's
  "clusterCIDR not specified, unable to distinguish between internal and
  external traffic"), with what it costs in this mode;
- bridge_warnings(): br_netfilter off, read from /proc/sys/net/bridge in the
  proxy's own network namespace (it is per namespace);
- node_name_warning(): after the first full sync, endpoints name nodes but
  never this one (a wrong --hostname-override).
"""
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from netplane import fastpath
from netplane.observe_http import where
from netplane.proxy import modes
from netplane.proxy.config import Checked, ProxyConfig, options_of
from netplane.proxy.settings import Settings
from netplane.proxy.state import PortState

log = logging.getLogger("netplane.proxy")

FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}
# the compiled modules (fastpath.PURE) each mode's sync runs through, from
# where the modes call fastpath.load(); the ipvs mode renders nftables text
MODE_EXTENSIONS = {
    "iptables": ("iptables_rules", "iptables_text"),
    "nftables": ("nftables_text",),
    "ipvs": ("nftables_text",),
    "ebpf": ("ebpf_entries", "maglev"),
}
BRIDGE_SYSCTLS = {4: "bridge-nf-call-iptables", 6: "bridge-nf-call-ip6tables"}
SHOWN_NODES = 5             # endpoint node names quoted in the node-name warning


@dataclass(frozen=True)
class Notice:
    level: int
    msg: str
    fields: dict = field(default_factory=dict)

    def emit(self, logger: logging.Logger = log) -> None:
        logger.log(self.level, self.msg, extra=self.fields)


# -- the summary ---------------------------------------------------------------------------

def summary(cfg: ProxyConfig, checked: Checked, settings: Settings, iptables_backend: str | None = None,
            fast_path: str | None = None) -> Notice:
    """One info record of everything the proxy runs with. `iptables_backend`
    ("nft" or "legacy"; None outside the iptables mode) is detected
    elsewhere; `fast_path` defaults to fast_path_in_use(cfg.mode)."""
    fields = {
        "mode": cfg.mode,
        "node_name": settings.node.name,
        "node_ips": [str(ip) for ip in settings.node_ips],
        "families": [FAMILY_NAMES[f] for f in settings.families],
        "cluster_cidrs": [str(c) for c in settings.cluster_cidrs],
        "service_cidrs": [str(c) for c in settings.service_cidrs],
        # kube-proxy's default: node ports answer on every local address
        "nodeport_addresses": [str(n) for n in settings.nodeport_addresses] or "all",
        **({"zone": settings.node.zone} if settings.node.zone else {}),
        "masquerade_all": settings.masquerade_all,
        **({"iptables_backend": iptables_backend} if iptables_backend is not None else {}),
        "fast_path": fast_path if fast_path is not None else fast_path_in_use(cfg.mode),
        "healthz": _address(checked.healthz),
        "metrics": _address(checked.metrics),
        **source_of(cfg),
        "sync_period_s": cfg.sync_period,
        "min_sync_period_s": cfg.min_sync_period,
        "full_sync_period_s": cfg.full_sync_period,
    }
    return Notice(logging.INFO, "proxy starting", fields)


def fast_path_in_use(mode: str) -> str:
    """"compiled", "pure (...)" or "partly compiled: ...": whether the mode's
    sync runs through the Cython builds of its modules (fastpath.py)."""
    names = MODE_EXTENSIONS.get(mode, ())
    if not names:
        return "none (no compiled part in this mode)"
    if fastpath.extensions_disabled():
        return "pure (NETPLANE_NO_EXTENSIONS=1)"
    compiled = [n for n in names if fastpath.is_compiled(fastpath.load(n))]
    if len(compiled) == len(names):
        return "compiled"
    if not compiled:
        return "pure (extensions not built)"
    return "partly compiled: " + ", ".join(compiled)


def source_of(cfg: ProxyConfig) -> dict:
    if cfg.manifests is not None:
        kind = "manifests directory" if os.path.isdir(cfg.manifests) else "manifests file"
        return {"source": kind, "source_path": cfg.manifests}
    if cfg.in_cluster:
        return {"source": "in-cluster"}
    if cfg.kubeconfig:
        return {"source": "kubeconfig", "source_path": cfg.kubeconfig}
    return {"source": "none"}


def _address(address: tuple[str, int] | None) -> str:
    return "off" if address is None else where(address)


# -- the warnings ---------------------------------------------------------------------------

def warnings(cfg: ProxyConfig, settings: Settings, proc_root: str = "/proc/sys") -> list[Notice]:
    """The warnings known at start (the node-name one waits for endpoints)."""
    found = [cluster_cidr_warning(cfg, settings)] + bridge_warnings(cfg.mode, settings.families, proc_root)
    return [w for w in found if w is not None]


def cluster_cidr_warning(cfg: ProxyConfig, settings: Settings) -> Notice | None:
    missing = [FAMILY_NAMES[f] for f in settings.families if settings.cluster_cidr(f) is None]
    if not missing:
        return None
    fields = {"mode": cfg.mode, "families": missing}
    if not modes.get(cfg.mode).translates_at_connect:
        if settings.masquerade_all:
            return None         # everything to a cluster IP is masqueraded anyway: nothing to tell apart
        return Notice(logging.WARNING, "clusterCIDR not specified, unable to distinguish between internal and "
                      "external traffic: traffic to cluster IPs from outside the pod network (this node's own "
                      "processes, other hosts) is not masqueraded, so an endpoint on another node answers it "
                      "directly and the connection fails; set --cluster-cidr (clusterCIDR) to the pod network, "
                      "one CIDR per family, or --masquerade-all", fields)
    # the ebpf mode NATs no socket on the node; it uses the cluster CIDR to
    # find the overlay devices its tc programs must sit on (ebpf/devices.py)
    if cfg.mode == "ebpf" and options_of(cfg, "ebpf").devices.strip():
        return None
    return Notice(logging.WARNING, "clusterCIDR not specified: the ebpf mode cannot find the overlay devices "
                  "(routes into the pod network), so node-port and external traffic sent to an endpoint on "
                  "another node is not SNATed there and its replies bypass this node; set --cluster-cidr "
                  "(clusterCIDR), or name the devices with ebpf.devices", fields)


def bridge_warnings(mode: str, families, proc_root: str = "/proc/sys") -> list[Notice]:
    """br_netfilter off in this network namespace, for the modes that need it.

    A pod reaching a Service whose endpoint is a pod on the same bridge:
    the request is routed (netfilter sees it, and DNATs it), but the reply
    crosses the bridge between the two pods and, without br_netfilter,
    never meets conntrack, so it is not translated back and the client
    drops it. The iptables, nftables and ipvs modes all DNAT in netfilter.
    The ebpf mode is not affected: it translates at connect() in the
    pod's socket, so no reply needs translating (its tc programs see only
    traffic from other machines)."""
    if modes.get(mode).translates_at_connect:
        return []
    bridge = os.path.join(proc_root, "net", "bridge")
    consequence = (f"pods on the same bridge cannot reach each other through Services: the replies cross the "
                   f"bridge without passing netfilter, so the {mode} mode's NAT is never undone")
    if not os.path.isdir(bridge):
        return [Notice(logging.WARNING, f"br_netfilter is not loaded: {consequence}; run `modprobe br_netfilter` "
                       f"on the host (and load it at boot)", {"mode": mode, "proc": bridge})]
    notices = []
    for family in families:
        sysctl = BRIDGE_SYSCTLS[family]
        if _read_flag(os.path.join(bridge, sysctl)) == 0:
            notices.append(Notice(logging.WARNING, f"net.bridge.{sysctl} is 0 in the proxy's network namespace: "
                                  f"{consequence}; set it to 1 there", {"mode": mode, "family": FAMILY_NAMES[family],
                                                                        "sysctl": f"net.bridge.{sysctl}"}))
    return notices


def _read_flag(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None             # unreadable: say nothing rather than guess


def node_name_warning(ports: Mapping[object, PortState], node_name: str) -> Notice | None:
    """Endpoints name their nodes, and none is this one: the node name is
    likely wrong. Call after the first full sync, with the tracker's ports."""
    nodes = {e.node for state in ports.values() for e in state.endpoints if e.node}
    if not nodes or node_name in nodes:
        return None
    shown = sorted(nodes)[:SHOWN_NODES]
    return Notice(logging.WARNING, f"no endpoint is on node {node_name!r}, though endpoints name {len(nodes)} "
                  "node(s): if pods run here, this node's name is wrong (--hostname-override or --node-name must "
                  "be the Node object's name), and Services with a Local traffic policy drop all their traffic "
                  "on this node", {"node_name": node_name, "endpoint_nodes": shown, "endpoint_node_count": len(nodes)})
