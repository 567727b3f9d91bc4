"""The Maglev table benchmark (netplane/bench/maglev.py), tiny: its cluster,
a run of both paths, and its report on disk (never benchmarks/results)."""
import json

import pytest

from netplane.bench import maglev as bench
from netplane.proxy.ebpf import maglev


def test_the_cluster_is_seeded_and_each_service_has_distinct_backends():
    services = bench.cluster(50, 10, seed=3)
    assert services == bench.cluster(50, 10, seed=3) != bench.cluster(50, 10, seed=4)
    assert all(len(set(names)) == len(names) == 10 for names, _ in services)
    names, ids = services[1]
    assert ids == list(range(11, 21))
    assert names[0][:13] == bytes(10) + b"\xff\xff\x0a" and names[0][-2:] == (8080).to_bytes(2, "big")


def test_a_tiny_run_reports_both_paths(tmp_path):
    report = bench.run(5, 3, size=251, say=lambda text: None)
    assert report["fast"]["tables"] == report["pure"]["tables"] == 5 and not report["pure"]["extrapolated"]
    assert report["pure"]["module"] == maglev.__name__ and report["ratio"] > 0
    assert report["memory"] == {"fixed": {"size": 251, "bytes": 5 * 251 * 4},
                                "compact": {"sizes": [251], "bytes": 5 * 251 * 4}}
    md = bench.markdown(report)
    assert report["fast"]["module"] in md and f"pure ({maglev.__name__})" in md
    assert md.count("measured, all 5 tables") == 2 and "**extrapolated**" not in md
    paths = bench.write(report, tmp_path)
    assert json.loads(paths["json"].read_text())["params"]["services"] == 5
    assert paths["md"].read_text().startswith("# ") and paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_a_pure_sample_is_extrapolated_and_says_so(tmp_path):
    report = bench.run(6, 2, size=509, pure_sample=2, say=lambda text: None)
    slow = report["pure"]
    assert slow["tables"] == 2 and slow["extrapolated"] and slow["total_s"] == pytest.approx(slow["measured_s"] * 3)
    assert "**extrapolated** from 2 tables" in bench.markdown(report)
    assert report["memory"]["compact"] == {"sizes": [251], "bytes": 6 * 251 * 4}


def test_the_command_line_writes_where_it_is_told(tmp_path, capsys):
    assert bench.main(["--services", "3", "--endpoints", "2", "--size", "251", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{bench.NAME}.{ext}" for ext in ("json", "md", "png")]
    assert "pure" in capsys.readouterr().out
    for bad in (["--size", "1000"], ["--endpoints", "0"], ["--services", "2", "--pure-sample", "3"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
