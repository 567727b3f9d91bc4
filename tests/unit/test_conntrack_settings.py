"""kube-proxy's conntrack: settings, read from a section or flags and
written to a fake /proc/sys and /sys."""
import argparse
import errno
import logging

import pytest

from netplane.proxy import conntrack_settings as cs
from netplane.proxy.config import ConfigError
from netplane.proxy.conntrack_settings import ConntrackSettings, apply, conntrack_max, from_section

KUBEADM = {"maxPerCore": None, "min": None, "tcpCloseWaitTimeout": None, "tcpEstablishedTimeout": None,
           "tcpBeLiberal": False, "udpTimeout": "0s", "udpStreamTimeout": "0s"}


def test_defaults_are_kube_proxys():
    s = ConntrackSettings()
    assert (s.max_per_core, s.min, s.tcp_established_timeout, s.tcp_close_wait_timeout) == (32768, 131072, 86400,
                                                                                          3600)
    assert (s.tcp_be_liberal, s.udp_timeout, s.udp_stream_timeout) == (False, 0, 0)


def test_a_kubeadm_section_keeps_the_defaults():
    assert from_section(KUBEADM, "c: conntrack") == ConntrackSettings()
    assert from_section({"max": None}, "c: conntrack") == ConntrackSettings()


def test_section_values_with_go_durations():
    s = from_section({"maxPerCore": 0, "min": 5, "tcpEstablishedTimeout": "1h30m", "tcpCloseWaitTimeout": "0s",
                      "tcpBeLiberal": True, "udpTimeout": "30s", "udpStreamTimeout": 120}, "c: conntrack")
    assert s == ConntrackSettings(0, 5, 5400, 0, True, 30, 120)


@pytest.mark.parametrize("section, message", [
    ({"maxPerCore": -1}, "c: conntrack.maxPerCore: expected a whole number, 0 or more, got -1"),
    ({"min": "lots"}, "c: conntrack.min: expected a whole number"),
    ({"min": True}, "c: conntrack.min: expected a whole number"),
    ({"tcpEstablishedTimeout": "a day"}, "c: conntrack.tcpEstablishedTimeout: 'a day' is not a duration"),
    ({"udpTimeout": "500ms"}, "c: conntrack.udpTimeout: '500ms' is less than a second"),
    ({"tcpBeLiberal": "yes"}, "c: conntrack.tcpBeLiberal: expected true or false, got 'yes'"),
    ({"maxPercore": 1}, "c: conntrack: unknown field(s): maxPercore"),
])
def test_bad_values_name_the_field(section, message):
    with pytest.raises(ConfigError) as caught:
        from_section(section, "c: conntrack")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def _args(*argv):
    parser = argparse.ArgumentParser()
    cs.add_flags(parser)
    return parser.parse_args(list(argv))


def test_flags_win_over_the_file():
    base = from_section({"min": 7, "udpTimeout": "10s"}, "c")
    s = cs.with_flags(base, _args("--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "2h",
                                  "--conntrack-tcp-be-liberal", "--conntrack-udp-timeout-stream", "1m"))
    assert s == ConntrackSettings(0, 7, 7200, 3600, True, 10, 60)
    assert cs.with_flags(base, _args("--conntrack-tcp-be-liberal=false")).tcp_be_liberal is False
    assert cs.with_flags(base, _args()) == base


@pytest.mark.parametrize("argv, expected", [
    (["--conntrack-tcp-be-liberal"], True), (["--conntrack-tcp-be-liberal=T"], True),
    (["--conntrack-tcp-be-liberal=1"], True), (["--conntrack-tcp-be-liberal=FALSE"], False),
    (["--conntrack-tcp-be-liberal=0"], False), (["--no-conntrack-tcp-be-liberal"], False)])
def test_the_bool_flag_takes_go_spellings_and_a_no_form(argv, expected):
    assert cs.with_flags(ConntrackSettings(tcp_be_liberal=not expected), _args(*argv)).tcp_be_liberal is expected


def test_a_bad_bool_flag_is_refused_as_every_bool_flag_is(capsys):
    from netplane.cli.common import Parser

    parser = Parser(prog="netplane")
    cs.add_flags(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--conntrack-tcp-be-liberal=maybe"])
    [line] = capsys.readouterr().err.splitlines()
    assert "--conntrack-tcp-be-liberal" in line and "'maybe' is not a boolean: use true or false" in line


@pytest.mark.parametrize("argv, message", [
    (["--conntrack-min", "many"], "--conntrack-min: expected a whole number, 0 or more, got 'many'"),
    (["--conntrack-udp-timeout", "soon"], "--conntrack-udp-timeout: 'soon' is not a duration"),
])
def test_bad_flags_name_the_flag(argv, message):
    with pytest.raises(ConfigError, match="^" + message):
        cs.with_flags(ConntrackSettings(), _args(*argv))


@pytest.mark.parametrize("per_core, minimum, ncpu, expected", [
    (32768, 131072, 2, 131072),          # the floor
    (32768, 131072, 8, 262144),          # scaled
    (32768, 131072, 64, 2097152),        # no cap: kube-proxy has none
    (0, 131072, 8, 0),                   # 0: leave the kernel's alone
])
def test_conntrack_max(per_core, minimum, ncpu, expected):
    assert conntrack_max(ConntrackSettings(max_per_core=per_core, min=minimum), ncpu) == expected


# -- apply, on a fake /proc/sys and /sys -----------------------------------------------------

KERNEL = {"nf_conntrack_max": 65536, "nf_conntrack_tcp_timeout_established": 432000,
          "nf_conntrack_tcp_timeout_close_wait": 60, "nf_conntrack_tcp_be_liberal": 0,
          "nf_conntrack_udp_timeout": 30, "nf_conntrack_udp_timeout_stream": 120}


@pytest.fixture
def kernel(tmp_path):
    netfilter = tmp_path / "proc" / "net" / "netfilter"
    netfilter.mkdir(parents=True)
    for name, value in KERNEL.items():
        (netfilter / name).write_text(f"{value}\n")
    params = tmp_path / "sys" / "module" / "nf_conntrack" / "parameters"
    params.mkdir(parents=True)
    (params / "hashsize").write_text("16384\n")

    class Kernel:
        proc, sys = str(tmp_path / "proc"), str(tmp_path / "sys")

        def value(self, name):
            path = params / "hashsize" if name == "hashsize" else netfilter / name
            return int(path.read_text())

    return Kernel()


def test_apply_writes_what_differs_and_says_what_changed(kernel):
    changed = apply(ConntrackSettings(), proc_root=kernel.proc, sys_root=kernel.sys, ncpu=4)
    assert changed == ["net.netfilter.nf_conntrack_max=131072 (was 65536)",
                       "nf_conntrack hashsize=32768 (was 16384)",
                       "net.netfilter.nf_conntrack_tcp_timeout_established=86400 (was 432000)",
                       "net.netfilter.nf_conntrack_tcp_timeout_close_wait=3600 (was 60)"]
    assert [kernel.value(n) for n in ("nf_conntrack_max", "hashsize", "nf_conntrack_tcp_timeout_established",
                                      "nf_conntrack_udp_timeout", "nf_conntrack_tcp_be_liberal")] == \
        [131072, 32768, 86400, 30, 0]
    assert apply(ConntrackSettings(), proc_root=kernel.proc, sys_root=kernel.sys, ncpu=4) == []


def test_apply_never_lowers_the_max_but_sets_timeouts_both_ways(kernel):
    s = ConntrackSettings(max_per_core=1, min=10, tcp_established_timeout=432001, tcp_close_wait_timeout=30,
                          tcp_be_liberal=True, udp_timeout=10, udp_stream_timeout=0)
    changed = apply(s, proc_root=kernel.proc, sys_root=kernel.sys, ncpu=2)
    assert [c.split("=")[0] for c in changed] == [
        "net.netfilter.nf_conntrack_tcp_timeout_established", "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
        "net.netfilter.nf_conntrack_tcp_be_liberal", "net.netfilter.nf_conntrack_udp_timeout"]
    assert (kernel.value("nf_conntrack_max"), kernel.value("hashsize"), kernel.value("nf_conntrack_tcp_be_liberal"),
            kernel.value("nf_conntrack_udp_timeout_stream")) == (65536, 16384, 1, 120)


def test_all_zero_touches_nothing(kernel):
    s = ConntrackSettings(0, 0, 0, 0, False, 0, 0)
    assert apply(s, proc_root=kernel.proc, sys_root=kernel.sys, ncpu=64) == []
    assert kernel.value("nf_conntrack_tcp_timeout_established") == 432000


def test_a_max_only_the_host_can_raise_is_a_warning(kernel, monkeypatch, caplog):
    real = cs._write

    def refuse_host_wide(path, value):
        if path.endswith("nf_conntrack_max"):
            raise PermissionError(errno.EACCES, "Permission denied")
        if path.endswith("hashsize"):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        real(path, value)

    monkeypatch.setattr(cs, "_write", refuse_host_wide)
    with caplog.at_level(logging.WARNING, "netplane.proxy"):
        changed = apply(ConntrackSettings(), proc_root=kernel.proc, sys_root=kernel.sys, ncpu=2)
    assert [c.split("=")[0] for c in changed] == ["net.netfilter.nf_conntrack_tcp_timeout_established",
                                                  "net.netfilter.nf_conntrack_tcp_timeout_close_wait"]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.sysctl for r in warned] == ["net.netfilter.nf_conntrack_max", "nf_conntrack hashsize"]
    assert "only the host can raise it" in warned[0].getMessage() and warned[0].wanted == 131072
    assert "131072" not in warned[0].getMessage()           # the values are fields, not repeated in prose


def test_a_timeout_that_cannot_be_written_is_one_line(kernel, monkeypatch):
    def refuse(path, value):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(cs, "_write", refuse)
    with pytest.raises(cs.ConntrackError, match=r"^cannot set net.netfilter.nf_conntrack_tcp_timeout_established "
                                                r"to 86400: Input/output error"):
        apply(ConntrackSettings(max_per_core=0), proc_root=kernel.proc, sys_root=kernel.sys, ncpu=2)


def test_without_the_conntrack_module_nothing_is_written(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "netplane.proxy"):
        assert apply(ConntrackSettings(), proc_root=str(tmp_path), sys_root=str(tmp_path), ncpu=2) == []
    assert "nf_conntrack module is not loaded" in caplog.text
