"""`netplane bench proxy` without root: its options, the cluster it writes,
the order it runs things in, the proof it asks of the kernel, and the
merge of the VM's results."""
import argparse
import json

import pytest

from netplane.bench.proxy import cluster, command, evidence, runner, stats, subjects
from netplane.bench.proxy.steps import Effort, PROXY_STEPS, FLOOR_STEPS
from netplane.cli import main


def args(**kw) -> argparse.Namespace:
    base = {"modes": None, "services": None, "endpoints": "10", "repeat": None, "quick": False, "cap": "120",
            "out": None, "no_vm": True, "plain": True, "vm_guest": False}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("argv, message", [
    (["--services", "0"], "--services 0: each must be 1..100,000"),
    (["--services", "1k"], "--services 1k: expected whole numbers separated by commas"),
    (["--endpoints", "0"], "--endpoints 0: must be 1..1000"),
    (["--repeat", "x"], "--repeat x: expected a number"),
    (["--cap", "-1"], "--cap -1: must be 1..86400"),
    (["--modes", "iptables,userspace"], "--modes iptables,userspace: unknown mode userspace; choose from"),
])
def test_bad_flags_are_one_line_errors_naming_the_flag(argv, message, capsys, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert main(["bench", "proxy", "--no-vm", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"netplane: {message}") and err.count("\n") == 1


def test_non_root_is_refused_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["bench", "proxy", "--quick"]) == 2
    assert capsys.readouterr().err == "netplane: bench proxy needs root: it builds a lab of network namespaces\n"


def test_compare_of_a_missing_directory_is_one_line(capsys, tmp_path):
    assert main(["bench", "compare", str(tmp_path / "a"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netplane: ") and str(tmp_path / "a") in err and err.count("\n") == 1


def test_quick_and_default_plans():
    quick = command.plan_of(args(quick=True), ["iptables", "nftables"], "host")
    assert quick.services == [100, 1000] and quick.repeat == 1 and quick.effort.changes == 4
    assert [s.row for s in quick.subjects] == ["floor", "iptables", "nftables", "kube-proxy-layout"]
    full = command.plan_of(args(services="10000,100,100"), ["ebpf"], "host")
    assert full.services == [100, 10000] and full.repeat == 3 and full.effort == Effort()
    vm = command.plan_of(args(quick=True), ["ipvs"], "vm")
    assert [s.row for s in vm.subjects] == ["floor@vm", "ipvs@vm"]            # no kube-proxy row in the VM
    assert vm.effort.connections == quick.effort.connections // 2


def test_the_vm_runs_the_sizes_it_holds():
    assert command.vm_sizes([100, 1000, 10000], quick=False) == [100, 1000]
    assert command.vm_sizes([100, 1000], quick=True) == [100]
    assert command.vm_sizes([5000, 10000], quick=False) == [5000]          # the smallest, when none fits


def test_rounds_rotate_so_no_subject_always_goes_first():
    order = [runner.rotated(["a", "b", "c"], r) for r in range(3)]
    assert order == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    plan = runner.Plan(subjects.lineup(["iptables"], "host"), [10, 20], 10, 2, 5.0, Effort())
    assert runner.total_steps(plan) == 2 * 2 * (len(FLOOR_STEPS) + 2 * len(PROXY_STEPS))


def test_the_cluster_splits_the_churned_services_into_their_own_file(tmp_path):
    cluster.write(tmp_path, 101, 3, "10.244.2.2")
    files = {name: json.loads((tmp_path / name).read_text())["items"] for name in cluster.FILES}
    names = [o["metadata"]["name"] for f in files.values() for o in f if o["kind"] == "Service"]
    assert len(names) == len(set(names)) == 101                   # N counts the measured Service
    assert len(files["churn.json"]) == 2 * cluster.churn_count(101) == 100
    churned = cluster.churned(101, 3, 1)
    assert [o["metadata"]["name"] for o in churned] == [o["metadata"]["name"] for o in files["churn.json"]]
    before = {o["metadata"]["name"]: o for o in files["churn.json"] if o["kind"] == "EndpointSlice"}
    for o in churned:
        if o["kind"] == "EndpointSlice":                       # a revision moves every endpoint elsewhere
            old = {e["addresses"][0] for e in before[o["metadata"]["name"]]["endpoints"]}
            assert old.isdisjoint(e["addresses"][0] for e in o["endpoints"])
        else:                                                   # and keeps the Service as it was
            assert o == next(x for x in files["churn.json"] if x["metadata"]["name"] == o["metadata"]["name"])
    target = files[f"{cluster.TARGET}.json"]
    assert target[0]["spec"]["ports"][0]["nodePort"] == cluster.NODE_PORT
    assert target[1]["endpoints"][0]["addresses"] == ["10.244.2.2"]


@pytest.mark.parametrize("subject, held, ok", [
    (subjects.mode("nftables"), {"nftables": True}, "nftables: table ip netplane"),
    (subjects.mode("nftables"), {"nftables": True, "iptables": 1}, "also holds iptables"),
    (subjects.mode("ebpf"), {}, "holds no ebpf objects"),
    (subjects.kube_proxy(), {"iptables": 1, "iptables_endpoint_chains": 1000}, "1,000 endpoint chains"),
    (subjects.floor(), {"ipvs": True}, "also holds ipvs"),
    (subjects.floor(), {}, "no proxy's objects"),
])
def test_the_kernel_must_hold_the_subjects_mode_and_no_other(monkeypatch, subject, held, ok):
    base = {"iptables": 0, "iptables_endpoint_chains": 0, "nftables": False, "ebpf": 0, "ipvs": False}
    monkeypatch.setattr(evidence, "read", lambda bed: {**base, **held})
    try:
        assert ok in evidence.check(None, subject)
    except RuntimeError as err:
        assert ok in str(err)
        assert not ok.startswith(("nftables:", "no proxy", "1,000"))


def test_the_vms_results_join_the_hosts_as_their_own_rows():
    host = {"samples": [{"subject": "floor", "where": "host", "services": 10, "round": 1, "metric": "conn_rate",
                         "values": [5000.0]}], "unfinished": [], "failed": [], "held": [],
            "subjects": [subjects.floor().describe()], "machine": {"kernel": "6.18"}}
    guest = {"samples": [{**host["samples"][0], "where": "vm", "values": [700.0]}], "unfinished": [],
             "failed": [{"subject": "ipvs", "where": "vm", "services": 10, "round": 1, "step": "x", "error": "y"}],
             "held": [], "subjects": [subjects.floor("vm").describe()], "machine": {"kernel": "6.1"}}
    command.merge(host, guest)
    assert host["summary"]["floor"]["10"]["conn_rate"]["p50"] == 5000.0
    assert host["summary"]["floor@vm"]["10"]["conn_rate"]["p50"] == 700.0
    assert host["machine"]["vm"] == {"kernel": "6.1"} and len(host["failed"]) == 1
    assert stats.row_key(host["failed"][0]) == "ipvs@vm"
