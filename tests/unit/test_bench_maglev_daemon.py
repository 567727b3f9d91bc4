"""The daemon-level Maglev benchmark's pure parts: the manifests it writes,
the log lines it reads, and its summary (no root, no daemon)."""
from netplane.bench import maglev_daemon as md

LINE_FULL = ("ts=x level=info logger=netplane.proxy msg=\"IPv4 eBPF maps: full sync in 4200 ms (compile 300 ms, "
             "110000 entries and 10000 Maglev tables written in 3900 ms, of which 2190 ms computing tables)\"")
LINE_PARTIAL = "msg=\"IPv4 eBPF maps: 1 Maglev table(s) computed in 0.4 ms and rewritten, 0 deleted\""


def test_services_are_node_ports_and_the_change_drops_one_endpoint_of_the_first():
    objs = md.objects(3, 4)
    assert [o["kind"] for o in objs] == ["Service", "EndpointSlice"] * 3
    assert [o["spec"]["ports"][0]["nodePort"] for o in objs[::2]] == [30000, 30001, 30002]
    assert all(o["spec"]["type"] == "NodePort" for o in objs[::2])
    after = md.changed(3, 4)
    assert len(after[1]["endpoints"]) == 3 and after[2:] == objs[2:]


def test_the_daemons_log_lines_are_what_the_mode_logs():
    full = md.FULL.search(LINE_FULL)
    assert full and [int(x) for x in full.groups()] == [4200, 10000, 3900, 2190]
    partial = md.PARTIAL.search(LINE_PARTIAL)
    assert partial and partial.groups() == ("1", "0.4")


def test_summary_and_report():
    runs = [{"path": p, "full_sync_s": s, "tables": 10, "compute_s": c, "changed_tables": 1,
             "changed_compute_ms": 0.3, "memory_bytes": 655_360}
            for p, s, c in (("compiled", 4.0, 2.0), ("pure", 50.0, 48.0), ("compiled", 4.2, 2.2),
                            ("pure", 52.0, 50.0))]
    s = md.summarize(runs)
    assert s["compiled"]["compute_s"] == 2.1 and s["pure"]["compute_s"] == 49.0
    assert round(s["ratio"], 2) == round(49.0 / 2.1, 2) and s["changed_tables"] == [1]
    report = {"when": "now", "machine": {"cpus": 2, "kernel": "k"}, "runs": runs, "summary": s,
              "args": {"services": 10, "endpoints": 10, "rounds": 2}}
    text = md.markdown(report)
    assert "23.3x" in text and "computed [1] table(s)" in text
