"""The proxy's startup summary and warnings, built without a logger."""
import io
import json
import logging

import netaddr
import pytest

from netplane import fastpath
from netplane.logs import configure_logging
from netplane.proxy import config, modes, startup
from netplane.proxy.daemon import settings as settings_of
from netplane.proxy.model import Endpoint, PortName, ServicePort
from netplane.proxy.state import PortState


def configured(**values):
    cfg = config.merge(config.ProxyConfig(), {"node_name": "node-1", **values})
    checked = config.check(cfg, modes.names())
    return cfg, checked, settings_of(cfg, checked)


def test_summary_fields():
    cfg, checked, settings = configured(mode="iptables", node_ips=["192.0.2.10", "2001:db8::10"],
                                        cluster_cidrs=["10.244.0.0/16", "fd00:244::/56"],
                                        service_cidrs=["10.96.0.0/12"], manifests="/etc/netplane/manifests",
                                        healthz_bind_address="[::]:10256", metrics_bind_address="",
                                        sync_period=15.0)
    notice = startup.summary(cfg, checked, settings, iptables_backend="nft", fast_path="compiled")
    assert notice.level == logging.INFO and notice.msg == "proxy starting"
    assert notice.fields == {
        "mode": "iptables", "node_name": "node-1", "node_ips": ["192.0.2.10", "2001:db8::10"],
        "families": ["IPv4", "IPv6"], "cluster_cidrs": ["10.244.0.0/16", "fd00:244::/56"],
        "service_cidrs": ["10.96.0.0/12"], "nodeport_addresses": "all", "masquerade_all": False,
        "iptables_backend": "nft", "fast_path": "compiled", "healthz": "[::]:10256", "metrics": "off",
        "source": "manifests file", "source_path": "/etc/netplane/manifests", "sync_period_s": 15.0,
        "min_sync_period_s": 1.0, "full_sync_period_s": 3600.0}


def test_summary_outside_iptables_has_no_backend_and_names_the_source(tmp_path):
    cfg, checked, settings = configured(mode="nftables", node_ips=["192.0.2.10"], zone="a",
                                        nodeport_addresses=["192.0.2.0/24"], manifests=str(tmp_path))
    fields = startup.summary(cfg, checked, settings, fast_path="compiled").fields
    assert "iptables_backend" not in fields
    assert (fields["families"], fields["nodeport_addresses"], fields["zone"]) == (["IPv4"], ["192.0.2.0/24"], "a")
    assert (fields["source"], fields["source_path"]) == ("manifests directory", str(tmp_path))
    assert (fields["healthz"], fields["metrics"]) == ("0.0.0.0:10256", "127.0.0.1:10249")


@pytest.mark.parametrize("values, expected", [
    ({"in_cluster": True}, {"source": "in-cluster"}),
    ({"kubeconfig": "/etc/kubernetes/proxy.conf"}, {"source": "kubeconfig",
                                                    "source_path": "/etc/kubernetes/proxy.conf"}),
    ({}, {"source": "none"}),
])
def test_source(values, expected):
    cfg, _, _ = configured(**values)
    assert startup.source_of(cfg) == expected


def test_fast_path_follows_fastpath(monkeypatch):
    monkeypatch.delenv("NETPLANE_NO_EXTENSIONS", raising=False)
    compiled = {n: fastpath.is_compiled(fastpath.load(n)) for n in ("iptables_rules", "iptables_text")}
    expected = ("compiled" if all(compiled.values()) else "pure (extensions not built)" if not any(compiled.values())
                else "partly compiled: " + ", ".join(n for n, c in compiled.items() if c))
    assert startup.fast_path_in_use("iptables") == expected
    monkeypatch.setenv("NETPLANE_NO_EXTENSIONS", "1")
    assert startup.fast_path_in_use("ebpf") == "pure (NETPLANE_NO_EXTENSIONS=1)"


def test_fast_path_partly_compiled(monkeypatch):
    monkeypatch.setattr(fastpath, "is_compiled", lambda module: module.__name__.endswith("maglev"))
    monkeypatch.delenv("NETPLANE_NO_EXTENSIONS", raising=False)
    assert startup.fast_path_in_use("ebpf") == "partly compiled: maglev"


def test_the_summary_is_one_json_line():
    cfg, checked, settings = configured(node_ips=["192.0.2.10"])
    root, buffer = logging.getLogger(), io.StringIO()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", stream=buffer, format="json")
        startup.summary(cfg, checked, settings, iptables_backend="legacy").emit()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (entry,) = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert (entry["msg"], entry["node_ips"], entry["iptables_backend"]) == ("proxy starting", ["192.0.2.10"],
                                                                            "legacy")


# -- --cluster-cidr ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["iptables", "nftables", "ipvs"])
def test_no_cluster_cidr_warns_that_off_cluster_traffic_is_not_masqueraded(mode):
    cfg, _, settings = configured(mode=mode, node_ips=["192.0.2.10"])
    notice = startup.cluster_cidr_warning(cfg, settings)
    assert notice.level == logging.WARNING and notice.fields == {"mode": mode, "families": ["IPv4"]}
    assert notice.msg.startswith("clusterCIDR not specified, unable to distinguish between internal and external")
    assert "is not masqueraded" in notice.msg and "--cluster-cidr" in notice.msg


def test_cluster_cidr_missing_for_one_family_only():
    cfg, _, settings = configured(node_ips=["192.0.2.10", "2001:db8::10"], cluster_cidrs=["10.244.0.0/16"])
    assert startup.cluster_cidr_warning(cfg, settings).fields["families"] == ["IPv6"]


def test_no_warning_with_a_cluster_cidr_or_masquerade_all():
    cfg, _, settings = configured(node_ips=["192.0.2.10"], cluster_cidrs=["10.244.0.0/16"])
    assert startup.cluster_cidr_warning(cfg, settings) is None
    cfg, _, settings = configured(node_ips=["192.0.2.10"], masquerade_all=True)
    assert startup.cluster_cidr_warning(cfg, settings) is None


def test_ebpf_without_cluster_cidr_warns_about_overlay_devices_unless_named():
    cfg, _, settings = configured(mode="ebpf", node_ips=["192.0.2.10"], masquerade_all=True)
    notice = startup.cluster_cidr_warning(cfg, settings)
    assert "overlay devices" in notice.msg and "ebpf.devices" in notice.msg
    cfg, _, settings = configured(mode="ebpf", node_ips=["192.0.2.10"])
    cfg.mode_options["ebpf"] = modes.get("ebpf").options(devices="eth0,flannel.1")
    assert startup.cluster_cidr_warning(cfg, settings) is None


# -- br_netfilter ------------------------------------------------------------------------------

def proc(tmp_path, **values):
    bridge = tmp_path / "net" / "bridge"
    bridge.mkdir(parents=True)
    for name, value in values.items():
        (bridge / name.replace("_", "-")).write_text(f"{value}\n")
    return str(tmp_path)


@pytest.mark.parametrize("mode", ["iptables", "nftables", "ipvs"])
def test_br_netfilter_not_loaded(tmp_path, mode):
    (notice,) = startup.bridge_warnings(mode, (4, 6), proc_root=str(tmp_path))
    assert notice.msg.startswith("br_netfilter is not loaded: pods on the same bridge cannot reach each other "
                                 "through Services")
    assert f"the {mode} mode's NAT" in notice.msg and "modprobe br_netfilter" in notice.msg


def test_bridge_nf_call_off_per_family(tmp_path):
    root = proc(tmp_path, bridge_nf_call_iptables=1, bridge_nf_call_ip6tables=0)
    (notice,) = startup.bridge_warnings("iptables", (4, 6), proc_root=root)
    assert notice.fields == {"mode": "iptables", "family": "IPv6", "sysctl": "net.bridge.bridge-nf-call-ip6tables"}
    assert startup.bridge_warnings("iptables", (4,), proc_root=root) == []


def test_bridge_nf_call_on_is_quiet(tmp_path):
    root = proc(tmp_path, bridge_nf_call_iptables=1, bridge_nf_call_ip6tables=1)
    assert startup.bridge_warnings("nftables", (4, 6), proc_root=root) == []


def test_ebpf_does_not_need_br_netfilter(tmp_path):
    assert startup.bridge_warnings("ebpf", (4, 6), proc_root=str(tmp_path)) == []


def test_warnings_gathers_both(tmp_path):
    cfg, _, settings = configured(node_ips=["192.0.2.10"])
    found = startup.warnings(cfg, settings, proc_root=proc(tmp_path, bridge_nf_call_iptables=0))
    assert [n.msg.split(" ")[0] for n in found] == ["clusterCIDR", "net.bridge.bridge-nf-call-iptables"]
    cfg, _, settings = configured(node_ips=["192.0.2.10"], cluster_cidrs=["10.244.0.0/16"])
    assert startup.warnings(cfg, settings, proc_root=proc(tmp_path / "on", bridge_nf_call_iptables=1)) == []


# -- the node name ---------------------------------------------------------------------------

def ports(*nodes_per_port) -> dict:
    out = {}
    for i, nodes in enumerate(nodes_per_port):
        name = PortName("default", f"svc{i}", "http")
        port = ServicePort(name, "TCP", 80, (netaddr.IPAddress(f"10.96.0.{i + 1}"),))
        out[name] = PortState(port, tuple(Endpoint(netaddr.IPAddress(f"10.244.{i}.{j + 1}"), 8080, node=n)
                                          for j, n in enumerate(nodes)))
    return out


def test_node_name_matching_no_endpoint_warns():
    notice = startup.node_name_warning(ports(["node-a", "node-b"], ["node-c"]), "node-1.example.com")
    assert notice.level == logging.WARNING
    assert notice.fields == {"node_name": "node-1.example.com", "endpoint_nodes": ["node-a", "node-b", "node-c"],
                             "endpoint_node_count": 3}
    assert "--hostname-override" in notice.msg and "Local traffic policy" in notice.msg


def test_node_name_found_or_nothing_to_compare():
    assert startup.node_name_warning(ports(["node-a"], ["node-1"]), "node-1") is None
    assert startup.node_name_warning(ports([], []), "node-1") is None            # no endpoints at all
    assert startup.node_name_warning(ports(["", ""]), "node-1") is None          # endpoints without nodeName
    assert startup.node_name_warning({}, "node-1") is None


def test_node_name_warning_quotes_a_few_nodes():
    notice = startup.node_name_warning(ports([f"n{i:02}" for i in range(12)]), "x")
    assert notice.fields["endpoint_nodes"] == ["n00", "n01", "n02", "n03", "n04"]
    assert notice.fields["endpoint_node_count"] == 12
