"""The programming benchmark's pure parts: the manifests it writes, its
statistics, what it reads from /proc and the daemon's log, and its report."""
import importlib.util
import json
import socket
import threading
from pathlib import Path

import pytest

from netplane.bench import probe
from netplane.bench import programming as bench
from netplane.kube import manifests

ROOT = Path(__file__).resolve().parents[2]


def test_fillers_are_n_minus_one_services_of_ten_endpoints_one_in_ten_on_this_node():
    objs = bench.filler_objects(5)
    services = [o for o in objs if o["kind"] == "Service"]
    slices = [o for o in objs if o["kind"] == "EndpointSlice"]
    assert len(services) == len(slices) == 4
    for s in slices:
        assert len(s["endpoints"]) == bench.ENDPOINTS
        assert sum(e["nodeName"] == bench.NODE_NAME for e in s["endpoints"]) == 1
        assert s["ports"] == [{"name": "http", "port": bench.POD_PORT}]


def test_filler_addresses_are_unique_and_never_the_targets_or_the_pods():
    ips = {bench.filler_ip(i) for i in range(30000)}
    assert len(ips) == 30000 and bench.TARGET_IP not in ips
    eps = {bench.filler_endpoint(e)[0] for e in range(30000 * bench.ENDPOINTS)}
    assert len(eps) == 30000 * bench.ENDPOINTS and not eps & set(bench.PODS.values())


def test_manifests_are_a_list_file_and_the_targets_own_file(tmp_path):
    target = bench.write_manifests(tmp_path, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [bench.FILLER_FILE, bench.TARGET_FILE]
    fillers = json.loads((tmp_path / bench.FILLER_FILE).read_text())
    assert fillers["kind"] == "List" and len(fillers["items"]) == 4
    loaded = manifests.load_file(str(target))                  # as the daemon's manifest source reads it
    svc, eps = loaded
    assert svc["metadata"]["name"] == bench.TARGET and svc["spec"]["clusterIP"] == bench.TARGET_IP
    assert svc["spec"]["ports"] == [{"name": "http", "port": bench.TARGET_PORT}]
    assert eps["endpoints"][0]["addresses"] == [bench.PODS["pod-a"]]
    assert eps["endpoints"][0]["nodeName"] == bench.NODE_NAME
    assert len(manifests.load_file(str(tmp_path / bench.FILLER_FILE))) == 4


def test_a_change_is_an_atomic_rewrite_that_moves_the_endpoint(tmp_path):
    target = bench.write_manifests(tmp_path, 1)
    before = target.stat().st_ino
    bench.atomic_write_json(target, bench.as_list(bench.target_objects(bench.other("pod-a"))))
    assert target.stat().st_ino != before                      # replaced, never written in place
    assert not list(tmp_path.glob(".*"))                       # no temp file left behind
    eps = manifests.load_file(str(target))[1]
    assert eps["endpoints"][0]["addresses"] == [bench.PODS["pod-b"]]
    assert bench.other("pod-b") == "pod-a"


def test_percentiles_interpolate_between_ranks():
    values = list(range(10, 0, -1))                            # 1..10, unsorted
    assert bench.percentile(values, 50) == 5.5
    assert bench.percentile(values, 90) == pytest.approx(9.1)
    assert bench.percentile(values, 0) == 1 and bench.percentile(values, 100) == 10
    assert bench.percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        bench.percentile([], 50)


def test_summary():
    s = bench.summary([3.0, 1.0, 2.0])
    assert s == {"n": 3, "min": 1.0, "p50": 2.0, "p90": pytest.approx(2.8), "max": 3.0, "mean": 2.0}
    assert bench.summary([]) == {"n": 0}


LOG = """ts=2026-11-30T11:31:10.215Z level=info logger=netplane.proxy msg="proxy running" mode=iptables node=node1
ts=2026-11-30T11:31:10.382Z level=info logger=netplane.proxy msg="sync done" sync=full duration_ms=166.4 service_ports=100
ts=2026-11-30T11:31:13.232Z level=info logger=netplane.proxy msg="sync done" sync=partial duration_ms=17.7 changed=1 \
service_ports=100 services=default/web:http
ts=2026-11-30T11:31:14.232Z level=info logger=netplane.proxy msg="sync done" sync=partial duration_ms=9 changed=0 \
service_ports=100
"""


def test_sync_lines_are_read_from_the_daemons_log():
    assert bench.parse_sync_lines(LOG) == [{"full": True, "ports": None, "ms": 166.4},
                                           {"full": False, "ports": 1, "ms": 17.7},
                                           {"full": False, "ports": 0, "ms": 9.0}]


def test_the_log_is_read_in_whole_lines(tmp_path):
    path = tmp_path / "log"
    path.write_text(LOG[:LOG.index("partial") + 10])           # the third line half written
    tail = bench.LogTail(path)
    assert [x["full"] for x in tail.read()] == [True]
    path.write_text(LOG)
    assert [x["ports"] for x in tail.read()] == [1, 0]
    assert tail.read() == [] and len(tail.lines) == 3


def test_proc_fields():
    stat = "4242 (net (plane) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 3 0 100 0 0"
    assert bench.cpu_ticks(stat) == 325
    assert bench.rss_kib("Name:\tnetplane\nVmRSS:\t   61440 kB\nVmSwap:\t0 kB\n") == 61440
    with pytest.raises(ValueError):
        bench.rss_kib("Name:\tzombie\n")
    assert bench.cpu_percent(50, 10.0, 100) == 5.0
    assert bench.cpu_percent(1, 0.0, 100) == 0.0


def test_growth_is_last_sample_against_first():
    assert bench.growth_percent([(0, 100.0), (100, 101.0), (200, 104.0)]) == pytest.approx(4.0)
    assert bench.growth_percent([(0, 100.0)]) is None


def test_the_daemon_is_started_as_a_user_would_with_the_modes_flags_last(tmp_path):
    mode = bench.Mode("ipvs", ("--ipvs-scheduler", "rr"))
    argv = bench.daemon_argv("/venv/bin/netplane", mode, tmp_path / "m", tmp_path / "log", ("--sync-period", "1s"))
    assert argv[:4] == ["/venv/bin/netplane", "proxy", "--mode", "ipvs"]
    assert argv[-4:] == ["--ipvs-scheduler", "rr", "--sync-period", "1s"]
    assert "--min-sync-period" not in argv                     # the default, unless a run asks
    assert argv[argv.index("--manifests") + 1] == str(tmp_path / "m")
    assert argv[argv.index("--metrics-bind-address") + 1] == "127.0.0.1:10249"


def test_a_mode_is_a_name_and_flags_with_an_optional_kernel_check():
    assert bench.mode("iptables").kernel_check is bench.iptables_check
    m = bench.mode("ebpf", ["--x"])
    assert m.kernel_check is None and m.describe() == {"mode": "ebpf", "flags": ["--x"]}


def _report(with_soak: bool = True) -> dict:
    row = {"mode": "iptables", "flags": [], "services": 1000, "full_sync_s": 1.25,
           "changes": {"latency_ms": [500.0, 1500.0, 900.0], "summary": bench.summary([500.0, 1500.0, 900.0]),
                       "sync_ms": [20.0]},
           "idle": {"cpu_pct": 0.3}, "idle_syncs": {"summary": bench.summary([80.0, 90.0])},
           "kernel": {"rules": 12001}}
    if with_soak:
        row["soak"] = {"rss_first_mb": 60.0, "rss_last_mb": 61.5, "partial_syncs": 1000, "growth_pct": 2.5,
                       "rss_mb": [(0, 60.0), (1000, 61.5)]}
    return {"when": "2026-11-30 12:00:00", "machine": {"cpus": 2, "kernel": "6.x", "iptables": "v1.8.9"},
            "params": {"changes": 3, "gap": 2.0, "jitter": 1.0, "probe_interval": 0.001, "idle_window": 30.0,
                       "idle_sync_window": 10.0, "soak_flags": ["--sync-period", "200ms"]},
            "results": [row, {**row, "services": 10000, "soak": None}] if with_soak else [row]}


def test_table_row():
    report = _report()
    assert bench.table_row(report["results"][0]) == \
        "| iptables | 1,000 | 1.2 | 900 | 1,380 | 1,500 | 85.0 | 0.3 | 60.0 | 60.0 | 61.5 | 1,000 | +2.5 |"
    assert bench.table_row(report["results"][1]).endswith("| - | - | - | - | - |")    # no soak
    flagged = {**report["results"][0], "flags": ["--iptables-layout", "kube-proxy"]}
    assert bench.table_row(flagged).startswith("| iptables --iptables-layout kube-proxy | 1,000 |")


def test_markdown_has_the_table_and_every_sample():
    md = bench.render_markdown(_report())
    assert md.splitlines()[4:6] == bench.TABLE
    assert "change latencies (ms) 500, 1,500, 900" in md
    assert '{"rules": 12001}' in md
    assert md.count("| iptables |") == 2


def test_write_report(tmp_path):
    paths = bench.write_report(_report(), tmp_path, "proxy_programming_test")
    assert json.loads(paths["json"].read_text())["results"][0]["services"] == 1000
    assert paths["md"].read_text().startswith("# ")
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_the_prober_names_the_pod_that_answered():
    assert probe.classify(b"pod-b 192.168.200.11\n") == "pod-b"
    assert probe.classify(b"") == "!empty"
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def answer():
        conn, peer = srv.accept()
        with conn:
            conn.sendall(f"pod-a {peer[0]}\n".encode())

    t = threading.Thread(target=answer)
    t.start()
    assert probe.once("127.0.0.1", port, 2.0) == "pod-a"
    t.join()
    srv.close()
    assert probe.once("127.0.0.1", port, 2.0) == "!refused"


def test_the_command_line_takes_one_soak_or_one_per_size():
    spec = importlib.util.spec_from_file_location("proxy_programming", ROOT / "benchmarks" / "proxy_programming.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = cli.parse_args(["--sizes", "1000,10000", "--soak", "1000,100", "--tag", "before"])
    assert args.sizes == [1000, 10000] and args.soak == [1000, 100] and args.tag == "before"
    with pytest.raises(SystemExit):
        cli.parse_args(["--sizes", "1,2,3", "--soak", "1,2"])


def test_two_builds_side_by_side_give_ratios():
    def row(build, n, p50, full):
        return {"build": build, "mode": "iptables", "services": n, "full_sync_s": full,
                "changes": {"summary": {"p50": p50}}}
    lines = bench.ratio_lines([row("before", 1000, 800.0, 0.8), row("after", 1000, 20.0, 0.6),
                               row("before", 10000, 1500.0, 13.8), row("after", 10000, 150.0, 6.9)])
    assert lines[0].startswith("Ratios, after / before")
    assert lines[4] == "| iptables | 1,000 | 0.750 | 0.025 | - | - |"
    assert lines[5] == "| iptables | 10,000 | 0.500 | 0.100 | - | - |"
    assert bench.ratio_lines([row("", 1000, 1.0, 1.0)]) == []
