import pytest

from netplane.cni import errors
from netplane.cni.errors import CniError
from netplane.cni.invocation import parse_cni_args, parse_environment

FULL = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


def test_complete_environment_parses():
    inv = parse_environment({**FULL, "CNI_ARGS": "K8S_POD_NAME=web;IgnoreUnknown=1"})
    assert (inv.command, inv.container_id, inv.netns, inv.ifname) == ("ADD", "abc123", "/run/netns/x", "eth0")
    assert inv.args == {"K8S_POD_NAME": "web", "IgnoreUnknown": "1"}


def test_missing_variables_are_all_named_at_once():
    with pytest.raises(CniError) as exc:
        parse_environment({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc"})
    assert exc.value.code == errors.INVALID_ENVIRONMENT
    assert exc.value.details == "CNI_NETNS, CNI_IFNAME"


def test_empty_variable_counts_as_missing():
    with pytest.raises(CniError) as exc:
        parse_environment({**FULL, "CNI_IFNAME": ""})
    assert exc.value.code == 4 and "CNI_IFNAME" in exc.value.details


def test_missing_command():
    with pytest.raises(CniError) as exc:
        parse_environment({})
    assert exc.value.code == 4 and exc.value.details == "CNI_COMMAND"


def test_unknown_command():
    with pytest.raises(CniError) as exc:
        parse_environment({**FULL, "CNI_COMMAND": "add"})
    assert exc.value.code == 4 and "add" in exc.value.msg


@pytest.mark.parametrize("verb, needed", [
    ("ADD", {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"}),   # CNI_PATH is optional in the spec
    ("DEL", {"CNI_CONTAINERID", "CNI_IFNAME"}),
    ("GC", set()), ("STATUS", set()), ("VERSION", set()),
])
def test_each_verb_needs_only_its_variables(verb, needed):
    env = {k: v for k, v in FULL.items() if k in needed}
    assert parse_environment({**env, "CNI_COMMAND": verb}).command == verb


@pytest.mark.parametrize("cid", ["../../etc", "a/b", "-leading-dash", "has space", "x" * 201, "abc\n"])
def test_invalid_container_ids_are_refused(cid):
    with pytest.raises(CniError) as exc:
        parse_environment({**FULL, "CNI_CONTAINERID": cid})
    assert exc.value.code == errors.INVALID_ENVIRONMENT


@pytest.mark.parametrize("ifname", ["a/b", "..", ".", "eth:0", "eth 0", "x" * 16, "\u00e9" * 8])
def test_invalid_interface_names_are_refused(ifname):
    with pytest.raises(CniError) as exc:
        parse_environment({**FULL, "CNI_IFNAME": ifname})
    assert exc.value.code == errors.INVALID_ENVIRONMENT


def test_fifteen_byte_interface_name_is_fine():
    assert parse_environment({**FULL, "CNI_IFNAME": "x" * 15}).ifname == "x" * 15


def test_malformed_cni_args():
    with pytest.raises(CniError) as exc:
        parse_cni_args("K=V;novalue")
    assert exc.value.code == 4
