"""The node-port throughput benchmark's pure parts: the iperf3 command, the
check of whom the server saw, the summary and ratio, and the report."""
import json
import subprocess

import pytest

from netplane.bench import throughput as tp

POD = "10.244.2.2"


def _iperf(bps: float, remote: str, local: str = POD, retransmits: int = 3) -> dict:
    """iperf3 -J --get-server-output's answer, as far as the benchmark reads it."""
    return {"start": {"connected": [{"local_host": "192.168.200.2", "remote_host": "192.168.200.11"}]},
            "end": {"sum_received": {"bits_per_second": bps},
                    "sum_sent": {"retransmits": retransmits, "bytes": int(bps * 5 / 8)},
                    "cpu_utilization_percent": {"host_total": 40.0, "remote_total": 60.0}},
            "server_output_json": {"start": {"connected": [{"local_host": local, "remote_host": remote}]}}}


def test_the_command_and_the_cases_addresses():
    assert tp.iperf_argv("192.168.200.11", 32601, 5, 1) == [
        "iperf3", "-c", "192.168.200.11", "-p", "32601", "-t", "5", "-O", "1", "-J", "--get-server-output"]
    assert tp.iperf_argv(POD, 5201, 5, 1, "192.168.200.3")[3:7] == ["-p", "5201", "-B", "192.168.200.3"]
    assert tp.case_address("nodeport", POD) == ("192.168.200.11", tp.NODE_PORT, "192.168.200.11", None)
    assert tp.case_address("direct", POD) == (POD, tp.PORT, "192.168.200.2", None)
    assert tp.case_address("via-node1", POD) == (POD, tp.PORT, "192.168.200.3", "192.168.200.3")


def test_a_sample_must_have_reached_the_pod_and_show_whom_it_saw():
    s = tp.parse_sample(_iperf(9.5e9, "::ffff:192.168.200.11", "::ffff:" + POD), POD, "192.168.200.11")
    assert s == {"bps": 9.5e9, "retransmits": 3, "cpu_client_pct": 40.0, "cpu_server_pct": 60.0,
                 "server_saw": ["192.168.200.11", POD]}
    with pytest.raises(RuntimeError, match="saw 192.168.200.2 -> 10.244.2.2, not 192.168.200.11"):
        tp.parse_sample(_iperf(1e9, "192.168.200.2"), POD, "192.168.200.11")       # not SNATed
    with pytest.raises(RuntimeError, match="saw None -> None"):
        tp.parse_sample({**_iperf(1e9, "x"), "server_output_json": None}, POD, "x")   # a server without -J
    with pytest.raises(RuntimeError, match="unable to connect"):
        tp.parse_sample({"error": "unable to connect to server"}, POD, "x")


class FakeLab:
    """lab.run as the sample sees it: node1's eth0 counters and one iperf3 answer."""

    def __init__(self, answer: dict, crossed: int):
        self.answer, self.rx, self.crossed, self.argv = answer, 1000, crossed, None

    def run(self, where, argv, **kwargs):
        if argv[0] == "ip":
            assert where == "node1"
            out = json.dumps([{"stats64": {"rx": {"bytes": self.rx}}}])
            self.rx += self.crossed
            return subprocess.CompletedProcess(argv, 0, out, "")
        assert where == "client"
        self.argv = argv
        return subprocess.CompletedProcess(argv, 0, json.dumps(self.answer), "")


def test_a_sample_via_node1_must_have_crossed_node1():
    answer = _iperf(8e9, "192.168.200.3")
    sent = answer["end"]["sum_sent"]["bytes"]
    lab = FakeLab(answer, sent + 5000)
    s = tp.sample(lab, "via-node1", POD, 5, 1)
    assert s["node1_rx_bytes"] == sent + 5000 and s["sent_bytes"] == sent and s["bps"] == 8e9
    assert lab.argv[lab.argv.index("-B") + 1] == "192.168.200.3"
    with pytest.raises(RuntimeError, match="did not cross it"):
        tp.sample(FakeLab(answer, sent // 2), "via-node1", POD, 5, 1)
    assert tp.sample(FakeLab(_iperf(9e9, "192.168.200.2"), 0), "direct", POD, 5, 1)["node1_rx_bytes"] == 0
    with pytest.raises(RuntimeError, match="^nodeport .*saw 192.168.200.2"):
        tp.sample(FakeLab(_iperf(9e9, "192.168.200.2"), 10**12), "nodeport", POD, 5, 1)


def _round(nodeport_gbps: float, direct_gbps: float, via_gbps: float | None = None) -> dict:
    out = {"nodeport": tp.parse_sample(_iperf(nodeport_gbps * 1e9, "192.168.200.11"), POD, "192.168.200.11"),
           "direct": tp.parse_sample(_iperf(direct_gbps * 1e9, "192.168.200.2", retransmits=0), POD,
                                     "192.168.200.2")}
    if via_gbps:
        out["via-node1"] = tp.parse_sample(_iperf(via_gbps * 1e9, "192.168.200.3"), POD, "192.168.200.3")
    return out


def test_the_ratio_is_of_the_medians_with_the_same_round_spread():
    s = tp.summarise([_round(9, 10), _round(8, 10), _round(12, 12)])
    assert s["nodeport"]["median_gbps"] == pytest.approx(9) and s["nodeport"]["spread_gbps"] == pytest.approx([8, 12])
    assert s["direct"]["median_gbps"] == pytest.approx(10) and s["direct"]["retransmits"] == 0
    assert s["ratio"]["value"] == pytest.approx(0.9) and s["ratio"]["spread"] == pytest.approx([0.8, 1.0])
    assert s["ratio"]["ok"] is True and s["ratio"]["goal"] == tp.GOAL
    assert tp.summarise([_round(8, 10)])["ratio"]["ok"] is False
    assert "nodeport_over_via" not in s


def test_the_hops_without_the_service_split_the_ratio_in_two():
    s = tp.summarise([_round(9, 10, 9.5), _round(8, 10, 9), _round(12, 12, 11)])
    assert s["via-node1"]["median_gbps"] == pytest.approx(9.5)
    assert s["nodeport_over_via"]["value"] == pytest.approx(9 / 9.5) and "goal" not in s["nodeport_over_via"]
    assert s["via_over_direct"]["value"] == pytest.approx(0.95)
    assert s["via_over_direct"]["spread"] == pytest.approx([0.9, 0.95])
    assert s["ratio"]["value"] == pytest.approx(0.9) and s["ratio"]["of"] == ["nodeport", "direct"]


def _report() -> dict:
    rounds = [_round(9, 10, 9.5), _round(8, 10, 9), _round(12, 12, 11)]
    row = {"mode": "ebpf", "server_ip": POD, "first_sync_s": 2.5, "rounds": rounds, "summary": tp.summarise(rounds),
           "before_proxy": {"rounds": [], **tp.gbps_summary([r["direct"] for r in rounds])},
           "loadavg": [0.5, 2.0], "kernel": {}, "log_errors": []}
    return {"benchmark": tp.NAME, "when": "2026-12-01 10:00:00",
            "machine": {"cpus": 2, "kernel": "6.x", "iperf3": "iperf 3.12", "tree": "t at abc"},
            "params": {"modes": ["ebpf"], "services": 100, "rounds": 3, "seconds": 5, "omit": 1,
                       "lab": "2 nodes, routed, 1 pod per node", "service": "10.96.255.253:5201",
                       "node_port": tp.NODE_PORT, "proxy_node": "node1", "client": "192.168.200.2", "goal": tp.GOAL},
            "results": [row, {**row, "mode": "nftables", "before_proxy": None}]}


def test_the_report(tmp_path):
    report = _report()
    rows = tp.table(report)
    assert rows[2] == ("| ebpf | 10.00 (10.00..12.00) | 9.00 (8.00..12.00) | **0.900** (0.800..1.000) | >= 0.9 | PASS | "
                       "10.00 (10.00..12.00) | 0 / 3 |")
    assert rows[3].startswith("| nftables |") and "| PASS | - | 0 / 3 |" in rows[3]
    md = tp.markdown(report)
    assert md.startswith("# Throughput through a node port from outside")
    assert "-t 5 -O 1 -J --get-server-output" in md and "nodePort 32601" in md
    assert "per-round Gbit/s nodeport 9.00, 8.00, 12.00; direct 10.00, 10.00, 12.00; via-node1 9.50, 9.00, 11.00" in md
    assert tp.via_table(report)[2] == "| ebpf | 9.50 (9.00..11.00) | **0.947** (0.889..1.091) | **0.950** (0.900..0.950) |"
    assert "binds the client's second address (192.168.200.3)" in md
    assert "load average before and after 0.50, 2.00" in md
    paths = tp.write(report, tmp_path)
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(paths["json"].read_text())["results"][0]["summary"]["ratio"]["ok"] is True


def test_the_command_line():
    args = tp.parse_args(["--modes", "nftables", "--rounds", "3"])
    assert args.modes == ["nftables"] and args.rounds == 3 and args.seconds == 5 and args.services == 100
    for bad in (["--modes", "nope"], ["--rounds", "0"], ["--omit", "-1"]):
        with pytest.raises(SystemExit):
            tp.parse_args(bad)
