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
            "end": {"sum_received": {"bits_per_second": bps, "bytes": int(bps * 5 / 8) - 10**6},
                    "sum_sent": {"retransmits": retransmits, "bytes": int(bps * 5 / 8)},
                    "cpu_utilization_percent": {"host_total": 40.0, "remote_total": 60.0}},
            "server_output_json": {"start": {"connected": [{"local_host": local, "remote_host": remote}]}}}


def test_the_command_and_the_cases_addresses():
    assert tp.iperf_argv("192.168.200.11", 32601, 5, 1) == [
        "iperf3", "-c", "192.168.200.11", "-p", "32601", "-t", "5", "-O", "1", "-J", "--get-server-output"]
    assert tp.iperf_argv(POD, 5201, 5, 1, "192.168.200.3")[3:7] == ["-p", "5201", "-B", "192.168.200.3"]
    assert tp.case_address("nodeport", POD) == ("192.168.200.11", tp.NODE_PORT, ("192.168.200.11",), None)
    assert tp.case_address("direct", POD) == (POD, tp.PORT, ("192.168.200.2",), None)
    assert tp.case_address("via-node1", POD) == (POD, tp.PORT, ("192.168.200.3",), "192.168.200.3")
    # node2's own node port: the client kept (eBPF) or masqueraded to node2 (its bridge address, or its own)
    assert tp.case_address("nodeport-local", POD) == (
        "192.168.200.12", tp.NODE_PORT, ("192.168.200.2", "10.244.2.1", "192.168.200.12"), None)
    assert tp.pod_gateway("node2") == "10.244.2.1"


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


def test_through_node2s_own_node_port_the_server_may_see_the_client_or_node2_but_must_be_the_pod():
    seen = tp.case_address("nodeport-local", POD)[2]
    for remote in ("192.168.200.2", "10.244.2.1", "::ffff:192.168.200.12"):
        assert tp.parse_sample(_iperf(9e9, remote), POD, seen)["server_saw"] == [remote.removeprefix("::ffff:"), POD]
    with pytest.raises(RuntimeError, match="saw 192.168.200.11 -> 10.244.2.2, not 192.168.200.2 or 10.244.2.1 or "):
        tp.parse_sample(_iperf(9e9, "192.168.200.11"), POD, seen)                  # node1's: not node2's own port
    with pytest.raises(RuntimeError, match="saw 192.168.200.2 -> 10.244.1.2"):
        tp.parse_sample(_iperf(9e9, "192.168.200.2", local="10.244.1.2"), POD, seen)   # another pod served


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
    sent, got = answer["end"]["sum_sent"]["bytes"], answer["end"]["sum_received"]["bytes"]
    lab = FakeLab(answer, sent + 5000)
    s = tp.sample(lab, "via-node1", POD, 5, 1)
    assert s["node1_rx_bytes"] == sent + 5000 and s["sent_bytes"] == sent and s["bps"] == 8e9
    assert s["received_bytes"] == got
    assert lab.argv[lab.argv.index("-B") + 1] == "192.168.200.3"
    # what the client wrote may never have gone out (its socket buffer at the end): the server's count holds
    assert tp.sample(FakeLab(answer, got + 10), "via-node1", POD, 5, 1)["node1_rx_bytes"] == got + 10
    with pytest.raises(RuntimeError, match="did not cross it"):
        tp.sample(FakeLab(answer, got - 1), "via-node1", POD, 5, 1)
    assert tp.sample(FakeLab(_iperf(9e9, "192.168.200.2"), 0), "direct", POD, 5, 1)["node1_rx_bytes"] == 0
    with pytest.raises(RuntimeError, match="^nodeport .*saw 192.168.200.2"):
        tp.sample(FakeLab(_iperf(9e9, "192.168.200.2"), 10**12), "nodeport", POD, 5, 1)


def test_direct_and_node2s_own_node_port_must_not_cross_node1():
    answer = _iperf(9e9, "192.168.200.2")
    got = answer["end"]["sum_received"]["bytes"]
    lab = FakeLab(answer, 3000)
    s = tp.sample(lab, "nodeport-local", POD, 5, 1)
    assert s["node1_rx_bytes"] == 3000 and lab.argv[1:5] == ["-c", "192.168.200.12", "-p", str(tp.NODE_PORT)]
    for kind in ("nodeport-local", "direct"):
        with pytest.raises(RuntimeError, match=f"^{kind}: node1's eth0 received .* the stream crossed it"):
            tp.sample(FakeLab(answer, got), kind, POD, 5, 1)


def _round(nodeport_gbps: float, direct_gbps: float, via_gbps: float | None = None,
           local_gbps: float | None = None, local_saw: str = "192.168.200.2") -> dict:
    out = {"nodeport": tp.parse_sample(_iperf(nodeport_gbps * 1e9, "192.168.200.11"), POD, "192.168.200.11"),
           "direct": tp.parse_sample(_iperf(direct_gbps * 1e9, "192.168.200.2", retransmits=0), POD,
                                     "192.168.200.2")}
    if via_gbps:
        out["via-node1"] = tp.parse_sample(_iperf(via_gbps * 1e9, "192.168.200.3"), POD, "192.168.200.3")
    if local_gbps:
        out["nodeport-local"] = tp.parse_sample(_iperf(local_gbps * 1e9, local_saw, retransmits=7), POD,
                                                tp.case_address("nodeport-local", POD)[2])
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
    assert "nodeport_local_over_direct" not in s


def test_node2s_own_node_port_against_direct_is_the_like_for_like_ratio_against_the_goal():
    s = tp.summarise([_round(9, 10, 9.5, 9.5), _round(8, 10, 9, 8.5), _round(12, 12, 11, 12)])
    assert s["nodeport-local"]["median_gbps"] == pytest.approx(9.5) and s["nodeport-local"]["retransmits"] == 7
    x = s["nodeport_local_over_direct"]
    assert x["of"] == ["nodeport-local", "direct"] and x["value"] == pytest.approx(0.95)
    assert x["spread"] == pytest.approx([0.85, 1.0]) and x["goal"] == tp.GOAL and x["ok"] is True
    assert s["ratio"]["value"] == pytest.approx(0.9) and s["ratio"]["ok"] is True    # the other one kept
    assert tp.summarise([_round(9, 10, None, 8.9)])["nodeport_local_over_direct"]["ok"] is False


def _report() -> dict:
    rounds = [_round(9, 10, 9.5, 9.5), _round(8, 10, 9, 8.5), _round(12, 12, 11, 12, "10.244.2.1")]
    row = {"mode": "ebpf", "server_ip": POD, "first_sync_s": {"node1": 2.5, "node2": 2.75}, "rounds": rounds,
           "summary": tp.summarise(rounds),
           "before_proxy": {"rounds": [], **tp.gbps_summary([r["direct"] for r in rounds])},
           "loadavg": [0.5, 2.0], "kernel": {"node1": {}, "node2": {"rules": 3}},
           "log_errors": {"node1": [], "node2": ["level=error msg=x"]}}
    return {"benchmark": tp.NAME, "when": "2026-12-01 10:00:00",
            "machine": {"cpus": 2, "kernel": "6.x", "iperf3": "iperf 3.12", "tree": "t at abc"},
            "params": {"modes": ["ebpf"], "services": 100, "rounds": 3, "seconds": 5, "omit": 1,
                       "lab": "2 nodes, routed, 1 pod per node", "service": "10.96.255.253:5201",
                       "node_port": tp.NODE_PORT, "proxy_node": "node1", "local_node": "node2",
                       "proxy_nodes": ["node1", "node2"], "client": "192.168.200.2", "goal": tp.GOAL},
            "results": [row, {**row, "mode": "nftables", "before_proxy": None}]}


def test_the_report(tmp_path):
    report = _report()
    rows = tp.table(report)
    assert "nodeport-local / direct: like for like" in rows[0] and "one node more" in rows[0]
    assert rows[2] == ("| ebpf | 10.00 (10.00..12.00) | 9.50 (8.50..12.00) | 9.00 (8.00..12.00) | "
                       "**0.950** (0.850..1.000) PASS | **0.900** (0.800..1.000) PASS | >= 0.9 | "
                       "10.00 (10.00..12.00) | 0 / 7 / 3 |")
    assert rows[3].startswith("| nftables |") and "| >= 0.9 | - | 0 / 7 / 3 |" in rows[3]
    md = tp.markdown(report)
    assert md.startswith("# Throughput through a node port from outside")
    assert "**nodeport-local / direct is the like-for-like comparison**" in md
    assert "crosses one node more than direct does" in md
    assert "-t 5 -O 1 -J --get-server-output" in md and "nodePort 32601" in md
    assert "`iperf3 -c 192.168.200.12 -p 32601` (nodeport-local)" in md
    assert ("per-round Gbit/s nodeport 9.00, 8.00, 12.00; nodeport-local 9.50, 8.50, 12.00; "
            "direct 10.00, 10.00, 12.00; via-node1 9.50, 9.00, 11.00") in md
    assert "through node2's node port the server saw 192.168.200.2, 10.244.2.1;" in md
    assert "first sync node1 2.5 s, node2 2.8 s;" in md and 'node2 {"rules": 3}' in md
    assert "  - proxy log error on node2: level=error msg=x" in md
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
