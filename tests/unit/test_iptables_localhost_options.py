"""iptables.localhostNodePorts as kube-proxy has it: on by default for IPv4,
off where the node-port addresses leave loopback out, route_localnet set
once (and a failure said in one line that names the alternatives), the
martian safeguard in NP-FIREWALL, and the flag in kube-proxy's spellings."""
import argparse
import logging

import netaddr
import pytest

from netplane.proxy import options
from netplane.proxy.iptables import chains as c
from netplane.proxy.iptables import localnet
from netplane.proxy.iptables.compile import static_chains
from netplane.proxy.iptables.mode import MODE, IptablesApplier, IptablesOptions, context
from netplane.proxy.policy import Node
from netplane.proxy.settings import EVERY_LOCAL_ADDRESS, Settings
from netplane.testing.iptables_fake import FakeIptables, fake_dataplane

SETTINGS = Settings(Node("n1"), (netaddr.IPAddress("192.168.1.1"),), (netaddr.IPNetwork("10.244.0.0/16"),))
SAFEGUARD = ('-A NP-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "netplane block incoming '
             'localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n')


def ips(*texts):
    return tuple(netaddr.IPAddress(t) for t in texts)


def test_on_by_default_for_ipv4_only():
    v4 = context(SETTINGS, IptablesOptions(), 4, EVERY_LOCAL_ADDRESS)
    v6 = context(SETTINGS, IptablesOptions(), 6, EVERY_LOCAL_ADDRESS)
    assert v4.localhost_nodeports and v4.nodeport_destinations == ("-m addrtype --dst-type LOCAL",)
    assert not v6.localhost_nodeports and v6.nodeport_destinations == ("-m addrtype --dst-type LOCAL ! -d ::1/128",)


def test_off_keeps_loopback_out_of_the_node_ports():
    off = context(SETTINGS, IptablesOptions(localhost_nodeports=False), 4, EVERY_LOCAL_ADDRESS)
    assert not off.localhost_nodeports
    assert off.nodeport_destinations == ("-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8",)


def test_node_port_addresses_decide_as_kube_proxys_do():
    """Without loopback among them, no route_localnet; with it but the option
    off, loopback is left out (kube-proxy skips it with an error)."""
    without = context(SETTINGS, IptablesOptions(), 4, ips("192.168.1.1"))
    assert not without.localhost_nodeports and without.nodeport_destinations == ("-d 192.168.1.1/32",)
    with_loopback = context(SETTINGS, IptablesOptions(), 4, ips("127.0.0.1", "192.168.1.1"))
    assert with_loopback.localhost_nodeports
    assert with_loopback.nodeport_destinations == ("-d 127.0.0.1/32", "-d 192.168.1.1/32")
    off = context(SETTINGS, IptablesOptions(localhost_nodeports=False), 4, ips("127.0.0.1", "192.168.1.1"))
    assert off.nodeport_destinations == ("-d 192.168.1.1/32",)
    assert context(SETTINGS, IptablesOptions(), 6, ips("::1", "fd00::1")).nodeport_destinations == ("-d fd00::1/128",)


def test_the_safeguard_is_written_only_with_localhost_node_ports():
    on = static_chains(context(SETTINGS, IptablesOptions(), 4, EVERY_LOCAL_ADDRESS))["filter"]
    off = static_chains(context(SETTINGS, IptablesOptions(localhost_nodeports=False), 4, EVERY_LOCAL_ADDRESS))["filter"]
    assert on[c.LOCALNET_FIREWALL] == SAFEGUARD
    assert off[c.LOCALNET_FIREWALL] == ""               # the chain stays, empty, as kube-proxy's KUBE-FIREWALL
    assert ("filter", "INPUT") in {(t, b) for t, b, rule in c.JUMPS if rule.endswith(c.LOCALNET_FIREWALL)}


def test_route_localnet_is_set_once_for_ipv4_and_the_safeguard_goes_in():
    plane = fake_dataplane(Settings(Node("n1"), ips("192.168.1.1", "fd00::1")))
    plane.sync({4: {}, 6: {}}, None)
    plane.sync({4: {}, 6: {}}, None)
    v4, v6 = plane.appliers[4].runner, plane.appliers[6].runner
    assert v4.route_localnet == 1 and v6.route_localnet == 0
    assert SAFEGUARD.strip() in v4.tables["filter"][c.LOCALNET_FIREWALL]
    assert v6.tables["filter"][c.LOCALNET_FIREWALL] == []


def test_off_leaves_route_localnet_alone():
    applier = IptablesApplier(4, IptablesOptions(localhost_nodeports=False), runner=FakeIptables)
    ctx = context(SETTINGS, IptablesOptions(localhost_nodeports=False), 4, EVERY_LOCAL_ADDRESS)
    applier.apply(MODE.compile({}, ctx, None, None, None), None)
    assert applier.runner.route_localnet == 0 and applier.runner.tables["filter"][c.LOCALNET_FIREWALL] == []


class ReadOnlySysctl(FakeIptables):
    def enable_route_localnet(self) -> bool:
        raise localnet.LocalnetError("localhost node ports need net.ipv4.conf.all.route_localnet=1, which could "
                                     f"not be set (Read-only file system); use {localnet.ALTERNATIVES}")


def test_a_failed_write_is_one_error_line_naming_the_alternatives_and_the_rules_still_go_in(caplog):
    applier = IptablesApplier(4, IptablesOptions(), runner=ReadOnlySysctl)
    ctx = context(SETTINGS, IptablesOptions(), 4, EVERY_LOCAL_ADDRESS)
    with caplog.at_level(logging.INFO, "netplane.proxy"):
        applier.apply(MODE.compile({}, ctx, None, None, None), None)
        applier.apply(MODE.compile({}, ctx, None, None, None), None)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "--iptables-localhost-nodeports=false" in errors[0] and "ebpf" in errors[0]
    assert "NP-SERVICES" in applier.runner.tables["nat"]                  # the transaction went in


def test_enable_writes_the_sysctl_under_the_given_root(tmp_path):
    path = tmp_path / localnet.SYSCTL
    path.parent.mkdir(parents=True)
    path.write_text("0\n")
    assert localnet.enable(str(tmp_path)) is True and path.read_text() == "1"
    assert localnet.enable(str(tmp_path)) is False


def test_enable_failure_is_an_operator_error_naming_the_alternatives(tmp_path):
    with pytest.raises(localnet.LocalnetError) as err:
        localnet.enable(str(tmp_path / "missing"))
    assert "--iptables-localhost-nodeports=false" in str(err.value) and "--mode ebpf" in str(err.value)


def parse(*argv):
    parser = argparse.ArgumentParser()
    options.add_flags(parser, IptablesOptions)
    return options.with_flags(IptablesOptions(), parser.parse_args(list(argv)))


@pytest.mark.parametrize("argv, expected", [
    ((), True), (("--iptables-localhost-nodeports=false",), False), (("--iptables-localhost-nodeports=FALSE",), False),
    (("--iptables-localhost-nodeports=0",), False), (("--iptables-localhost-nodeports=f",), False),
    (("--iptables-localhost-nodeports=True",), True), (("--iptables-localhost-nodeports=1",), True),
    (("--iptables-localhost-nodeports=t",), True), (("--iptables-localhost-nodeports",), True),
    (("--no-iptables-localhost-nodeports",), False)])
def test_the_flag_takes_kube_proxys_spellings_and_ours(argv, expected):
    assert parse(*argv).localhost_nodeports is expected


def test_a_bad_boolean_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse("--iptables-localhost-nodeports=maybe")
    assert "'maybe' is not a boolean" in capsys.readouterr().err


def test_backend_and_localhost_come_from_the_iptables_section():
    opts = options.from_section(IptablesOptions, {"backend": "legacy", "localhostNodePorts": False}, "iptables")
    assert (opts.backend, opts.localhost_nodeports) == ("legacy", False)
    assert parse("--iptables-backend", "nft").backend == "nft"
    with pytest.raises(options.OptionError, match="iptables.backend 'iptables': choose auto or nft or legacy"):
        options.from_section(IptablesOptions, {"backend": "iptables"}, "iptables")
    with pytest.raises(options.OptionError, match="expected bool"):
        options.from_section(IptablesOptions, {"localhostNodePorts": "yes"}, "iptables")
