"""ADD and DEL: an attachment's life, from address to wired pod and back.

ADD validates everything it was given, takes addresses (the cheap step that
can fail on a full range), then wires the pod; if wiring or building the
result fails, the links are removed and the addresses go back, so a failed
ADD leaves nothing behind. DEL needs nothing but the attachment key: the
veth name is derived from it and IPAM is keyed by it, so DEL works with the
namespace gone, the record gone, or both, and twice in a row.
"""
import logging

from netplane import nodestate
from netplane.cni import result as res
from netplane.cni import wiring
from netplane.cni.config import Attachment, NetConf
from netplane.cni.invocation import Invocation
from netplane.cni.ipam import allocator
from netplane.cni.ipam.pool import Pool
from netplane.cni.ipam.store import DiskStore
from netplane.cni.reaper import ChildReaper, Reaper
from netplane.netlink.channel import Channel

log = logging.getLogger("netplane.cni")


def network(conf: NetConf) -> tuple[list[Pool], int]:
    """The pools and MTU for this node: from the config, else the agent's state file."""
    if conf.subnets:
        return [Pool(s) for s in conf.subnets], conf.mtu or wiring.DEFAULT_MTU
    state = nodestate.read(conf.state_file)
    return [Pool(s) for s in state.pod_cidrs], conf.mtu or state.mtu or wiring.DEFAULT_MTU


def store_for(conf: NetConf) -> DiskStore:
    return DiskStore(conf.data_dir, conf.name)


def add(inv: Invocation, conf: NetConf, netns_fd: int, prev: res.Result | None = None) -> dict:
    """Wire one attachment; `prev` is an earlier plugin's result in a chain."""
    owner = Attachment(inv.container_id, inv.ifname)
    pools, mtu = network(conf)
    store = store_for(conf)
    ips = allocator.allocate(store, owner, pools, conf.runtime_config.ips)
    # From here on, any failure, up to and including printing the result,
    # undoes the attachment: links first (attach removes its own), then the
    # addresses, which must not go back while a pod can still use them.
    try:
        plan = wiring.plan(conf, owner, pools, ips, mtu)
        with Channel.open() as node:
            bridge_mac = wiring.attach(plan, node, netns_fd)
            try:
                result = result_of(plan, inv.netns, bridge_mac)
                reply = res.encode(result.merged_after(prev) if prev else result, conf.cni_version)
            except BaseException:
                wiring.detach(plan.host_ifname, node)
                raise
    except BaseException:
        allocator.release(store, owner)
        raise
    log.info("ADD %s/%s: %s via %s", owner.container_id, owner.ifname, ", ".join(ips), plan.host_ifname)
    return reply


def result_of(plan: wiring.Plan, sandbox: str, bridge_mac: str) -> res.Result:
    pod = 2  # index of the pod interface below
    return res.Result(
        interfaces=(res.Interface(plan.bridge, bridge_mac),
                    res.Interface(plan.host_ifname, plan.host_mac),
                    res.Interface(plan.pod_ifname, plan.pod_mac, sandbox=sandbox, mtu=plan.mtu)),
        ips=tuple(res.IPConfig(a.cidr, gw.ip, pod) for a, gw in zip(plan.pod_addresses, plan.gateways, strict=True)),
        routes=tuple(res.Route("0.0.0.0/0" if gw.version == 4 else "::/0", gw.ip) for gw in plan.gateways),
    )


def delete(inv: Invocation, conf: NetConf, reaper: Reaper | ChildReaper | None = None,
           netns_fd: int | None = None) -> None:
    """Detach first, release second: an address must not be handed out
    while the old pod can still use it. With a reaper (the agent's, or the
    standalone plugin's child), the link
    is cut off and the pod's interface name freed at once, and the pair is
    deleted in the background; without, it is deleted now. Either way, when
    DEL returns the pod has no CNI_IFNAME from us."""
    owner = Attachment(inv.container_id, inv.ifname)
    host = wiring.host_ifname(owner)
    with Channel.open() as node:
        if reaper:
            reaper.retire(node, host)
            if netns_fd is not None:  # without the namespace there is no pod end to free
                wiring.free_pod_ifname(host, node, netns_fd, inv.ifname)
        else:
            wiring.detach(host, node)
    released = allocator.release(store_for(conf), owner)
    log.info("DEL %s/%s: released %s", owner.container_id, owner.ifname, ", ".join(released) or "nothing")
