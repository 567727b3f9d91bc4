import pytest

from netplane.cni import result as res
from netplane.cni.errors import CniError

RESULT = res.Result(
    interfaces=(res.Interface("np0", "0a:58:0a:f4:01:01"), res.Interface("nph", "02:aa:bb:cc:dd:ee"),
                res.Interface("eth0", "0a:58:0a:f4:01:05", sandbox="/run/netns/p", mtu=1450)),
    ips=(res.IPConfig("10.244.1.5/24", "10.244.1.1", 2), res.IPConfig("fd00::5/64", "fd00::1", 2)),
    routes=(res.Route("0.0.0.0/0", "10.244.1.1"), res.Route("::/0", "fd00::1")),
)
INTERFACES_1_0 = [{"name": "np0", "mac": "0a:58:0a:f4:01:01"}, {"name": "nph", "mac": "02:aa:bb:cc:dd:ee"},
                  {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/run/netns/p"}]
ROUTES = [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "::/0", "gw": "fd00::1"}]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_legacy_versions_carry_ip_version_and_empty_dns(version):
    assert res.encode(RESULT, version) == {
        "cniVersion": version, "interfaces": INTERFACES_1_0,
        "ips": [{"version": "4", "address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2},
                {"version": "6", "address": "fd00::5/64", "gateway": "fd00::1", "interface": 2}],
        "routes": ROUTES, "dns": {}}


def test_1_0_0_drops_ip_version_and_empty_dns():
    assert res.encode(RESULT, "1.0.0") == {
        "cniVersion": "1.0.0", "interfaces": INTERFACES_1_0,
        "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2},
                {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2}],
        "routes": ROUTES}


def test_1_1_0_adds_interface_mtu():
    out = res.encode(RESULT, "1.1.0")
    assert out["interfaces"][2] == {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/run/netns/p", "mtu": 1450}
    assert "mtu" not in out["interfaces"][0]


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_decode_round_trips_every_version(version):
    decoded = res.decode(res.encode(RESULT, version))
    expected = RESULT if version == "1.1.0" else res.Result(
        interfaces=tuple(res.Interface(i.name, i.mac, i.sandbox) for i in RESULT.interfaces),
        ips=RESULT.ips, routes=RESULT.routes)
    assert decoded == expected


def test_decode_normalises_ipv6():
    decoded = res.decode({"ips": [{"address": "FD00:0:0::5/64", "gateway": "fd00:0::1"}]})
    assert decoded.ips[0] == res.IPConfig("fd00::5/64", "fd00::1")


def test_chained_result_appends_and_shifts_interface_indexes():
    prev = res.Result(interfaces=(res.Interface("lo"),), ips=(res.IPConfig("127.0.0.1/8", "", 0),),
                      dns={"nameservers": ["10.96.0.10"]})
    merged = RESULT.merged_after(prev)
    assert [i.name for i in merged.interfaces] == ["lo", "np0", "nph", "eth0"]
    assert [ip.interface for ip in merged.ips] == [0, 3, 3]
    assert merged.dns == {"nameservers": ["10.96.0.10"]}


@pytest.mark.parametrize("raw", [{"ips": [{"gateway": "10.0.0.1"}]}, {"interfaces": [{"mac": "x"}]},
                                 {"routes": [{"dst": "nonsense"}]}, {"ips": "nope"}])
def test_malformed_prev_result(raw):
    with pytest.raises(CniError) as exc:
        res.decode(raw)
    assert exc.value.code == 7 and "prevResult" in exc.value.msg
