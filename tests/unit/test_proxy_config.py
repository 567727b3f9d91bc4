"""Proxy settings: config file (kube-proxy's fields), flags over file, clear errors (exit 2)."""
import pytest

from netplane.cli import main
from netplane.proxy.conntrack_settings import ConntrackSettings
from netplane.proxy import config
from netplane.proxy.config import ConfigError


def write(tmp_path, text):
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    return str(path)


def test_a_kube_proxy_configuration_is_read_with_its_field_names(tmp_path):
    cfg = config.load_file(write(tmp_path, """
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
nodePortAddresses: [primary]
hostnameOverride: node7
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection: {kubeconfig: /etc/kubernetes/proxy.conf}
iptables: {masqueradeAll: true, masqueradeBit: 15, syncPeriod: 1m30s, minSyncPeriod: 500ms, localhostNodePorts: true}
ipvs: {scheduler: rr, strictARP: false}
nftables: {masqueradeBit: 14}
conntrack: {maxPerCore: 32768}
winkernel: {networkName: vxlan0}
"""))
    assert cfg.cluster_cidrs == ["10.244.0.0/16", "fd00:10:244::/56"] and cfg.node_name == "node7"
    assert cfg.kubeconfig == "/etc/kubernetes/proxy.conf" and cfg.masquerade_all and cfg.masquerade_bit == 15
    assert cfg.sync_period == 90 and cfg.min_sync_period == 0.5
    assert cfg.ignored == ["winkernel", "ipvs.scheduler", "nftables.masqueradeBit"]   # not the iptables mode's own
    assert cfg.mode_options["iptables"].localhost_nodeports is True
    assert cfg.conntrack.max_per_core == 32768


def test_a_modes_options_come_from_its_section_and_its_flags_win(tmp_path, capsys):
    from netplane.proxy.iptables.mode import IptablesOptions

    cfg = config.load_file(write(tmp_path, "iptables: {layout: kube-proxy}\n"))
    assert config.options_of(cfg, "iptables") == IptablesOptions("kube-proxy")
    assert config.options_of(config.load_file(write(tmp_path, "iptablesLayout: kube-proxy\n")), "iptables") \
        == IptablesOptions("kube-proxy")
    assert config.options_of(config.ProxyConfig(), "iptables") == IptablesOptions("compact")
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "s.yaml").write_text("kind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n"
                                      "---\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: s}}\n"
                                      "addressType: IPv4\nendpoints: [{addresses: [10.244.2.3], nodeName: n2}]\nports: [{port: 80}]\n")
    argv = ["compile", "--manifests", str(manifests), "--node-ip", "192.168.1.1", "--node-name", "n1"]
    assert main(argv + ["--config", write(tmp_path, "iptables: {layout: kube-proxy}\n")]) == 0
    assert ":NP-SEP-" in capsys.readouterr().out                          # a chain per endpoint
    assert main(argv + ["--config", write(tmp_path, "iptables: {layout: kube-proxy}\n"), "--iptables-layout",
                        "compact"]) == 0
    assert ":NP-SEP-" not in capsys.readouterr().out                      # the flag won


def test_kubeadms_empty_and_zero_fields_keep_the_defaults(tmp_path):
    cfg = config.load_file(write(tmp_path, """
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ""
clusterCIDR: 10.244.0.0/16
nodePortAddresses: null
healthzBindAddress: ""
metricsBindAddress: ""
hostnameOverride: ""
clientConnection: {kubeconfig: /var/lib/kube-proxy/kubeconfig.conf, qps: 0}
iptables: {masqueradeAll: false, masqueradeBit: null, minSyncPeriod: 0s, syncPeriod: 0s}
"""))
    defaults = config.ProxyConfig()
    assert (cfg.mode, cfg.nodeport_addresses, cfg.node_name) == ("iptables", [], "")
    assert (cfg.healthz_bind_address, cfg.metrics_bind_address) == (defaults.healthz_bind_address,
                                                                    defaults.metrics_bind_address)
    assert (cfg.sync_period, cfg.min_sync_period, cfg.masquerade_bit) == (30.0, 1.0, 14)
    config.check(cfg, ["iptables"])


@pytest.mark.parametrize("text,message", [
    ("mode: iptables\nclusterCIDRs: 10.0.0.0/8\n", "unknown field(s): clusterCIDRs"),
    ("kind: Deployment\n", "kind 'Deployment'"),
    ("iptables: {syncPeriod: soon}\n", "'soon' is not a duration"),
    ("iptables: {masqueradeAll: 'yes'}\n", "expected bool"),
    ("iptables: {masqueradeALL: true}\n", "unknown field(s) in iptables: masqueradeALL"),
    ("iptables: {layout: fancy}\n", "iptables.layout 'fancy': choose compact or kube-proxy"),
    ("ipvs: {schedular: rr}\n", "unknown field(s) in ipvs: schedular"),
    ("iptables: [1]\n", "iptables must be a mapping"),
    ("nodeIPs: 10.0.0.1\n", "expected a list of strings"),
    ("mode: [\n", "proxy.yaml"),
    ("logging: {format: json, optoins: {}}\n", "unknown field(s) in logging: optoins"),
    ("logging: {options: {json: {infoBufferSise: 0}}}\n", "unknown field(s) in logging.options.json: infoBufferSise"),
    ("logging: {format: yaml}\n", "logging.format 'yaml': choose text or json"),
    ("detectLocal: {bridgeInterfaces: cni0}\n", "unknown field(s) in detectLocal: bridgeInterfaces"),
    ("winkernel: [1]\n", "winkernel must be a mapping"),
])
def test_bad_config_files_are_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.load_file(write(tmp_path, text))


@pytest.mark.parametrize("value,seconds", [("30s", 30), ("1m", 60), ("1h30m", 5400), ("250ms", 0.25), (5, 5),
                                           ("2.5", 2.5)])
def test_durations(value, seconds):
    assert config.duration(value, "x") == seconds


@pytest.mark.parametrize("field,value,message", [
    ("node_ips", ["10.0.0.1", "10.0.0.2"], "at most one per family"),
    ("node_ips", ["nonsense"], "is not an IP address"),
    ("cluster_cidrs", ["10.244.1.7/16"], "expected a network"),
    ("nodeport_addresses", ["primary"], "needs the node IPs"),
    ("masquerade_bit", 40, "must be 0..31"),
    ("healthz_bind_address", "10256", "expected host:port"),
    ("mode", "ebpf", "available modes are iptables"),
])
def test_checks_refuse_nonsense(field, value, message):
    cfg = config.ProxyConfig(**{field: value})
    with pytest.raises(ConfigError, match=message):
        config.check(cfg, ["iptables"])


def test_primary_node_port_addresses_are_the_node_ips():
    checked = config.check(config.ProxyConfig(node_ips=["192.168.200.11", "fd00::11"],
                                              nodeport_addresses=["primary"]), ["iptables"])
    assert [str(n) for n in checked.nodeport_addresses] == ["192.168.200.11/32", "fd00::11/128"]
    assert checked.metrics == ("127.0.0.1", 10249) and checked.healthz == ("0.0.0.0", 10256)
    assert config.check(config.ProxyConfig(metrics_bind_address=""), ["iptables"]).metrics is None


def test_flags_win_over_the_file_and_compile_prints_the_plan(tmp_path, capsys):
    conf = write(tmp_path, "clusterCIDR: 10.99.0.0/16\nhostnameOverride: from-file\n")
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "s.yaml").write_text("kind: Service\nmetadata: {name: s}\n"
                                      "spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n")
    assert main(["compile", "--config", conf, "--manifests", str(manifests), "--cluster-cidr", "10.244.0.0/16",
                 "--node-ip", "192.168.1.1", "--timing"]) == 0
    out, err = capsys.readouterr()
    assert all(f"{phase} " in err for phase in ("read", "parse", "categorize", "compile", "print", "total"))
    assert out.startswith("# iptables-restore --noflush\n") and "ip6tables" not in out     # IPv4 node only
    assert "default/s has no endpoints\" -j REJECT" in out
    assert "10.99.0.0/16" not in out


@pytest.mark.parametrize("argv,message", [
    (["proxy"], "give a source"),
    (["proxy", "--manifests", "/nonexistent"], "no such file or directory"),
    (["proxy", "--manifests", ".", "--sync-period", "fast"], "--sync-period: 'fast' is not a duration"),
    (["proxy", "--manifests", ".", "--min-sync-period", "1m", "--sync-period", "30s"], "minimum sync period"),
    (["proxy", "--manifests", ".", "--node-ip", "10.0.0.1,10.0.0.2"], "at most one per family"),
    (["proxy", "--config", "/nonexistent.yaml", "--manifests", "."], "nonexistent.yaml"),
    (["compile", "--manifests", ".", "--mode", "userspace"], "available modes are ebpf, iptables, ipvs, nftables"),
    (["compile", "--manifests", ".", "--iptables-layout", "fancy"], "--iptables-layout 'fancy': choose compact"),
])
def test_bad_flags_exit_2_with_a_message_and_no_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_kube_proxys_flag_names_carry_over():
    """A kube-proxy command line works as it is (issue 20: these were refused)."""
    from netplane import cli

    args = cli._parser().parse_args([
        "proxy", "--manifests", "/tmp", "--proxy-mode", "nftables", "--hostname-override", "node-7",
        "--iptables-sync-period", "10s", "--iptables-min-sync-period", "2s", "--masquerade-all=true",
        "--iptables-masquerade-bit", "13", "--v=2"])
    cfg, _ = cli.proxy.proxy_config(args)
    assert (cfg.mode, cfg.node_name, cfg.sync_period, cfg.min_sync_period, cfg.masquerade_all, cfg.masquerade_bit) \
        == ("nftables", "node-7", 10.0, 2.0, True, 13)
    assert args.verbosity == 2 and args.log_level is None
    assert cli._parser().parse_args(["proxy", "--masquerade-all=false"]).masquerade_all is False
    assert cli._parser().parse_args(["proxy", "--masquerade-all"]).masquerade_all is True


@pytest.mark.parametrize("value", ["-3", "abc", "1.5"])
def test_a_verbosity_below_zero_or_not_a_number_is_one_line(value, capsys):
    from netplane import cli

    with pytest.raises(SystemExit) as exited:        # the parser stops it: nothing starts
        cli._parser().parse_args(["proxy", "--manifests", "/tmp", f"--v={value}"])
    [line] = capsys.readouterr().err.splitlines()
    assert exited.value.code == 2 and f"--v: '{value}' is not a verbosity: use a whole number, 0 or more" in line


# What `kubeadm init` writes into the kube-proxy ConfigMap (kubeadm 1.31, every field at its zero value).
KUBEADM_CONFIG = """
apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
metricsBindAddress: ""
mode: ""
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
"""


def test_the_config_kubeadm_writes_loads_with_nothing_reported_ignored(tmp_path):
    cfg = config.load_file(write(tmp_path, KUBEADM_CONFIG))
    assert cfg.kubeconfig == "/var/lib/kube-proxy/kubeconfig.conf" and cfg.cluster_cidrs == ["10.244.0.0/16"]
    assert cfg.ignored == [] and cfg.conntrack == ConntrackSettings() and cfg.logging_format == "text"
    config.check(cfg, ["iptables"])


def test_logging_format_and_verbosity_are_read_and_the_rest_of_logging_reported_ignored(tmp_path):
    cfg = config.load_file(write(tmp_path, "logging: {format: json, verbosity: 4, flushFrequency: 5s}\n"))
    assert (cfg.logging_format, cfg.verbosity) == ("json", 4)
    assert cfg.ignored == ["logging"]


def test_a_source_flag_replaces_the_files_source(tmp_path):
    """kubeadm's config names a kubeconfig; --manifests on the command line must win, not clash."""
    from netplane import cli

    path = write(tmp_path, KUBEADM_CONFIG)
    args = cli._parser().parse_args(["proxy", "--config", path, "--manifests", str(tmp_path)])
    cfg, _ = cli.proxy.proxy_config(args)
    assert (cfg.manifests, cfg.kubeconfig, cfg.in_cluster) == (str(tmp_path), None, False)
    args = cli._parser().parse_args(["proxy", "--config", path, "--in-cluster"])
    cfg, _ = cli.proxy.proxy_config(args)
    assert (cfg.manifests, cfg.kubeconfig, cfg.in_cluster) == (None, None, True)
    args = cli._parser().parse_args(["proxy", "--config", path])
    assert cli.proxy.proxy_config(args)[0].kubeconfig == "/var/lib/kube-proxy/kubeconfig.conf"   # the file's


def test_another_modes_own_options_are_reported_ignored(tmp_path):
    cfg = config.load_file(write(tmp_path, "mode: nftables\niptables: {localhostNodePorts: true, layout: compact}\n"))
    assert cfg.ignored == ["iptables.layout", "iptables.localhostNodePorts"]
    cfg = config.load_file(write(tmp_path, "mode: iptables\niptables: {localhostNodePorts: false, layout: compact}\n"))
    assert cfg.ignored == []


def test_the_ignored_fields_are_one_warning_listing_them(tmp_path, capsys):
    conf = write(tmp_path, "mode: nftables\nwinkernel: {networkName: x}\niptables: {layout: compact}\n")
    assert main(["proxy", "--config", conf]) == 2         # no source: it stops after the warning
    warnings = [line for line in capsys.readouterr().err.splitlines() if "level=warning" in line]
    [warning] = warnings
    assert 'msg="config: ignoring kube-proxy fields" fields=winkernel,iptables.layout' in warning


def test_a_bind_address_without_a_port_takes_kube_proxys_port():
    checked = config.check(config.ProxyConfig(healthz_bind_address="0.0.0.0", metrics_bind_address="::1"),
                           ["iptables"])
    assert (checked.healthz, checked.metrics) == (("0.0.0.0", 10256), ("::1", 10249))
    assert config.check(config.ProxyConfig(healthz_bind_address="[::]:10300"), ["iptables"]).healthz == ("::", 10300)
