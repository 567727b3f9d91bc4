"""runtimeConfig capabilities: parsing, fitting requests to the pools, the
allocator serving them, the MAC in the plan, and ADD's rollback."""
import contextlib
import json
import os

import netaddr
import pytest

from netplane.cni import capabilities, config, errors, lifecycle, plugin, wiring
from netplane.cni import result as res
from netplane.cni.config import Attachment
from netplane.cni.errors import CniError
from netplane.cni.invocation import Invocation
from netplane.cni.ipam import allocator
from netplane.cni.ipam.pool import Pool
from netplane.cni.ipam.store import DiskStore, MemoryStore

V4 = Pool(netaddr.IPNetwork("10.0.0.0/29"))      # .2 - .6 usable
V6 = Pool(netaddr.IPNetwork("fd00::/120"))
BASE = {"cniVersion": "1.0.0", "name": "net", "type": "netplane", "subnet": ["10.0.0.0/29", "fd00::/120"]}


def parse(value) -> capabilities.RuntimeConfig:
    return capabilities.parse(value)


def failure(value) -> CniError:
    with pytest.raises(CniError) as exc:
        capabilities.parse(value)
    return exc.value


def requested(*texts: str) -> tuple[capabilities.RequestedIP, ...]:
    return parse({"ips": list(texts)}).ips


def owner(n: int) -> Attachment:
    return Attachment(f"c{n}", "eth0")


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path):
    return MemoryStore() if request.param == "memory" else DiskStore(str(tmp_path), "net")


# --- parsing ---------------------------------------------------------------

@pytest.mark.parametrize("value", [None, {}, {"portMappings": []}, {"portMappings": None}, {"ips": None, "mac": None},
                                   {"ips": []}, {"bandwidth": {"ingressRate": 1}, "io.kubernetes.cri/x": 1}])
def test_nothing_requested(value):
    assert parse(value) == capabilities.RuntimeConfig()


def test_ips_and_mac_are_parsed():
    rc = parse({"ips": ["10.0.0.5/29", "fd00::5/120"], "mac": "C2:11:22:33:44:5A", "portMappings": []})
    assert [str(r) for r in rc.ips] == ["10.0.0.5/29", "fd00::5/120"]
    assert [r.version for r in rc.ips] == [4, 6]
    assert rc.mac == "c2:11:22:33:44:5a"   # normalised the way the kernel prints it


def test_a_bare_address_takes_the_subnet_prefix():
    [req] = requested("10.0.0.5")
    assert req.prefixlen is None
    assert capabilities.fit([req], [V4]) == {4: "10.0.0.5"}


def test_ipv6_is_normalised():
    assert capabilities.fit(requested("FD00:0:0::05/120"), [V4, V6]) == {6: "fd00::5"}


@pytest.mark.parametrize("value", [[], "x", 5, ["10.0.0.5/29"]])
def test_runtime_config_that_is_not_an_object_is_code_7(value):
    err = failure(value)
    assert err.code == errors.INVALID_CONFIG and "'runtimeConfig'" in err.msg


@pytest.mark.parametrize("ips, phrase", [
    ("10.0.0.5/29", "must be a list"),
    ({"ip": "10.0.0.5"}, "must be a list"),
    ([5], "must be a list"),
    (["banana"], "CIDR form"),
    (["10.0.0.5/"], "CIDR form"),
    (["10.0.0.5/024"], "CIDR form"),
    (["10.0.0.5/ 24"], "CIDR form"),
    (["10.0.0.5/255.255.255.0"], "CIDR form"),
    (["10.1/8"], "CIDR form"),
    (["fe80::1%eth0/64"], "CIDR form"),
    (["10.0.0.5/33"], "impossible prefix"),
    (["fd00::5/129"], "impossible prefix"),
    (["10.0.0.5/29", "10.0.0.6/29"], "at most one IPv4 address, got 2"),
    (["fd00::5/120", "10.0.0.5/29", "fd00::6/120"], "at most one IPv6 address, got 2"),
])
def test_malformed_ips_are_code_7_naming_the_key(ips, phrase):
    err = failure({"ips": ips})
    assert err.code == errors.INVALID_CONFIG and "'runtimeConfig.ips'" in err.msg
    assert phrase in err.details


@pytest.mark.parametrize("mac, phrase", [
    ("c2-11-22-33-44-55", "must be a MAC"), ("c211.2233.4455", "must be a MAC"), ("c2:11:22:33:44", "must be a MAC"),
    ("c2:11:22:33:44:55:66", "must be a MAC"), ("c2:11:22:33:44:5g", "must be a MAC"), ("", "must be a MAC"),
    (" c2:11:22:33:44:55", "must be a MAC"), (42, "must be a MAC"), (["c2:11:22:33:44:55"], "must be a MAC"),
    ("01:00:5e:00:00:01", "multicast"), ("ff:ff:ff:ff:ff:ff", "multicast"), ("c3:11:22:33:44:55", "multicast"),
    ("00:00:00:00:00:00", "all-zero"),
])
def test_bad_mac_is_code_7_naming_the_key(mac, phrase):
    err = failure({"mac": mac})
    assert err.code == errors.INVALID_CONFIG and "'runtimeConfig.mac'" in err.msg
    assert phrase in err.details


@pytest.mark.parametrize("mappings", [[{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], {"x": 1}, "8080"])
def test_port_mappings_are_refused_with_code_2_pointing_at_portmap(mappings):
    err = failure({"portMappings": mappings, "ips": ["10.0.0.5/29"]})
    assert err.code == errors.UNSUPPORTED_FIELD and "'runtimeConfig.portMappings'" in err.msg
    assert "portmap" in err.details


def test_config_parse_carries_the_runtime_config():
    conf = config.parse({**BASE, "runtimeConfig": {"ips": ["10.0.0.5/29"], "mac": "c2:11:22:33:44:55"}})
    assert [str(r) for r in conf.runtime_config.ips] == ["10.0.0.5/29"]
    assert conf.runtime_config.mac == "c2:11:22:33:44:55"
    assert config.parse(BASE).runtime_config == capabilities.RuntimeConfig()
    with pytest.raises(CniError) as exc:
        config.parse({**BASE, "runtimeConfig": {"mac": "01:00:5e:00:00:01"}})
    assert exc.value.code == errors.INVALID_CONFIG and "runtimeConfig.mac" in exc.value.msg


# --- fitting requests to the pools -------------------------------------------

def test_config_parse_checks_requests_against_its_subnets():
    with pytest.raises(CniError) as exc:
        config.parse({**BASE, "runtimeConfig": {"ips": ["10.0.0.7/29"]}})
    assert exc.value.code == errors.INVALID_CONFIG and "'runtimeConfig.ips'" in exc.value.msg
    assert "last address" in exc.value.details


def test_without_subnets_in_the_config_the_check_waits_for_the_state_file():
    raw = {k: v for k, v in BASE.items() if k != "subnet"}
    conf = config.parse({**raw, "runtimeConfig": {"ips": ["10.0.0.7/29"]}})
    with pytest.raises(CniError) as exc:
        allocator.allocate(MemoryStore(), owner(1), [V4], conf.runtime_config.ips)
    assert exc.value.code == errors.INVALID_CONFIG and "last address" in exc.value.details


@pytest.mark.parametrize("ip, phrase", [
    ("10.0.1.5/29", "outside the subnet 10.0.0.0/29"),
    ("10.0.0.0/29", "network address"),
    ("10.0.0.1/29", "gateway"),
    ("10.0.0.7/29", "last address"),          # IPv4 broadcast
    ("fd00::/120", "network address"),
    ("fd00::1/120", "gateway"),
    ("fd00::ff/120", "last address"),         # netplane never hands it out either
    ("fd01::5/120", "outside the subnet"),
    ("10.0.0.5/24", "has prefix /24, the subnet is 10.0.0.0/29"),
    ("fd00::5/64", "has prefix /64"),
])
def test_requests_outside_what_the_pool_hands_out_are_code_7(ip, phrase):
    with pytest.raises(CniError) as exc:
        capabilities.fit(requested(ip), [V4, V6])
    assert exc.value.code == errors.INVALID_CONFIG and "'runtimeConfig.ips'" in exc.value.msg
    assert phrase in exc.value.details


def test_a_family_the_network_does_not_have_is_code_7():
    with pytest.raises(CniError) as exc:
        capabilities.fit(requested("fd00::5/120"), [V4])
    assert "'runtimeConfig.ips'" in exc.value.msg and "IPv6" in exc.value.details


def test_first_and_last_usable_addresses_fit():
    assert capabilities.fit(requested("10.0.0.2/29", "fd00::fe/120"), [V4, V6]) == {4: "10.0.0.2", 6: "fd00::fe"}


# --- the allocator serving requests --------------------------------------------

def test_requested_addresses_are_served_exactly(store):
    assert allocator.allocate(store, owner(1), [V4, V6], requested("10.0.0.5/29", "fd00::42/120")) == \
        ["10.0.0.5", "fd00::42"]
    assert allocator.addresses_of(store, owner(1)) == ["10.0.0.5", "fd00::42"]


def test_a_family_without_a_request_is_allocated_as_usual(store):
    assert allocator.allocate(store, owner(1), [V4, V6], requested("fd00::42/120")) == ["10.0.0.2", "fd00::42"]
    assert allocator.allocate(store, owner(2), [V4, V6], requested("10.0.0.6")) == ["10.0.0.6", "fd00::2"]


def test_a_request_does_not_move_the_round_robin_cursor(store):
    allocator.allocate(store, owner(1), [V4], requested("10.0.0.5/29"))
    assert allocator.allocate(store, owner(2), [V4]) == ["10.0.0.2"]
    assert allocator.allocate(store, owner(3), [V4]) == ["10.0.0.3"]


def test_the_search_skips_a_requested_address(store):
    allocator.allocate(store, owner(1), [V4], requested("10.0.0.2/29"))
    assert allocator.allocate(store, owner(2), [V4]) == ["10.0.0.3"]


def test_a_taken_address_is_refused_naming_its_holder_and_nothing_is_left(store):
    allocator.allocate(store, owner(1), [V4, V6])                       # 10.0.0.2, fd00::2
    before = store.owners()
    with pytest.raises(CniError) as exc:
        allocator.allocate(store, owner(2), [V4, V6], requested("fd00::9/120", "10.0.0.2/29"))
    assert exc.value.code == errors.ADDRESS_TAKEN
    assert "'runtimeConfig.ips'" in exc.value.msg
    assert "10.0.0.2" in exc.value.details and "container c1 interface eth0" in exc.value.details
    assert store.owners() == before and not store.has_record(owner(2))
    assert allocator.addresses_of(store, owner(2)) == []
    assert store.is_free("fd00::9")                                       # the free half was not taken either
    assert allocator.allocate(store, owner(2), [V4, V6], requested("10.0.0.3/29")) == ["10.0.0.3", "fd00::3"]


def test_the_address_code_is_netplanes_own_and_unique():
    codes = [v for k, v in vars(errors).items() if k.isupper() and isinstance(v, int)]
    assert errors.ADDRESS_TAKEN >= 100 and codes.count(errors.ADDRESS_TAKEN) == 1


def test_an_existing_attachment_wins_over_a_request(store):
    allocator.allocate(store, owner(1), [V4], requested("10.0.0.4/29"))
    with pytest.raises(CniError) as exc:
        allocator.allocate(store, owner(1), [V4], requested("10.0.0.4/29"))
    assert exc.value.code == errors.ATTACHMENT_EXISTS
    assert allocator.addresses_of(store, owner(1)) == ["10.0.0.4"]


def test_an_address_freed_by_del_can_be_requested_again(store):
    allocator.allocate(store, owner(1), [V4], requested("10.0.0.4/29"))
    allocator.release(store, owner(1))
    assert allocator.allocate(store, owner(2), [V4], requested("10.0.0.4/29")) == ["10.0.0.4"]


def test_an_unfit_request_is_refused_before_the_store_is_touched(tmp_path):
    disk = DiskStore(str(tmp_path / "ipam"), "net")
    with pytest.raises(CniError) as exc:
        allocator.allocate(disk, owner(1), [V4], requested("10.0.0.1/29"))
    assert exc.value.code == errors.INVALID_CONFIG
    assert not (tmp_path / "ipam").exists()


# --- the plan and ADD ---------------------------------------------------------

def test_plan_uses_the_requested_mac_and_derives_one_otherwise():
    pools = [V4, V6]
    with_mac = config.parse({**BASE, "runtimeConfig": {"mac": "C2:11:22:33:44:55"}})
    assert wiring.plan(with_mac, owner(1), pools, ["10.0.0.5", "fd00::5"], 1500).pod_mac == "c2:11:22:33:44:55"
    assert wiring.plan(config.parse(BASE), owner(1), pools, ["10.0.0.5", "fd00::5"], 1500).pod_mac == \
        "0a:58:0a:00:00:05"


class _FakeKernel:
    """Stands in for netlink: records attach and detach, opens nothing."""

    def __init__(self, monkeypatch, fail_attach: bool = False) -> None:
        self.detached: list[str] = []
        self.attached: list[wiring.Plan] = []
        self.fail_attach = fail_attach
        monkeypatch.setattr(lifecycle, "Channel", self)
        monkeypatch.setattr(wiring, "attach", self.attach)
        monkeypatch.setattr(wiring, "detach", lambda host, node: self.detached.append(host))

    def open(self, *args):
        return contextlib.nullcontext(self)

    def attach(self, plan, node, fd):
        if self.fail_attach:
            raise OSError("wiring failed")     # attach removes its own links; ADD must still release
        self.attached.append(plan)
        return "0a:58:0a:00:00:01"


def _conf(tmp_path, **runtime) -> config.NetConf:
    return config.parse({**BASE, "dataDir": str(tmp_path / "ipam"), "runtimeConfig": runtime})


INV = Invocation("ADD", "c1", "/run/netns/p1", "eth0")


def test_add_reports_the_requested_addresses_and_mac(tmp_path, monkeypatch):
    kernel = _FakeKernel(monkeypatch)
    out = lifecycle.add(INV, _conf(tmp_path, ips=["10.0.0.5/29"], mac="c2:11:22:33:44:55"), 99)
    assert [ip["address"] for ip in out["ips"]] == ["10.0.0.5/29", "fd00::2/120"]
    assert out["interfaces"][2] == {"name": "eth0", "mac": "c2:11:22:33:44:55", "sandbox": "/run/netns/p1"}
    assert kernel.attached[0].pod_mac == "c2:11:22:33:44:55" and kernel.detached == []


def test_a_failure_while_building_the_result_detaches_and_releases(tmp_path, monkeypatch):
    kernel = _FakeKernel(monkeypatch)

    def broken_encode(*args):
        raise RuntimeError("cannot encode")
    monkeypatch.setattr(res, "encode", broken_encode)
    conf = _conf(tmp_path, ips=["10.0.0.5/29"])
    with pytest.raises(RuntimeError):
        lifecycle.add(INV, conf, 99)
    assert kernel.detached == [wiring.host_ifname(Attachment("c1", "eth0"))]
    assert lifecycle.store_for(conf).owners() == {}


def test_a_failure_while_merging_a_chained_result_detaches_and_releases(tmp_path, monkeypatch):
    kernel = _FakeKernel(monkeypatch)

    def broken_merge(self, prev):
        raise TypeError("cannot merge")
    monkeypatch.setattr(res.Result, "merged_after", broken_merge)
    conf = _conf(tmp_path)
    with pytest.raises(TypeError):
        lifecycle.add(INV, conf, 99, res.Result())
    assert len(kernel.detached) == 1 and lifecycle.store_for(conf).owners() == {}


def test_a_failed_attach_releases_without_a_second_detach(tmp_path, monkeypatch):
    kernel = _FakeKernel(monkeypatch, fail_attach=True)
    conf = _conf(tmp_path)
    with pytest.raises(OSError):
        lifecycle.add(INV, conf, 99)
    assert kernel.detached == [] and lifecycle.store_for(conf).owners() == {}


# --- through plugin.run: a bad request is refused before anything is touched ---

def _run(tmp_path, runtime_config) -> dict:
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none", "CNI_IFNAME": "eth0"}
    body = {**BASE, "dataDir": str(tmp_path / "ipam"), "runtimeConfig": runtime_config}
    reply = plugin.run(env, json.dumps(body).encode())
    assert reply.exit_code == 1
    return json.loads(reply.stdout)


@pytest.mark.parametrize("runtime_config, code, key", [
    ({"portMappings": [{"hostPort": 8080, "containerPort": 80}]}, errors.UNSUPPORTED_FIELD, "runtimeConfig.portMappings"),
    ({"ips": ["10.0.0.5/29", "10.0.0.6/29"]}, errors.INVALID_CONFIG, "runtimeConfig.ips"),
    ({"ips": ["10.0.0.1/29"]}, errors.INVALID_CONFIG, "runtimeConfig.ips"),        # the gateway
    ({"ips": ["10.0.9.5/29"]}, errors.INVALID_CONFIG, "runtimeConfig.ips"),        # outside the subnet
    ({"mac": "ff:ff:ff:ff:ff:ff"}, errors.INVALID_CONFIG, "runtimeConfig.mac"),
    ("ips", errors.INVALID_CONFIG, "runtimeConfig"),
])
def test_plugin_refuses_before_touching_disk_or_kernel(tmp_path, runtime_config, code, key):
    out = _run(tmp_path, runtime_config)
    assert out["code"] == code and f"'{key}'" in out["msg"]
    assert not os.path.exists(tmp_path / "ipam")
