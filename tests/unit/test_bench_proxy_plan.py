"""`netplane bench proxy` without root: its options, the cluster it writes,
the order it runs things in, the proof it asks of the kernel, and the
merge of the VM's results."""
import argparse
import dataclasses
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
    (["--services", "0"], "--services 0: each must be 1..62,500"),
    (["--services", "10000", "--endpoints", "101"], "--services 10,000 x --endpoints 101: at most 1,000,000"),
    (["--services", "1k"], "--services 1k: expected whole numbers separated by commas"),
    (["--endpoints", "0"], "--endpoints 0: must be 1..1,000"),
    (["--repeat", "x"], "--repeat x: expected a whole number"),
    (["--repeat", "1.5"], "--repeat 1.5: expected a whole number"),
    (["--cap", "-1"], "--cap -1: must be 1..86400"),
    (["--modes", "iptables,userspace"], "--modes iptables,userspace: unknown mode userspace; choose from"),
])
def test_bad_flags_are_one_line_errors_naming_the_flag(argv, message, capsys, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert main(["bench", "proxy", "--no-vm", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"netplane: {message}") and err.count("\n") == 1


def test_a_mode_asked_for_must_run_somewhere(capsys, monkeypatch):
    from netplane.proxy import modes

    monkeypatch.setattr("os.geteuid", lambda: 0)
    real = modes.get
    monkeypatch.setattr(modes, "get", lambda name: dataclasses.replace(
        real(name), unavailable=lambda: "not here" if name == "ipvs" else None))
    assert main(["bench", "proxy", "--modes", "ipvs", "--no-vm"]) == 2
    assert capsys.readouterr().err == "netplane: --modes ipvs: ipvs: not here, and --no-vm keeps it out of the VM\n"
    here, in_vm, left_out = command.split_modes(None, True, False)          # by default, left out and said why
    assert "ipvs" not in here + in_vm and left_out == ["ipvs: not here, and --no-vm keeps it out of the VM"]


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
    assert quick.services == [100, 1000] and quick.repeat == 1 and quick.effort.changes == 3
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


NOTHING = {"iptables": 0, "iptables_endpoint_chains": 0, "nftables": False, "ebpf": 0, "ipvs": False}


@pytest.mark.parametrize("subject, held, line", [
    (subjects.mode("nftables"), {"nftables": True}, "nftables: table ip netplane"),
    (subjects.mode("iptables"), {"iptables": 1, "iptables_endpoint_chains": 12}, "12 endpoint chains"),
    (subjects.kube_proxy(), {"iptables": 1, "iptables_endpoint_chains": 1001}, "1,001 endpoint chains"),
    (subjects.mode("ipvs", "vm"), {"ipvs": True}, "IPVS: virtual server 10.96.255.254:80"),
    (subjects.floor(), {}, "no proxy's objects"),
])
def test_what_the_kernel_held_for_each_subject(monkeypatch, subject, held, line):
    monkeypatch.setattr(evidence, "read", lambda bed: {**NOTHING, **held})
    assert line in evidence.check(None, subject, 101, 10)


@pytest.mark.parametrize("subject, held, error", [
    (subjects.mode("nftables"), {"nftables": True, "iptables": 1}, "the node also holds iptables objects"),
    (subjects.mode("ebpf"), {}, "the node holds no ebpf objects"),
    (subjects.floor(), {"ipvs": True}, "the node also holds ipvs objects"),
    # the layout asked for must be the one installed: kube-proxy's gives every endpoint its chain
    (subjects.kube_proxy(), {"iptables": 1, "iptables_endpoint_chains": 12}, "not the kube-proxy layout"),
    (subjects.mode("iptables"), {"iptables": 1, "iptables_endpoint_chains": 1001}, "not the compact layout"),
])
def test_a_kernel_without_the_subjects_mode_or_with_another_is_refused(monkeypatch, subject, held, error):
    monkeypatch.setattr(evidence, "read", lambda bed: {**NOTHING, **held})
    with pytest.raises(RuntimeError, match=error):
        evidence.check(None, subject, 101, 10)


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
