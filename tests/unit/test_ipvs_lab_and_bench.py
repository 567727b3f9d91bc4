"""Where the IPVS mode runs when this kernel has none (the lab's VM path),
its Service annotation and option, and the host encode benchmark's pieces."""
import sys

import pytest

from netplane import cli, vm
from netplane.bench import full_sync_encode
from netplane.kube.fields import InvalidObject
from netplane.proxy import build as b
from netplane.proxy import modes
from netplane.proxy.objects import service_ports

NO_IPVS = "this kernel has no IPVS loaded (/proc/net/ip_vs is missing)"


@pytest.fixture
def no_ipvs_here(monkeypatch):
    monkeypatch.setattr("netplane.proxy.ipvs.device.ipvs_present", lambda: False)
    monkeypatch.delenv(vm.VM_ENV, raising=False)


def test_lab_run_adds_the_modes_this_kernel_lacks_when_a_vm_can_boot(no_ipvs_here, monkeypatch):
    monkeypatch.setattr(vm, "available", lambda: None)
    assert cli.lab._default_proxy_modes() == modes.available() + ["ipvs"]
    monkeypatch.setattr(vm, "available", lambda: "no kernel image")
    assert "ipvs" not in cli.lab._default_proxy_modes()


def test_lab_up_refuses_a_mode_this_kernel_lacks_in_one_line(no_ipvs_here, capsys):
    assert cli.main(["lab", "up", "--proxy", "--proxy-mode", "ipvs"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and NO_IPVS in err and "netplane lab run --proxy-mode ipvs" in err


def test_lab_run_in_the_vm_passes_the_same_run_on(no_ipvs_here, monkeypatch):
    ran = []
    monkeypatch.setattr(vm, "available", lambda: None)
    monkeypatch.setattr(vm, "kernel", lambda: type("P", (), {"name": "vmlinuz-6.1.0-57-amd64"})())
    monkeypatch.setattr(vm, "run", lambda argv, timeout: ran.append(argv) or 0)
    args = cli._parser().parse_args(["lab", "run", "--proxy-mode", "ipvs", "--mode", "routed"])
    assert cli.lab._lab_run(args) == 0
    assert ran == [[sys.executable, "-m", "netplane", "lab", "run", "--nodes", "3", "--name", "default",
                    "--mode=routed", "--proxy-mode=ipvs"]]


def test_the_scheduler_annotation_is_checked():
    svc = b.service("s", "10.96.0.1", [{"port": 80}])
    svc["metadata"]["annotations"] = {"netplane.io/ipvs-scheduler": "mh"}
    assert service_ports(svc)[0].scheduler == "mh"
    svc["metadata"]["annotations"] = {"netplane.io/ipvs-scheduler": "fastest"}
    with pytest.raises(InvalidObject, match="netplane.io/ipvs-scheduler.*'fastest' is not an IPVS scheduler"):
        service_ports(svc)


@pytest.mark.parametrize("mode", full_sync_encode.MODES)
def test_the_encode_benchmark_measures_every_mode_down_to_bytes(mode):
    got = full_sync_encode.one(mode, 30)
    assert got["total_s"] >= got["compile_s"] > 0 and got["bytes"] > 30 * 10 * 40


def test_the_encode_report_gives_ratios_to_ipvs():
    rows = [{"mode": m, "services": 10, "median_s": t, "min_s": t, "max_s": t, "compile_s": t / 2,
             "encode_s": t / 2, "bytes": 1} for m, t in (("ipvs", 0.5), ("nftables", 0.25), ("iptables", 1.0))]
    text = full_sync_encode.markdown({"when": "now", "rounds": 1, "results": rows})
    assert "| nftables | 10 | 0.250 s |" in text and text.count("0.50x") == 1 and "2.00x" in text
