import netaddr

from netplane.cni import config, wiring
from netplane.cni.config import Attachment
from netplane.cni.ipam.pool import Pool

CONF = config.parse({"cniVersion": "1.0.0", "name": "n", "type": "netplane",
                     "subnet": ["10.244.1.0/24", "fd00:1::/64"]})
POOLS = [Pool(s) for s in CONF.subnets]


def test_plan_derives_every_name_and_address():
    p = wiring.plan(CONF, Attachment("abc", "eth0"), POOLS, ["10.244.1.7", "fd00:1::7"], 1450)
    assert p.bridge == "np0" and p.bridge_mac == "0a:58:0a:f4:01:01"
    assert p.pod_ifname == "eth0" and p.pod_mac == "0a:58:0a:f4:01:07" and p.mtu == 1450
    assert [a.cidr for a in p.pod_addresses] == ["10.244.1.7/24", "fd00:1::7/64"]
    assert [g.cidr for g in p.gateways] == ["10.244.1.1/24", "fd00:1::1/64"]
    assert p.host_ifname == wiring.host_ifname(Attachment("abc", "eth0")) and len(p.host_ifname) == 15


def test_host_names_differ_per_attachment_and_macs_are_local_unicast():
    a, b = wiring.host_ifname(Attachment("abc", "eth0")), wiring.host_ifname(Attachment("abc", "eth1"))
    assert a != b
    first_octet = int(wiring.mac_from_key(a).split(":")[0], 16)
    assert first_octet & 0x02 and not first_octet & 0x01


def test_mac_from_ipv4():
    assert wiring.mac_from_ipv4(netaddr.IPAddress("192.168.0.255")) == "0a:58:c0:a8:00:ff"
