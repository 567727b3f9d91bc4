"""Wire a pod to the node: bridge, veth pair, addresses and routes.

plan() is pure: from the config and the allocated addresses it derives every
name, MAC and address the kernel will be given. attach() applies a plan in
four netlink batches (two on the node, two in the pod); detach() undoes it
with one. Names and MACs are derived, never random, so DEL, GC and CHECK
can find everything again from the attachment key alone.
"""
import hashlib
from dataclasses import dataclass

import ipaddress

from netplane import fastpath
from netplane.cni.config import Attachment, NetConf
from netplane.cni.ipam.pool import Pool
from netplane.forwarding import ensure_forwarding, skip_link_local_dad
from netplane.netlink import messages as m
from netplane.netlink.channel import Channel

DEFAULT_MTU = 1500
RETIRED_PREFIX = "npdel"  # a DELed pod end awaiting deletion: npdel<ifindex>, at most 15 bytes


@dataclass(frozen=True)
class Address:
    ip: str
    prefixlen: int
    version: int

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


@dataclass(frozen=True)
class Plan:
    bridge: str
    bridge_mac: str
    host_ifname: str
    host_mac: str
    pod_ifname: str
    pod_mac: str
    mtu: int
    pod_addresses: tuple[Address, ...]
    gateways: tuple[Address, ...]   # the bridge's addresses, one per family


def host_ifname(owner: Attachment) -> str:
    naming = fastpath.load("naming")
    return naming.hashed_name("np", f"{owner.container_id}:{owner.ifname}", 15)


def mac_from_ipv4(ip: ipaddress.IPv4Address) -> str:
    """0a:58 + the IPv4 address, as kubenet and OVN-Kubernetes do: a reused
    address comes back with the same MAC, so neighbours' ARP caches stay right."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)


def mac_from_key(key: str) -> str:
    digest = bytearray(hashlib.sha256(key.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in digest)


def plan(conf: NetConf, owner: Attachment, pools: list[Pool], pod_ips: list[str], mtu: int) -> Plan:
    addresses = tuple(Address(ip, pool.subnet.prefixlen, pool.version) for ip, pool in zip(pod_ips, pools, strict=True))
    gateways = tuple(Address(str(pool.gateway), pool.subnet.prefixlen, pool.version) for pool in pools)
    host = host_ifname(owner)
    return Plan(
        bridge=conf.bridge, bridge_mac=mac_from_ipv4(pools[0].gateway),
        host_ifname=host, host_mac=mac_from_key(host),
        # A MAC the runtime asked for (runtimeConfig.mac) wins over the derived one.
        pod_ifname=owner.ifname, pod_mac=conf.runtime_config.mac or mac_from_ipv4(ipaddress.IPv4Address(pod_ips[0])),
        mtu=mtu, pod_addresses=addresses, gateways=gateways,
    )


def attach(p: Plan, node: Channel, pod_netns_fd: int) -> str:
    """Apply a plan; returns the bridge's MAC.

    On any failure from the veth batch on, the pair is deleted (taking the
    pod end with it) before the error propagates: the kernel runs every
    message of a batch even after one fails, so the veth may exist although
    the gateway address or hairpin before or after it failed. The shared
    bridge stays.
    """
    bridge_index, bridge_mac = _ensure_bridge(p, node)
    try:
        node.send(
            *[m.new_address(bridge_index, gw.ip, gw.prefixlen, gw.version, exist_ok=True,
                            what=f"add gateway {gw.cidr} to {p.bridge}") for gw in p.gateways],
            m.del_link(p.host_ifname),  # a leftover from a crash; IPAM says nothing live owns it
            m.new_veth(p.host_ifname, p.host_mac, bridge_index, p.mtu, p.pod_ifname, p.pod_mac, pod_netns_fd),
            m.set_hairpin(p.host_ifname),
        )
        _configure_pod(p, pod_netns_fd)
    except BaseException:
        detach(p.host_ifname, node)
        raise
    return bridge_mac


def detach(host: str, node: Channel) -> None:
    """Delete the node end of the pair; the kernel deletes the pod end with it."""
    node.send(m.del_link(host))


def free_pod_ifname(host: str, node: Channel, pod_netns_fd: int, pod_ifname: str) -> None:
    """Give the pod's interface name back at once, before the pair is deleted.

    Deleting the pair waits out RCU grace periods (see reaper.py), so the
    agent defers it; but the pod's CNI_IFNAME must be free when DEL
    returns, or the next plugin's ADD of it fails with "already exists".
    Renaming the pod end (down first: Linux does not rename a link that is
    up) costs no such wait. Only our own pod end is touched: the link
    named CNI_IFNAME and our node end must each be the other's veth peer.
    """
    node_lookup = m.get_link(host, missing_ok=True)
    node.send(node_lookup)
    if not node_lookup.replies:
        return  # no pair left, so no pod end either
    host_raw = node_lookup.replies[0]
    with Channel.open(pod_netns_fd) as pod:
        pod_lookup = m.get_link(pod_ifname, missing_ok=True)
        pod.send(pod_lookup)
        if not pod_lookup.replies:
            return
        pod_raw = pod_lookup.replies[0]
        index = m.link_index(pod_raw)
        ours = (m.link_kind(pod_raw) == "veth" and m.link_peer_index(pod_raw) == m.link_index(host_raw)
                and m.link_peer_index(host_raw) == index)
        if not ours:
            return  # another plugin's interface by now: not ours to touch
        # The index is unique in the namespace, so the retired name is too.
        pod.send(m.set_down_index(index), m.rename_index(index, f"{RETIRED_PREFIX}{index}"))


def _ensure_bridge(p: Plan, node: Channel) -> tuple[int, str]:
    """Create the bridge if it is missing; its index and actual MAC either way."""
    ensure_forwarding({a.version for a in p.gateways})
    lookup = m.get_link(p.bridge)
    node.send(m.new_bridge(p.bridge, p.bridge_mac, p.mtu), m.set_up(p.bridge), lookup)
    if any(a.version == 6 for a in p.gateways):
        skip_link_local_dad(p.bridge)    # before a port gives it carrier; see there
    return m.link_index(lookup.replies[0]), m.link_mac(lookup.replies[0])


def _configure_pod(p: Plan, netns_fd: int) -> None:
    with Channel.open(netns_fd) as pod:
        lookup = m.get_link(p.pod_ifname)
        pod.send(lookup)
        index = m.link_index(lookup.replies[0])
        pod.send(
            m.set_up(p.pod_ifname),
            *[m.new_address(index, a.ip, a.prefixlen, a.version) for a in p.pod_addresses],
            *[m.new_default_route(index, gw.ip, gw.version) for gw in p.gateways],
        )
