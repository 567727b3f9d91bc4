"""CHECK: is the attachment still what ADD reported in prevResult?

We verify what we own: the address reservations, the bridge with its
gateway addresses, the node end of the veth on that bridge, and in the pod
the interface (up, a veth, same MAC), its addresses and default routes.
Extra addresses or routes added later in a chain are not our business.
"""
from netplane.cni import result as res
from netplane.cni import wiring
from netplane.cni.config import Attachment, NetConf
from netplane.cni.errors import CHECK_MISMATCH, INVALID_CONFIG, CniError
from netplane.cni.invocation import Invocation
from netplane.cni.ipam import allocator
from netplane.cni.lifecycle import store_for
from netplane.netlink import messages as m
from netplane.netlink.messages import IFF_UP
from netplane.netlink.channel import ENODEV, Channel, NetlinkError


def expected(conf: NetConf) -> res.Result:
    """What ADD reported; validated before any namespace is opened."""
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs 'prevResult'", "pass the result of the ADD being checked")
    return res.decode(conf.prev_result)


def check(inv: Invocation, conf: NetConf, prev: res.Result, netns_fd: int) -> None:
    owner = Attachment(inv.container_id, inv.ifname)
    pod_if, ips = _ours(prev, inv)
    _check_reservations(conf, owner, ips)
    with Channel.open() as node:
        bridge = _link(node, conf.bridge, "bridge on the node")
        _expect(_kind(bridge) == "bridge", f"{conf.bridge} is not a bridge")
        host = _link(node, wiring.host_ifname(owner), "node end of the veth")
        _expect(host.get_attr("IFLA_MASTER") == bridge["index"], f"{host.get_attr('IFLA_IFNAME')} is not on {conf.bridge}")
        _expect_addresses(node, bridge["index"], {ip.gateway for ip in ips if ip.gateway}, conf.bridge, host_part=True)
    with Channel.open(netns_fd) as pod:
        link = _link(pod, inv.ifname, "pod interface")
        _expect(_kind(link) == "veth", f"{inv.ifname} in the pod is not a veth")
        _expect(link["flags"] & IFF_UP, f"{inv.ifname} in the pod is down")
        if pod_if.mac:
            _expect(link.get_attr("IFLA_ADDRESS") == pod_if.mac.lower(),
                    f"{inv.ifname} has MAC {link.get_attr('IFLA_ADDRESS')}, prevResult says {pod_if.mac}")
        _expect_addresses(pod, link["index"], {ip.address for ip in ips}, inv.ifname, host_part=False)
        for ip in ips:
            if ip.gateway:
                _expect_default_route(pod, link["index"], ip)


def _ours(prev: res.Result, inv: Invocation) -> tuple[res.Interface, list[res.IPConfig]]:
    for index, iface in enumerate(prev.interfaces):
        if iface.name == inv.ifname and iface.sandbox == inv.netns:
            return iface, [ip for ip in prev.ips if ip.interface in (index, None)]
    raise CniError(CHECK_MISMATCH, "prevResult does not describe this attachment",
                   f"no interface {inv.ifname!r} in sandbox {inv.netns!r}")


def _check_reservations(conf: NetConf, owner: Attachment, ips: list[res.IPConfig]) -> None:
    held = set(allocator.addresses_of(store_for(conf), owner))
    expected = {ip.address.split("/")[0] for ip in ips}
    _expect(held == expected, f"address reservations {sorted(held)} differ from prevResult {sorted(expected)}")


def _link(channel: Channel, name: str, what: str):
    req = m.get_link(name)
    try:
        channel.send(req)
    except NetlinkError as err:
        if err.errno == ENODEV:
            raise CniError(CHECK_MISMATCH, f"the {what} is missing", name) from None
        raise
    return m.decode_link(req.replies[0])


def _kind(link) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else ""


def _expect_addresses(channel: Channel, index: int, wanted: set[str], where: str, host_part: bool) -> None:
    present = set()
    for raw in channel.dump(m.dump_addresses()):
        addr = m.decode_address(raw)
        if addr["index"] == index:
            ip = addr.get_attr("IFA_ADDRESS")
            present.add(ip if host_part else f"{ip}/{addr['prefixlen']}")
    # result.decode normalised prevResult's addresses the way the kernel
    # prints them (IPv6 compressed), so plain strings compare.
    missing = sorted(wanted - present)
    _expect(not missing, f"{where} lacks address(es) {', '.join(missing)}")


def _expect_default_route(channel: Channel, index: int, ip: res.IPConfig) -> None:
    for raw in channel.dump(m.dump_routes(ip.version)):
        route = m.decode_route(raw)
        if (route["dst_len"] == 0 and route.get_attr("RTA_OIF") == index
                and route.get_attr("RTA_GATEWAY") == ip.gateway):
            return
    raise CniError(CHECK_MISMATCH, "a default route is missing in the pod", f"via {ip.gateway}")


def _expect(condition, message: str) -> None:
    if not condition:
        raise CniError(CHECK_MISMATCH, "CHECK found a difference", message)
