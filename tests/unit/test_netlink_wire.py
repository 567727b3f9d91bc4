"""The hot-path encoder must produce exactly what pyroute2 would send."""
import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netplane.netlink import messages as m
from netplane.netlink.channel import HEADER


def pyroute2_body(msg_class, fields: dict, attrs: list) -> bytes:
    msg = msg_class()
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)[16:]  # drop the netlink header; the channel adds its own


def linkinfo(*attrs):
    return ("IFLA_LINKINFO", {"attrs": list(attrs)})


CASES = {
    "get_link": (m.get_link("np0"), ifinfmsg, {}, [("IFLA_IFNAME", "np0")]),
    "new_bridge": (m.new_bridge("np0", "0a:58:0a:00:00:01", 1450), ifinfmsg,
                   {"flags": IFF_UP, "change": IFF_UP},
                   [("IFLA_IFNAME", "np0"), ("IFLA_ADDRESS", "0a:58:0a:00:00:01"), ("IFLA_MTU", 1450),
                    linkinfo(("IFLA_INFO_KIND", "bridge"))]),
    "set_up": (m.set_up("eth0"), ifinfmsg, {"flags": IFF_UP, "change": IFF_UP}, [("IFLA_IFNAME", "eth0")]),
    "new_veth": (m.new_veth("np1234567890abc", "02:00:00:00:00:01", 5, 1500, "eth0", "0a:58:0a:00:00:02", 7),
                 ifinfmsg, {"flags": IFF_UP, "change": IFF_UP},
                 [("IFLA_IFNAME", "np1234567890abc"), ("IFLA_ADDRESS", "02:00:00:00:00:01"), ("IFLA_MTU", 1500),
                  ("IFLA_MASTER", 5),
                  linkinfo(("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": [
                      ("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 7), ("IFLA_MTU", 1500),
                      ("IFLA_ADDRESS", "0a:58:0a:00:00:02")]})]}))]),
    "set_hairpin": (m.set_hairpin("np1"), ifinfmsg, {},
                    [("IFLA_IFNAME", "np1"), linkinfo(("IFLA_INFO_SLAVE_KIND", "bridge"),
                                                      ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]}))]),
    "retire_link": (m.retire_link("np1"), ifinfmsg, {"flags": 0, "change": IFF_UP},
                    [("IFLA_IFNAME", "np1"), ("IFLA_GROUP", m.REAP_GROUP)]),
    "del_link": (m.del_link("np1"), ifinfmsg, {}, [("IFLA_IFNAME", "np1")]),
    "del_group": (m.del_group(m.REAP_GROUP), ifinfmsg, {}, [("IFLA_GROUP", m.REAP_GROUP)]),
    "new_address_v4": (m.new_address(3, "10.0.0.2", 24, 4), ifaddrmsg,
                       {"family": 2, "prefixlen": 24, "index": 3},
                       [("IFA_ADDRESS", "10.0.0.2"), ("IFA_LOCAL", "10.0.0.2")]),
    "new_address_v6": (m.new_address(3, "fd00::2", 64, 6), ifaddrmsg,
                       {"family": 10, "prefixlen": 64, "index": 3, "flags": 0x02},
                       [("IFA_ADDRESS", "fd00::2"), ("IFA_LOCAL", "fd00::2")]),
    "default_route_v4": (m.new_default_route(3, "10.0.0.1", 4), rtmsg,
                         {"family": 2, "table": 254, "proto": 3, "type": 1},
                         [("RTA_GATEWAY", "10.0.0.1"), ("RTA_OIF", 3)]),
    "default_route_v6": (m.new_default_route(3, "fd00::1", 6), rtmsg,
                         {"family": 10, "table": 254, "proto": 3, "type": 1},
                         [("RTA_GATEWAY", "fd00::1"), ("RTA_OIF", 3)]),
    "dump_addresses": (m.dump_addresses(), ifaddrmsg, {}, []),
    "dump_routes_v6": (m.dump_routes(6), rtmsg, {"family": 10}, []),
}


@pytest.mark.parametrize("name", CASES)
def test_builder_matches_pyroute2_byte_for_byte(name):
    request, msg_class, fields, attrs = CASES[name]
    assert request.body == pyroute2_body(msg_class, fields, attrs)


def framed(request) -> bytes:
    return HEADER.pack(HEADER.size + len(request.body), request.type, 0, 0, 0) + request.body


def test_decoders_read_what_the_builders_wrote():
    raw = framed(m.new_bridge("np0", "0a:58:0a:00:00:01", 1450))
    link = m.decode_link(raw)
    assert link.get_attr("IFLA_IFNAME") == "np0" and link.get_attr("IFLA_MTU") == 1450
    assert m.link_mac(raw) == "0a:58:0a:00:00:01" and m.link_index(raw) == 0
    route = m.decode_route(framed(m.new_default_route(9, "fd00::1", 6)))
    assert route.get_attr("RTA_GATEWAY") == "fd00::1" and route.get_attr("RTA_OIF") == 9


def test_link_kind_and_peer_index_from_a_raw_link_message():
    from netplane.netlink import wire as w
    header = b"\0" * 16  # nlmsghdr: the readers skip it
    veth = (header + w.ifinfomsg(index=7) + w.nest(w.IFLA_LINKINFO, w.string(w.IFLA_INFO_KIND, "veth"))
            + w.u32(w.IFLA_LINK, 12))
    assert (m.link_kind(veth), m.link_index(veth), m.link_peer_index(veth)) == ("veth", 7, 12)
    # Kernels before 5.12 omit IFLA_LINK when the peer's index equals the link's own.
    bare = header + w.ifinfomsg(index=9)
    assert (m.link_kind(bare), m.link_peer_index(bare)) == ("", 9)
