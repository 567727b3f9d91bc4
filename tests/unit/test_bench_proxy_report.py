"""`netplane bench proxy`'s pure side: the statistics, the report (ratios,
terminal, markdown, plots, files) and the comparison of two runs."""
import io
import json

import pytest
from rich.console import Console

from netplane.bench.proxy.metrics import BY_KEY
from netplane.bench.proxy import compare, report, stats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rec(subject: str, services: int, metric: str, values: list, rnd: int = 1, where: str = "host") -> dict:
    return {"subject": subject, "where": where, "services": services, "round": rnd, "metric": metric,
            "values": values}


def _results(scale: float = 1.0, extra: list | None = None) -> dict:
    """A small run: iptables and nftables on the host at 100 and 1,000 Services,
    kube-proxy-layout and the floor there, ipvs and the floor in the VM at 100;
    kube-proxy-layout does not finish its full sync at 1,000 and nftables fails there.
    Two rounds each; `scale` multiplies iptables' values (for the comparisons)."""
    samples = []
    host = {"iptables": 1.0 * scale, "nftables": 0.9, "kube-proxy-layout": 1.2}
    for rnd in (1, 2):
        for size in (100, 1000):
            for subject, f in host.items():
                if size == 1000 and subject != "iptables":
                    continue
                samples += [_rec(subject, size, "full_sync_s", [f * size / 100], rnd),
                            _rec(subject, size, "vip_first_us", [f * 800 + rnd, f * 820 + rnd], rnd),
                            _rec(subject, size, "conn_rate", [f * 5000 + rnd], rnd)]
            samples += [_rec("floor", size, "vip_first_us", [700 + rnd, 720 + rnd], rnd),
                        _rec("floor", size, "conn_rate", [6000 + rnd], rnd)]
        samples += [_rec("ipvs", 100, "vip_first_us", [3000 + rnd, 3100], rnd, "vm"),
                    _rec("ipvs", 100, "full_sync_s", [4.0 + rnd], rnd, "vm"),
                    _rec("floor", 100, "vip_first_us", [2000 + rnd, 2100], rnd, "vm")]
    samples += extra or []
    subjects = [{"name": n, "kind": k, "where": w, "description": f"{n} ({w})"} for n, k, w in (
        ("iptables", "mode", "host"), ("nftables", "mode", "host"), ("kube-proxy-layout", "reference", "host"),
        ("floor", "reference", "host"), ("ipvs", "mode", "vm"), ("floor", "reference", "vm"))]
    return {"benchmark": "netplane bench proxy", "format": 1, "when": "2026-11-30 22:40:00", "took_s": 171.3,
            "machine": {"kernel": "6.12.0", "cpus": 8, "tree": "abc1234"},
            "params": {"modes": ["iptables", "nftables", "ipvs"], "services": [100, 1000], "vm_services": [100],
                       "endpoints": 10, "repeat": 2, "quick": True, "cap_s": 120.0},
            "subjects": subjects, "samples": samples,
            "unfinished": [{"subject": "kube-proxy-layout", "where": "host", "services": 1000, "round": 1,
                            "step": "full sync", "cap_s": 120.0}],
            "failed": [{"subject": "nftables", "where": "host", "services": 1000, "round": 1,
                        "step": "first packet", "error": "connect: no route to host"}],
            "summary": stats.summaries(samples)}


# -- stats -------------------------------------------------------------------------------------------

def test_percentile_interpolates_between_ranks_like_numpy():
    assert stats.percentile([3.0], 50) == 3.0
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert stats.percentile(list(range(101)), 99) == 99.0
    assert stats.percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert stats.percentile([1.0, 2.0, 3.0], 0) == 1.0 and stats.percentile([1.0, 2.0, 3.0], 100) == 3.0
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_summarise_pools_the_rounds_and_spreads_their_medians():
    s = stats.summarise([[1.0, 2.0, 3.0], [10.0, 20.0]])
    assert s["n"] == 5 and s["rounds"] == 2 and s["p50"] == 3.0
    assert (s["min"], s["max"], s["mean"]) == (1.0, 20.0, 7.2)
    assert s["spread"] == [2.0, 15.0]
    assert stats.summarise([[5.0], []])["rounds"] == 1        # an empty round has no median
    with pytest.raises(ValueError):
        stats.summarise([[], []])


def test_summaries_key_rows_by_machine_and_sizes_as_strings():
    samples = [_rec("ipvs", 100, "full_sync_s", [1.0]), _rec("ipvs", 100, "full_sync_s", [3.0], 2),
               _rec("ipvs", 100, "full_sync_s", [9.0], 1, "vm")]
    s = stats.summaries(samples)
    assert set(s) == {"ipvs", "ipvs@vm"}
    assert s["ipvs"]["100"]["full_sync_s"]["spread"] == [1.0, 3.0]
    assert s["ipvs@vm"]["100"]["full_sync_s"]["p50"] == 9.0


def test_ratio_of_p50s_with_the_widest_spread():
    a, b = stats.summarise([[10.0], [12.0]]), stats.summarise([[5.0], [4.0]])
    r = stats.ratio(a, b)
    assert r["value"] == pytest.approx(11.0 / 4.5)
    assert r["spread"] == [pytest.approx(10 / 5), pytest.approx(12 / 4)]
    assert stats.ratio(a, None) is None and stats.ratio(None, b) is None
    assert stats.ratio(a, stats.summarise([[0.0]])) is None


# -- report ------------------------------------------------------------------------------------------

def test_ratios_use_the_floor_of_the_same_machine_and_kube_proxy_on_the_host_only():
    res = _results()
    r = report.ratios(res)
    s = res["summary"]
    ipt = r["iptables"]["100"]
    assert ipt["vip_first_us"]["floor"] == stats.ratio(s["iptables"]["100"]["vip_first_us"],
                                                       s["floor"]["100"]["vip_first_us"])
    assert ipt["vip_first_us"]["kube-proxy"]["value"] == pytest.approx(
        s["iptables"]["100"]["vip_first_us"]["p50"] / s["kube-proxy-layout"]["100"]["vip_first_us"]["p50"])
    assert set(ipt["full_sync_s"]) == {"kube-proxy"}           # not a data path metric: no floor
    # the VM row meets the VM's floor, never the host's, nor kube-proxy
    vm = r["ipvs@vm"]["100"]
    assert vm["vip_first_us"] == {"floor": stats.ratio(s["ipvs@vm"]["100"]["vip_first_us"],
                                                       s["floor@vm"]["100"]["vip_first_us"])}
    assert vm["vip_first_us"]["floor"]["value"] == pytest.approx(3051 / 2051)
    assert "full_sync_s" not in vm                               # nothing to hold it against in the VM
    # kube-proxy-layout is held against the floor, not itself; the floors against nothing
    assert set(r["kube-proxy-layout"]["100"]["vip_first_us"]) == {"floor"}
    assert "floor" not in r and "floor@vm" not in r
    # at 1,000 kube-proxy-layout has nothing, so iptables has only its floor there
    assert set(r["iptables"]["1000"]["vip_first_us"]) == {"floor"}


def test_rows_put_the_modes_first_and_cells_say_what_happened():
    res = _results()
    assert report.rows(res) == ["iptables", "nftables", "kube-proxy-layout", "floor", "ipvs@vm", "floor@vm"]
    assert report.sizes(res) == ["100", "1000"]
    assert report.status(res, "kube-proxy-layout", "1000", "full_sync_s") == "did not finish in 120 s"
    assert report.status(res, "nftables", "1000", "vip_first_us") == "failed"
    assert report.status(res, "floor", "1000", "full_sync_s") is None          # the floor never has it
    assert report.status(res, "iptables", "1000", "full_sync_s") is None       # it has a value
    rat = report.ratios(res)
    assert report.cell(res, rat, "iptables", "100", BY_KEY["vip_first_us"]) == ["812 · p99 822", "×1.14f ×0.83k"]
    assert report.cell(res, rat, "floor", "100", BY_KEY["full_sync_s"]) == []   # no full sync without a proxy
    md = report.md_table(res, "100", ["iptables", "floor"])
    assert md[0] == "| | iptables | floor |"
    assert "| 1st packet ClusterIP, µs | 812 · p99 822<br>×1.14f ×0.83k | " in "\n".join(md)


def test_a_record_naming_its_metric_marks_that_cell_only():
    res = _results()
    res["unfinished"].append({"subject": "iptables", "where": "host", "services": 1000, "round": 2,
                              "step": "endpoint change", "metric": "change_ms", "cap_s": 30.0})
    res["failed"].append({"subject": "ebpf", "where": "host", "services": 100, "round": 1,
                          "step": "full sync", "error": "verifier: too many instructions"})
    assert report.status(res, "iptables", "1000", "change_ms") == "did not finish in 30 s"
    assert report.status(res, "iptables", "1000", "nodeport_first_us") is None
    # a row with no value anywhere is blank in every metric a proxy has; it comes after the subjects' modes
    assert report.rows(res)[:3] == ["iptables", "nftables", "ebpf"]
    assert report.status(res, "ebpf", "100", "churn_cpu_s") == "failed"
    assert "ebpf, 100 Services, round 1, full sync: failed: verifier: too many instructions" in report.markdown(res)


def test_terminal_prints_one_table_per_size_with_the_troubles(monkeypatch):
    buf = io.StringIO()
    report.terminal(_results(), Console(file=buf, width=200, color_system=None))
    text = buf.getvalue()
    assert "100 Services" in text and "1,000 Services" in text
    for row in report.rows(_results()):
        assert row.replace("-layout", "") in text          # kube-proxy-layout's heading takes two lines
    assert "did not finish in 120 s" in text and "failed" in text
    assert "nftables, 1,000 Services, round 1, first packet: failed: connect: no route to host" in text
    # a cell's p50, p99 and ratios stand one under another, in one column
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if " 812 " in line)
    column = lines[at].index("812") + 3
    assert [line[:column].split()[-1] for line in lines[at:at + 4]] == ["812", "822", "×1.14f", "×0.83k"]
    assert text.count("compare them with floor@vm only") == 1                    # only the table with VM rows


def test_write_makes_the_json_the_report_and_a_plot_per_metric(tmp_path):
    res = _results()
    out = tmp_path / "run" / "1"
    paths = report.write(res, out)
    names = [p.name for p in paths]
    assert names == ["results.json", "report.md", "full_sync_s.png", "vip_first_us.png", "conn_rate.png"]
    for p in paths:
        assert p.exists() and p.stat().st_size > 0
    for p in paths[2:]:
        assert p.read_bytes().startswith(PNG_MAGIC)
    assert json.loads((out / "results.json").read_text()) == res
    md = (out / "report.md").read_text(encoding="utf-8")
    for s in res["subjects"]:
        assert s["name"] in md
    assert "ipvs@vm" in md and "floor@vm" in md
    assert "did not finish in 120 s" in md
    assert "connect: no route to host" in md
    assert "![first packet, ClusterIP from a pod](vip_first_us.png)" in md
    assert "| | iptables | nftables | kube-proxy-layout | floor |" in md and "## 1,000 Services" in md
    assert "\n| full sync, s | " in md
    assert "lowest to the highest per-round median" in md


def test_a_single_size_plots_on_a_linear_axis(tmp_path):
    res = _results()
    res["summary"] = {row: {k: v for k, v in per.items() if k == "100"} for row, per in res["summary"].items()}
    paths = report.plot(res, tmp_path)
    assert [p.name for p in paths] == ["full_sync_s.png", "vip_first_us.png", "conn_rate.png"]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths)


# -- compare -----------------------------------------------------------------------------------------

def _by(rows: list[dict]) -> dict:
    return {(r["row"], r["services"], r["metric"]): r for r in rows}


def test_compare_verdicts_follow_the_direction_of_each_metric():
    a = _results()
    b = _results(scale=0.5, extra=[_rec("nftables", 1000, "full_sync_s", [3.0])])
    b["summary"].pop("kube-proxy-layout")
    rows = _by(compare.compare(a, b))
    # iptables halved: a lower full sync and first packet is better, a lower connection rate worse
    assert rows[("iptables", 100, "full_sync_s")]["verdict"] == "better"
    assert rows[("iptables", 100, "full_sync_s")]["ratio"] == pytest.approx(0.5)
    assert rows[("iptables", 100, "vip_first_us")]["verdict"] == "better"
    assert rows[("iptables", 100, "conn_rate")]["verdict"] == "worse"
    same = rows[("nftables", 100, "vip_first_us")]
    assert same["verdict"] == "same" and same["ratio"] == 1.0 and same["a_spread"] == same["b_spread"]
    assert rows[("kube-proxy-layout", 100, "full_sync_s")]["verdict"] == "only in A"
    only_b = rows[("nftables", 1000, "full_sync_s")]
    assert only_b["verdict"] == "only in B" and only_b["a"] is None and only_b["b"] == 3.0
    assert rows[("ipvs@vm", 100, "vip_first_us")]["verdict"] == "same"


def test_same_when_the_spreads_overlap_even_if_the_p50s_differ():
    a, b = stats.summarise([[10.0], [14.0]]), stats.summarise([[13.0], [20.0]])
    assert b["p50"] > a["p50"]
    assert compare.verdict("full_sync_s", a, b) == "same"
    assert compare.verdict("full_sync_s", a, stats.summarise([[15.0], [20.0]])) == "worse"
    assert compare.verdict("conn_rate", a, stats.summarise([[15.0], [20.0]])) == "better"


def test_main_prints_and_writes_the_comparison(tmp_path):
    report.write(_results(), tmp_path / "a")
    report.write(_results(scale=0.5), tmp_path / "b")
    buf = io.StringIO()
    assert compare.main(str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "cmp"),
                        Console(file=buf, width=200, color_system=None)) == 0
    text = buf.getvalue()
    assert "better" in text and "worse" in text and "same" in text and "only in A" not in text
    md = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert f"- A: {tmp_path / 'a'}" in md
    assert "| iptables | 100 | full sync into the kernel (s) | 1.00 [1.00..1.00] | 0.500 [0.500..0.500] | ×0.50 | " \
           "better |" in md


def _write(d, text: str):
    d.mkdir()
    (d / "results.json").write_text(text)
    return d


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nowhere", "nowhere: no such directory"),
    (lambda d: (d / "f").write_text("") or d / "f", "f: not a directory"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "results.json: no such file"),
    (lambda d: _write(d / "bad", "{not json"), "results.json: not JSON (Expecting property name"),
    (lambda d: _write(d / "other", json.dumps({"benchmark": "netplane bench maglev", "format": 1})),
     "results.json: not a `netplane bench proxy` result"),
    (lambda d: _write(d / "list", "[1, 2]"), "results.json: not a `netplane bench proxy` result"),
    (lambda d: _write(d / "new", json.dumps({"benchmark": "netplane bench proxy", "format": 2, "summary": {}})),
     "results.json: format 2, this netplane reads format 1"),
    (lambda d: _write(d / "nosum", json.dumps({"benchmark": "netplane bench proxy", "format": 1})),
     "results.json: no summary"),
])
def test_load_refuses_in_one_line_naming_the_path(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(compare.CompareError) as e:
        compare.load(path)
    assert message in str(e.value) and str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)


def test_main_raises_for_a_bad_run_before_printing(tmp_path):
    report.write(_results(), tmp_path / "a")
    buf = io.StringIO()
    with pytest.raises(compare.CompareError, match="no such directory"):
        compare.main(str(tmp_path / "a"), str(tmp_path / "b"), None, Console(file=buf))
    assert buf.getvalue() == ""
