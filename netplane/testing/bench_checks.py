"""What a finished `netplane bench proxy` run must hold, for the kernel and
VM tiers: every file, every number present and positive, and proof that
each measured path went through its own mode (never a time)."""
import json
from pathlib import Path

from netplane.bench.proxy.metrics import METRICS

MODE_EVIDENCE = {"iptables": "iptables: NP-SERVICES", "kube-proxy-layout": "iptables: NP-SERVICES",
                 "nftables": "nftables: table ip netplane", "ebpf": "eBPF:", "ipvs": "IPVS: virtual server",
                 "floor": "no proxy's objects"}


def assert_complete(out: Path, rows: list[str], sizes: list[int], plots: bool = True) -> dict:
    """Check a result directory; returns its results."""
    results = json.loads((out / "results.json").read_text())
    assert results["failed"] == [] and results["unfinished"] == [], (results["failed"], results["unfinished"])
    if plots:
        report = (out / "report.md").read_text()
        for m in METRICS:
            png = out / f"{m.key}.png"
            assert png.read_bytes().startswith(b"\x89PNG"), png
            assert f"({m.key}.png)" in report
    for row in rows:
        subject = row.removesuffix("@vm")
        for n in sizes:
            per = results["summary"][row][str(n)]
            wanted = [m.key for m in METRICS if m.data_path or subject != "floor"]
            assert sorted(per) == sorted(wanted), (row, n, sorted(per))
            for key, s in per.items():
                assert s["n"] > 0 and s["p50"] > 0 and s["min"] > 0, (row, n, key, s)
            _assert_paths(results, row, n)
    return results


def _assert_paths(results: dict, row: str, n: int) -> None:
    """The kernel held the row's mode (and no other), and every sample's answers came the way its
    subject sends them: through the Service for a mode, straight to the pod for the floor."""
    subject, where = row.removesuffix("@vm"), "vm" if row.endswith("@vm") else "host"
    held = [h["held"] for h in results["held"] if (h["subject"], h["where"], h["services"]) == (subject, where, n)]
    assert held and all(h.startswith(MODE_EVIDENCE[subject]) for h in held), (row, n, held)
    for s in results["samples"]:
        if (s["subject"], s["where"], s["services"]) != (subject, where, n):
            continue
        text = s["checked"]
        assert text, (row, s["metric"])
        if s["metric"] in ("vip_first_us", "conn_rate", "throughput_gbps"):
            assert ("10.96.255.254:" in text) == (subject != "floor"), (row, s["metric"], text)
        if s["metric"] == "nodeport_first_us":
            assert (":32600" in text) == (subject != "floor"), (row, text)
