"""One controller pass over a fake kernel: when it acts, when it must not,
and what it reports. (The kernel tier runs the same passes for real.)"""
import json

import netaddr
import pytest

from netplane import nodestate
from netplane.lab import topology
from netplane.podnet import controller as ctl
from netplane.podnet.plan import Plan, Settings, Underlay
from netplane.podnet.sources import NodeView


class FakeKernel:
    """observe() returns what the last pass planned, as if apply() had worked."""

    def __init__(self, monkeypatch):
        self.applied = []
        self.have = Plan()
        real_changes = ctl.changes

        def changes(want, have):
            self.want = want
            return real_changes(want, have)

        def apply(ipr, ops, device):
            self.applied.extend(ops)
            self.have = self.want
            return []

        monkeypatch.setattr(ctl, "changes", changes)
        monkeypatch.setattr(ctl.kernel, "underlay_for", lambda ipr, ip: Underlay(
            "eth0", 2, 1500, (netaddr.IPNetwork("192.168.200.0/24"), netaddr.IPNetwork("fd00:200::/64"))))
        monkeypatch.setattr(ctl.kernel, "observe", lambda ipr, device: self.have)
        monkeypatch.setattr(ctl.kernel, "apply", apply)
        monkeypatch.setattr(ctl, "ensure_forwarding", lambda families: None)


class Announcements(NodeView):
    def __init__(self):
        super().__init__()
        self.announced = []

    def announce(self, node_name, vtep_mac):
        self.announced.append((node_name, vtep_mac))


@pytest.fixture
def setup(monkeypatch, tmp_path):
    kernel, source = FakeKernel(monkeypatch), Announcements()
    control = ctl.Controller(source, "node1", Settings(), str(tmp_path / "node.json"), str(tmp_path / "status.json"))
    return kernel, source, control, tmp_path


def lab_nodes(*numbers):
    return [topology.node_object(topology.node_addressing(i)) for i in numbers]


def test_nothing_happens_before_the_source_has_loaded(setup):
    kernel, _, control, tmp = setup
    report = control.reconcile(ipr=None)
    assert not report.ready and "not loaded" in report.problems[0] and kernel.applied == []
    assert json.loads((tmp / "status.json").read_text())["ready"] is False
    assert not (tmp / "node.json").exists()


def test_a_node_missing_from_the_source_leaves_the_kernel_alone(setup):
    kernel, source, control, _ = setup
    source._publish(lab_nodes(2, 3))
    report = control.reconcile(ipr=None)
    assert not report.ready and "node1" in report.problems[0] and kernel.applied == []


def test_a_pass_applies_the_plan_publishes_state_and_announces_the_vtep(setup):
    kernel, source, control, tmp = setup
    source._publish(lab_nodes(1, 2, 3))
    report = control.reconcile(ipr=None)
    assert report.ready and report.peers == ["node2", "node3"] and report.changes == len(kernel.applied) == 13  # device, 2 addresses, 4 neighbours, 2 FDB, 4 routes
    state = nodestate.read(str(tmp / "node.json"))
    assert state.mtu == 1450 and [str(c) for c in state.pod_cidrs] == ["10.244.1.0/24", "fd00:10:244:1::/64"]
    assert source.announced == [("node1", kernel.applied[0].value.mac)]
    status = json.loads((tmp / "status.json").read_text())
    assert status["ready"] and status["changes"] == 13 and status["passes"] == 1


def test_skipped_nodes_are_reported(setup):
    _, source, control, _ = setup
    bad = lab_nodes(3)[0]
    bad["status"]["addresses"] = []
    source._publish(lab_nodes(1, 2) + [bad])
    report = control.reconcile(ipr=None)
    assert report.peers == ["node2"] and any("node3" in p and "no InternalIP" in p for p in report.problems)


def test_a_failed_announcement_is_reported_and_retried_without_blocking_the_network(setup):
    kernel, source, control, _ = setup
    calls = []

    def flaky(name, mac):
        calls.append(mac)
        if len(calls) == 1:
            raise ConnectionError("API server unreachable")
        announced = lab_nodes(1, 2)             # the API echoes the annotation back
        announced[0]["metadata"]["annotations"] = {"netplane.io/vtep-mac": mac}
        source._publish(announced)

    source.announce = flaky
    source._publish(lab_nodes(1, 2))
    first = control.reconcile(ipr=None)
    assert first.ready and kernel.applied and any("cannot announce" in p for p in first.problems)
    second = control.reconcile(ipr=None)
    assert len(calls) == 2 and not second.problems
    control.reconcile(ipr=None)
    assert len(calls) == 2                      # the node object has it now: not again


def test_a_second_pass_over_a_converged_kernel_changes_nothing(setup):
    kernel, source, control, tmp = setup
    source._publish(lab_nodes(1, 2, 3))
    assert control.reconcile(ipr=None).changes == 13
    assert control.reconcile(ipr=None).changes == 0 and len(kernel.applied) == 13
    assert json.loads((tmp / "status.json").read_text())["totalChanges"] == 13


def test_a_peer_claiming_this_nodes_pod_cidr_is_left_out(setup):
    kernel, source, control, _ = setup
    rogue = lab_nodes(3)[0]
    rogue["spec"]["podCIDRs"] = ["10.244.1.0/25"]
    source._publish(lab_nodes(1, 2) + [rogue])
    report = control.reconcile(ipr=None)
    assert report.peers == ["node2"] and any("node3" in p and "overlaps" in p for p in report.problems)
    assert not any(op.kind == "routes" and op.key.ip in netaddr.IPNetwork("10.244.1.0/24") for op in kernel.applied)


def test_the_loop_runs_on_changes_not_only_on_the_resync_timer_and_stops_promptly(setup, monkeypatch):
    import contextlib
    import threading
    import time

    _, source, control, _ = setup
    monkeypatch.setattr(ctl, "IPRoute", contextlib.nullcontext)     # the fake kernel needs no socket
    control.resync_interval = 60
    thread = threading.Thread(target=control.run)
    thread.start()
    try:
        source._publish(lab_nodes(1, 2))
        deadline = time.monotonic() + 5
        while control.total_changes < 8 and time.monotonic() < deadline:     # device, 2 addresses, 2+1+2 entries
            time.sleep(0.01)
        assert control.total_changes == 8
        source._publish(lab_nodes(1, 2, 3))                                   # a new peer: a pass at once
        while control.total_changes == 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert control.total_changes == 8 + 5
    finally:
        control.stop()
        thread.join(timeout=2)
    assert not thread.is_alive()


def test_what_the_agent_reports_passes_failures_and_the_peers_set_up(setup, monkeypatch):
    """The counters /metrics and /healthz read: a failed pass counts as
    one, a pass that stops early (this node left the source) keeps the
    peers the kernel is set up for, and the status file says it too."""
    kernel, source, control, tmp = setup
    source._publish(lab_nodes(1, 2, 3))
    first = control.reconcile(ipr=None)
    assert first.succeeded and control.last_report is first and control.peers == ["node2", "node3"]
    assert first.duration >= 0 and control.failed_passes == 0

    monkeypatch.setattr(ctl.kernel, "observe", lambda ipr, device: (_ for _ in ()).throw(OSError("netlink gone")))
    failed = control.reconcile(ipr=None)
    assert not failed.succeeded and failed.failures == ["OSError: netlink gone"]
    assert (control.passes, control.failed_passes, control.last_report) == (2, 1, failed)
    assert control.peers == ["node2", "node3"]
    assert json.loads((tmp / "status.json").read_text())["failedPasses"] == 1

    source._publish(lab_nodes(2, 3))                # this node is gone from the source: not a failure
    gone = control.reconcile(ipr=None)
    assert not gone.succeeded and not gone.failures and control.failed_passes == 1
    assert control.peers == ["node2", "node3"]
