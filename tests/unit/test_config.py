import pytest

from netplane.cni import config, errors
from netplane.cni.errors import CniError

BASE = {"cniVersion": "1.0.0", "name": "net", "type": "netplane", "subnet": "10.244.1.0/24"}


def parse(**overrides):
    raw = {**BASE, **overrides}
    return config.parse({k: v for k, v in raw.items() if v is not None})


def failure(**overrides) -> CniError:
    with pytest.raises(CniError) as exc:
        parse(**overrides)
    return exc.value


def test_defaults():
    conf = parse()
    assert conf.bridge == "np0" and conf.data_dir == "/var/lib/cni/netplane" and conf.mtu is None
    assert [str(s) for s in conf.subnets] == ["10.244.1.0/24"]


def test_dual_stack_orders_ipv4_first():
    conf = parse(subnet=["fd00:10:244:1::/64", "10.244.1.0/24"])
    assert [s.version for s in conf.subnets] == [4, 6]


def test_subnet_may_be_absent():
    assert parse(subnet=None).subnets == ()


@pytest.mark.parametrize("subnet, phrase", [
    ("10.244.1.0", "no prefix length"),
    ("10.244.1.0/33", "not a valid CIDR"),
    ("banana/24", "not a valid CIDR"),
    ("10.244.1.5/24", "host bits set; did you mean 10.244.1.0/24"),
    ("10.244.1.0/31", "too small"),
    (["fd00::/64"], "exactly one IPv4"),
    (["10.0.0.0/24", "10.1.0.0/24"], "exactly one IPv4"),
    (["10.0.0.0/24", "fd00::/64", "fd01::/64"], "at most one IPv6"),
    ([], "must be a CIDR string"),
    (24, "must be a CIDR string"),
])
def test_malformed_subnet_names_the_key(subnet, phrase):
    err = failure(subnet=subnet)
    assert err.code == errors.INVALID_CONFIG
    assert "'subnet'" in err.msg and phrase in err.details


@pytest.mark.parametrize("key, value", [
    ("mtu", 100), ("mtu", "1500"), ("mtu", True), ("bridge", "br/0"), ("bridge", "x" * 16),
    ("dataDir", "relative/dir"), ("stateFile", 7), ("name", "bad name"), ("name", ""), ("type", "bridge"),
    ("prevResult", []),
])
def test_bad_values_name_their_key(key, value):
    err = failure(**{key: value})
    assert err.code == errors.INVALID_CONFIG and f"'{key}'" in err.msg


def test_ipam_section_is_an_unsupported_field():
    err = failure(ipam={"type": "host-local"})
    assert err.code == errors.UNSUPPORTED_FIELD and "ipam" in err.msg


@pytest.mark.parametrize("raw, code", [
    ({}, errors.INCOMPATIBLE_VERSION),                 # missing means 0.1.0
    ({"cniVersion": "0.2.0"}, errors.INCOMPATIBLE_VERSION),
    ({"cniVersion": "2.0.0"}, errors.INCOMPATIBLE_VERSION),
    ({"cniVersion": 1}, errors.DECODE_FAILURE),
])
def test_versions(raw, code):
    with pytest.raises(CniError) as exc:
        config.cni_version(raw)
    assert exc.value.code == code


@pytest.mark.parametrize("stdin, code", [(b"", 6), (b"{nope", 6), (b"[1]", 6), (b"\xff\xfe", 6)])
def test_undecodable_stdin(stdin, code):
    with pytest.raises(CniError) as exc:
        config.decode(stdin)
    assert exc.value.code == code


def test_gc_attachments_from_either_key_and_null():
    entry = {"containerID": "c1", "ifname": "eth0"}
    assert parse(**{"cni.dev/valid-attachments": [entry]}).valid_attachments == {config.Attachment("c1", "eth0")}
    assert parse(**{"cni.dev/attachments": [entry]}).valid_attachments == {config.Attachment("c1", "eth0")}
    null = config.parse({**BASE, "cni.dev/valid-attachments": None})  # libcni sends a nil list as null
    assert null.valid_attachments == frozenset()
    assert parse().valid_attachments is None


def test_gc_entry_with_impossible_id_protects_nothing_but_keeps_the_rest():
    entries = [{"containerID": "../x", "ifname": "eth0"}, {"containerID": "ok", "ifname": "eth0"}]
    assert parse(**{"cni.dev/valid-attachments": entries}).valid_attachments == {config.Attachment("ok", "eth0")}


def test_gc_malformed_list_is_refused():
    err = failure(**{"cni.dev/valid-attachments": [{"containerID": 1}]})
    assert err.code == errors.INVALID_CONFIG and "cni.dev/valid-attachments" in err.msg
