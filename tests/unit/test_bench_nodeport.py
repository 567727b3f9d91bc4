"""The first-packet benchmark's pure parts, with the targets from outside
through a node port (benchmarks/proxy_nodeport.py): addresses and expected
answers, manifests, statistics, the ratios within and across modes, the
report, and the worker's check of who answered."""
import importlib.util
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from netplane.bench import first_packet as fp
from netplane.bench.programming import filler_objects
from netplane.kube import manifests

ROOT = Path(__file__).resolve().parents[2]
SERVER_IP = "10.244.2.2"


def test_targets_from_outside_go_to_the_nodes_port_or_straight_to_the_pod():
    assert fp.node_ip("node1") == "192.168.200.11" and fp.node_ip("node3") == "192.168.200.13"
    assert fp.address("nodeport-small", SERVER_IP) == ("client", "192.168.200.11", fp.NODE_PORT,
                                                       "node2-pod1 192.168.200.11\n")
    assert fp.address("nodeport-large", SERVER_IP) == ("client", "192.168.200.13", fp.NODE_PORT,
                                                       "node2-pod1 192.168.200.13\n")
    assert fp.address("direct-client", SERVER_IP) == ("client", SERVER_IP, fp.POD_PORT, "node2-pod1 192.168.200.2\n")


def test_the_pod_targets_are_unchanged():
    assert fp.address("vip-small", SERVER_IP) == ("node1-pod1", fp.TARGET_IP, fp.TARGET_PORT, "node2-pod1")
    assert fp.address("vip-large", SERVER_IP) == ("node3-pod1", fp.TARGET_IP, fp.TARGET_PORT, "node2-pod1")
    assert fp.address("direct-node3", SERVER_IP) == ("node3-pod1", SERVER_IP, fp.POD_PORT, "node2-pod1")
    assert fp.NODEPORT_TARGETS[:4] == fp.TARGETS


def test_the_target_is_a_cluster_policy_node_port_with_its_one_endpoint_on_node2(tmp_path):
    svc, eps = fp.target_objects(SERVER_IP, fp.NODE_PORT)
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["externalTrafficPolicy"] == "Cluster"
    assert svc["spec"]["ports"][0]["nodePort"] == fp.NODE_PORT and svc["spec"]["clusterIP"] == fp.TARGET_IP
    assert [e["addresses"] for e in eps["endpoints"]] == [[SERVER_IP]] and eps["endpoints"][0]["nodeName"] == "node2"
    assert eps["ports"][0]["port"] == fp.POD_PORT
    plain = fp.target_objects(SERVER_IP)[0]
    assert plain["spec"]["type"] == "ClusterIP" and "nodePort" not in plain["spec"]["ports"][0]
    fp.write_cluster(tmp_path, filler_objects(3), [svc, eps])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["services.json", "zz-target.json"]
    loaded = manifests.load_file(str(tmp_path / "zz-target.json"))        # as the daemon's manifest source reads it
    assert loaded[0]["spec"]["ports"][0]["nodePort"] == fp.NODE_PORT
    other = fp.target_objects(SERVER_IP, 32601, name="zz-iperf", cluster_ip="10.96.255.253", port=5201, pod_port=5201)
    fp.write_cluster(tmp_path, [], other)
    assert json.loads((tmp_path / "zz-iperf.json").read_text())["items"][1]["ports"][0]["port"] == 5201


def test_every_fourth_filler_is_a_node_port_and_never_the_targets():
    fillers = filler_objects(10_000)
    before = json.dumps(fillers)
    made = fp.with_node_ports(fillers)
    assert json.dumps(fillers) == before                               # the objects given are not changed
    services = [o for o in made if o["kind"] == "Service"]
    ports = [s["spec"]["ports"][0].get("nodePort") for s in services]
    assert len(services) == 9_999 and len(made) == len(fillers)
    node_ports = [p for p in ports if p]
    assert len(node_ports) == fp.NODEPORT_MAX == len(set(node_ports))
    assert ports[0] == 30000 and ports[1] is None and ports[4] == 30001
    assert max(node_ports) < fp.NODE_PORT and all(30000 <= p <= 32767 for p in node_ports)
    assert all(s["spec"]["type"] == "NodePort" for s in services if s["spec"]["ports"][0].get("nodePort"))
    small = fp.with_node_ports(filler_objects(100))
    assert sum(1 for o in small if o["kind"] == "Service" and o["spec"]["type"] == "NodePort") == 25


def _rounds(medians):
    return [{"round": i + 1, "median_us": m, "p90_us": m * 1.2, "errors": {}} for i, m in enumerate(medians)]


def _targets(values: dict) -> dict:
    return {t: fp.summarise(_rounds(m)) for t, m in values.items()}


def test_ratios_are_of_the_medians_with_the_same_round_spread_and_a_limit_only_where_one_is_set():
    targets = _targets({"nodeport-small": [100, 110, 120], "nodeport-large": [105, 110, 150],
                        "direct-client": [100, 100, 100]})
    r = fp.ratios(targets)
    assert set(r) == {"nodeport_large_over_small", "nodeport_small_over_direct", "nodeport_large_over_direct"}
    x = r["nodeport_large_over_small"]
    assert x["value"] == pytest.approx(1.0) and x["spread"] == pytest.approx([1.0, 1.25])
    assert x["limit"] == 1.05 and x["ok"] is True
    assert r["nodeport_large_over_direct"]["value"] == pytest.approx(1.10)
    assert r["nodeport_large_over_direct"]["limit"] is None and r["nodeport_large_over_direct"]["ok"] is None
    pods = fp.ratios(_targets({t: [100, 100] for t in fp.TARGETS}))
    assert set(pods) == {"large_over_small", "vip_over_direct_node1", "vip_over_direct_node3"}


def _result(mode: str, scale: float, floor: float = 90.0) -> dict:
    values = {"vip-small": [100, 100, 100], "vip-large": [102, 102, 102], "direct-node1": [98, 98, 98],
              "direct-node3": [99, 99, 99], "nodeport-small": [110, 112, 114],
              "nodeport-large": [111, 113, 130], "direct-client": [floor] * 3}
    targets = _targets({t: [v * (scale if t.startswith("nodeport") else 1) for v in vs] for t, vs in values.items()})
    return {"mode": mode, "sizes": {"node1": 100, "node3": 10_000}, "targets": targets, "ratios": fp.ratios(targets),
            "before_proxy": {t: targets[t] for t in ("direct-node1", "direct-node3", "direct-client")},
            "first_sync_s": {"node1": 0.5, "node3": 2.0}, "kernel": {"node1": {}, "node3": {}},
            "log_errors": {"node1": [], "node3": ["ts=x level=error msg=boom"]}, "loadavg": [1.0, 1.9]}


def test_modes_are_compared_target_by_target_with_the_labs_difference_shown():
    rows = fp.across_modes([_result("ebpf", 1.0, floor=99.0), _result("nftables", 1.1)])
    by = {x["target"]: x for x in rows}
    assert list(by) == ["nodeport-small", "nodeport-large", "vip-small", "vip-large", "direct-client"]
    large = by["nodeport-large"]
    assert large["value"] == pytest.approx(1 / 1.1) and large["limit"] == 1.05 and large["ok"] is True
    assert large["services"] == 10_000 and by["nodeport-small"]["services"] == 100
    assert large["spread"] == pytest.approx([111 / (130 * 1.1), 130 / (111 * 1.1)])     # widest the spreads allow
    assert by["nodeport-small"]["limit"] is None and by["nodeport-small"]["ok"] is None
    assert by["direct-client"]["value"] == pytest.approx(1.1) and by["direct-client"]["services"] is None
    assert large["over_floor"] == pytest.approx(1 / 1.1 / 1.1)                          # the labs' 10% taken out
    assert fp.across_modes([_result("ebpf", 1.0)]) == []
    assert fp.across_modes([_result("ebpf", 1.2), _result("nftables", 1.0)])[1]["ok"] is False


def _report() -> dict:
    results = [_result("ebpf", 1.0), _result("nftables", 1.0), _result("iptables", 2.0)]
    return {"benchmark": fp.NODEPORT_NAME, "when": "2026-12-01 10:00:00",
            "machine": {"cpus": 2, "kernel": "6.x", "iptables": "v1.8.9", "nft": "v1.0.6", "tree": "t at abc"},
            "params": {"modes": ["ebpf", "nftables", "iptables"], "sizes": {"node1": 100, "node3": 10_000},
                       "rounds": 3, "connections": 400, "warmup": 50, "endpoints_per_service": 10,
                       "lab": "3 nodes, routed, 2 pods per node", "target": "10.96.255.254:80",
                       "targets": list(fp.NODEPORT_TARGETS), "limits": fp.LIMITS, "node_port": fp.NODE_PORT,
                       "client": "192.168.200.2", "nodeport_fillers": {"100": 25, "10000": 2500}},
            "results": results, "across_modes": fp.across_modes(results)}


def test_the_tables_name_every_target_ratio_and_verdict():
    report = _report()
    rows = fp.table(report)
    assert len(rows) == 2 + 3 * 7
    assert rows[2 + 6].startswith("| ebpf | direct-client: pod IP from outside (via node2) | none | 90 | 90..90 |")
    assert "| ebpf | nodeport-large: node3's IP : nodePort, from outside | 10,000 | 113 | 111..130 |" in rows[2 + 5]
    ratios = fp.ratio_table(report)
    assert "NodePort 10,000 / NodePort 100, from outside (limit 1.05)" in ratios[0]
    assert ratios[0].count("|") == 8 and ratios[1] == "|---" * 7 + "|"
    assert "**1.009** (1.009..1.140) ok" in ratios[2]
    modes = fp.modes_table(report)
    assert modes[3] == "| nodeport-large | 10,000 | 113 | 113 | **1.000** ok | 0.854..1.171 | 1.05 | 1.000 |"
    assert fp.modes_table({**report, "across_modes": []}) == []


def test_markdown_says_how_it_was_measured(tmp_path):
    md = fp.markdown(_report())
    assert md.startswith("# A new connection through a node port from outside")
    assert "nodePort 32600, externalTrafficPolicy Cluster" in md and "25 at 100, 2,500 at 10,000 Services" in md
    assert "the modes run one after the other in this one run, while the targets within a mode are " \
           "interleaved" in md
    assert "load average before and after 1.00, 1.90" in md and "node3 proxy log error: ts=x level=error" in md
    pods_only = {**_report(), "benchmark": fp.NAME}
    pods_only["params"] = {**pods_only["params"], "targets": list(fp.TARGETS)}
    assert fp.markdown(pods_only).startswith("# First packet through the node, by proxy mode")
    for report in (_report(), pods_only):
        paths = fp.write(report, tmp_path)
        assert paths["png"].read_bytes()[:4] == b"\x89PNG"
        assert json.loads(paths["json"].read_text())["benchmark"] == report["benchmark"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}.{e}" for n in (fp.NAME, fp.NODEPORT_NAME) for e in ("json", "md", "png"))


def test_the_plots_ratios_are_the_size_ones_per_mode_then_the_modes():
    labels = [label for label, _ in fp.ratio_bars(_report())]
    assert labels[:2] == ["ebpf\nNodePort large/small", "ebpf\nVIP large/small"]
    assert labels[-2:] == ["ebpf/nftables\nNodePort 100", "ebpf/nftables\nNodePort 10,000"]


def _cli(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_lines_share_one_parser():
    args = fp.parse_args(["--modes", "ebpf,nftables", "--sizes", "10,50", "--rounds", "5"])
    assert args.modes == ["ebpf", "nftables"] and args.sizes == (10, 50) and args.rounds == 5
    assert args.out == ROOT / "benchmarks" / "results"
    for bad in (["--modes", "ipvs2"], ["--sizes", "1,2,3"], ["--rounds", "0"]):
        with pytest.raises(SystemExit):
            fp.parse_args(bad)
    for name in ("proxy_nodeport", "proxy_first_packet"):
        assert callable(_cli(name).main)


def test_the_worker_counts_an_answer_from_the_wrong_pod_or_seen_address_as_an_error():
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            conn, peer = srv.accept()
            with conn:
                conn.sendall(f"node2-pod1 {peer[0]}\n".encode())

    threading.Thread(target=serve, daemon=True).start()
    proc = subprocess.Popen([sys.executable, "-m", "netplane.bench.first_packet", "worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        answers = []
        for expect in ("node2-pod1 127.0.0.1\n", "node2-pod1 192.168.200.11\n", "node1-pod1"):
            proc.stdin.write(json.dumps({"host": "127.0.0.1", "port": port, "n": 3, "expect": expect}) + "\n")
            proc.stdin.flush()
            answers.append(json.loads(proc.stdout.readline()))
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        stop.set()
        srv.close()
    assert len(answers[0]["us"]) == 3 and answers[0]["errors"] == {}
    assert answers[1] == {"us": [], "errors": {"wrong answer": 3}}
    assert answers[2]["errors"] == {"wrong answer": 3}


def test_a_proxy_that_keeps_failing_its_sync_is_seen_in_its_log(tmp_path):
    log = tmp_path / "proxy.log"
    assert fp.failed_syncs(str(log)) == []                             # no log yet
    log.write_text(
        'ts=2026-11-30T16:38:56.524Z level=info logger=netplane.proxy msg="serving /healthz"\n'
        'ts=2026-11-30T16:43:48.169Z level=error logger=netplane.proxy msg="full sync failed; retrying as a full '
        'sync" error="Traceback (most recent call last):\\n  File \\"x.py\\", line 1\\nAttributeError: no attach"\n'
        'ts=2026-11-30T16:43:49.000Z level=error logger=netplane.proxy msg="something else"\n')
    assert fp.failed_syncs(str(log)) == ['Traceback (most recent call last):\n  File "x.py", line 1\n'
                                         'AttributeError: no attach']


# -- the A/B variant (--ab): two modes in one lab, then the nodes swapped ----------------------

def _ab_lab(i: int, node_modes: dict, medians: dict) -> dict:
    targets = _targets(medians)
    return {"lab": i, "node_modes": node_modes, "targets": targets, "before_proxy": {"direct-client": targets["direct-client"]},
            "first_sync_s": {"node1": 6.0, "node3": 2.0}, "loadavg": [0.5, 0.7], "kernel": {"node1": {}, "node3": {}},
            "log_errors": {}}


def _ab_labs() -> list[dict]:
    # node3 is 10% slower than node1 whatever runs on it; the ebpf mode costs 2% more than nftables
    return [_ab_lab(1, {"node1": "ebpf", "node3": "nftables"},
                    {"nodeport-node1": [102, 102, 102], "nodeport-node3": [110, 110, 110], "direct-client": [90, 91, 92],
                     "vip-node1": [100, 104, 102], "vip-node3": [110, 110, 110]}),
            _ab_lab(2, {"node1": "nftables", "node3": "ebpf"},
                    {"nodeport-node1": [100, 100, 100], "nodeport-node3": [112.2, 112.2, 112.2],
                     "direct-client": [80, 80, 80], "vip-node1": [100, 100, 100], "vip-node3": [112.2, 112.2, 112.2]})]


def test_ab_swaps_the_nodes_and_names_targets_after_the_node_they_cross():
    assert fp.ab_layouts("ebpf", "nftables") == [{"node1": "ebpf", "node3": "nftables"},
                                                 {"node1": "nftables", "node3": "ebpf"}]
    assert fp.address("nodeport-node1", SERVER_IP) == fp.address("nodeport-small", SERVER_IP)
    assert fp.address("nodeport-node3", SERVER_IP) == fp.address("nodeport-large", SERVER_IP)
    assert fp.address("vip-node3", SERVER_IP) == ("node3-pod1", fp.TARGET_IP, fp.TARGET_PORT, "node2-pod1")
    assert fp.geomean([2.0, 8.0]) == pytest.approx(4.0)
    args = fp.parse_args(["--ab", "ebpf,nftables"])
    assert args.ab == ["ebpf", "nftables"] and args.sizes[1] == 10000 and args.rounds >= 7 and args.connections >= 400
    for bad in (["--ab", "ebpf"], ["--ab", "ebpf,ebpf"], ["--ab", "ebpf,ipvs2"]):
        with pytest.raises(SystemExit):
            fp.parse_args(bad)


def test_ab_ratio_is_a_over_b_per_lab_and_the_geometric_mean_cancels_the_nodes():
    summary = fp.ab_summary(_ab_labs(), "ebpf", "nftables")
    nodeport = summary["nodeport"]
    first, second = nodeport["per_lab"]
    assert first["nodes"] == {"ebpf": "node1", "nftables": "node3"} and second["nodes"] == {"ebpf": "node3", "nftables": "node1"}
    assert first["value"] == pytest.approx(102 / 110) and second["value"] == pytest.approx(112.2 / 100)
    assert first["median_us"] == {"ebpf": 102, "nftables": 110}
    assert nodeport["value"] == pytest.approx(1.02)             # node3's 10% gone, the mode's 2% left
    assert nodeport["limit"] == fp.LIMITS["modes"] and nodeport["ok"] is True
    vip = summary["vip"]
    assert vip["per_lab"][0]["spread"] == pytest.approx([100 / 110, 104 / 110])
    assert vip["spread"] == pytest.approx([(100 / 110 * 1.122) ** 0.5, (104 / 110 * 1.122) ** 0.5])
    assert vip["limit"] is None and vip["ok"] is None
    # a kind whose targets were not measured is left out
    labs = _ab_labs()
    for lab in labs:
        del lab["targets"]["vip-node1"]
    assert set(fp.ab_summary(labs, "ebpf", "nftables")) == {"nodeport"}


def test_ab_report_is_written_with_its_tables(tmp_path):
    report = {"benchmark": fp.AB_NAME, "when": "now", "machine": {"cpus": 2, "kernel": "6.x"},
              "params": {"ab": ["ebpf", "nftables"], "size": 10000, "rounds": 3, "connections": 400, "warmup": 50,
                         "endpoints_per_service": 10, "lab": "3 nodes", "target": "10.96.255.254:80",
                         "targets": list(fp.AB_TARGETS), "node_port": fp.NODE_PORT, "client": "192.168.200.2",
                         "nodeport_fillers": 2500},
              "labs": _ab_labs()}
    report["ab"] = fp.ab_summary(report["labs"], "ebpf", "nftables")
    report = json.loads(json.dumps(report))                      # as read back from the JSON
    paths = fp.write_ab(report, tmp_path)
    assert sorted(p.name for p in paths.values()) == ["proxy_nodeport_ab.json", "proxy_nodeport_ab.md",
                                                      "proxy_nodeport_ab.png"]
    text = paths["md"].read_text()
    assert "geometric mean of the labs" in text and "**1.020** ok" in text
    assert "nodeport-node3: node3's IP : nodePort, from outside (nftables)" in text
