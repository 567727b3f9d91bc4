"""The core every mode shares (dataplane.py), over a recording mode: when a
sync is full, what is forgotten after a failure, drift, the conntrack hook,
and other modes' leftovers swept only once the new mode's rules are in."""
from dataclasses import dataclass

import netaddr
import pytest

from netplane.proxy import build as b
from netplane.proxy import modes
from netplane.proxy.dataplane import Dataplane
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.settings import EVERY_LOCAL_ADDRESS, Settings
from netplane.proxy.state import snapshot

SETTINGS = Settings(Node("n1"), (netaddr.IPAddress("192.168.200.11"),))
LOG = []


@dataclass(frozen=True)
class Options:
    pass


@dataclass(frozen=True)
class Plan:
    context: tuple
    ports: tuple
    full: bool


class Kernel:
    """A recording applier; its class attributes are the test's knobs."""
    drifted = None
    fail = False
    leftovers = {}

    def __init__(self, name, family):
        self.name, self.family = name, family

    def read_back(self):
        return "installed"

    def apply(self, plan, previous):
        if Kernel.fail:
            raise RuntimeError("refused")
        LOG.append(("apply", self.name, self.family, plan.full, previous is not None))

    def drift(self):
        return Kernel.drifted

    def cleanup(self):
        LOG.append(("cleanup", self.name, self.family))
        Kernel.leftovers.pop(self.name, None)
        return [f"{self.name} objects"]

    def present(self):
        return self.name in Kernel.leftovers


def fake_mode(name, keeps=(), cleans_conntrack=True):
    return modes.Mode(name=name, options=Options, section=name,
                      context=lambda settings, options, family, nodeports: (family, nodeports),
                      compile=lambda policies, ctx, previous, changed, installed: Plan(ctx, tuple(sorted(policies)),
                                                                                        previous is None),
                      applier=lambda family, options: Kernel(name, family), render=lambda plan: str(plan),
                      cleans_conntrack=cleans_conntrack, keeps=keeps)


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    monkeypatch.setattr(modes, "MODES", {})
    monkeypatch.setattr(modes, "BUILTIN", ())
    LOG.clear()
    Kernel.drifted, Kernel.fail, Kernel.leftovers = None, False, {}
    for name, keeps in (("new", ("kept",)), ("old", ()), ("kept", ())):
        modes.register(fake_mode(name, keeps))


def policies(*names):
    snap = snapshot([b.service(n, f"10.96.0.{i + 1}", [{"port": 80, "protocol": "UDP"}]) for i, n in enumerate(names)],
                    [])
    return {4: family_policies(snap.ports, 4, SETTINGS.node)}


def plane(**kwargs):
    return Dataplane(modes.get("new"), SETTINGS, local_addresses=lambda: [], clean_conntrack=kwargs.pop(
        "conntrack", lambda family, policies: LOG.append(("conntrack", family))), **kwargs)


def test_full_first_then_partial_and_the_conntrack_hook_after_udp_changes():
    p = plane(sweep=False)
    p.sync(policies("a"), None)
    p.sync(policies("a", "b"), {next(iter(policies("b")[4]))})
    p.sync(policies("a", "b"), set())
    assert LOG == [("apply", "new", 4, True, False), ("conntrack", 4), ("apply", "new", 4, False, True),
                   ("conntrack", 4), ("apply", "new", 4, False, True)]
    assert not p.last_full


def test_a_failed_apply_forgets_the_plan_so_the_next_sync_is_full():
    p = plane(sweep=False)
    p.sync(policies("a"), None)
    Kernel.fail = True
    with pytest.raises(RuntimeError):
        p.sync(policies("a"), set())
    Kernel.fail = False
    p.sync(policies("a"), set())
    assert LOG[-2:] == [("apply", "new", 4, True, False), ("conntrack", 4)] and p.last_full


def test_drift_makes_the_next_sync_full():
    p = plane(sweep=False, conntrack=None)
    p.sync(policies("a"), None)
    Kernel.drifted = "the table was flushed"
    p.sync(policies("a"), set())
    assert LOG[-1] == ("apply", "new", 4, True, False) and p.last_full


def test_a_change_of_context_makes_the_sync_full():
    addresses = {"now": [netaddr.IPAddress("192.168.200.11")]}
    settings = Settings(Node("n1"), (netaddr.IPAddress("192.168.200.11"),),
                        nodeport_addresses=(netaddr.IPNetwork("192.168.200.0/24"),))
    p = Dataplane(modes.get("new"), settings, local_addresses=lambda: addresses["now"], clean_conntrack=None,
                  sweep=False)
    p.sync(policies("a"), None)
    assert p.syncers[4].plan.context == (4, (netaddr.IPAddress("192.168.200.11"),))
    addresses["now"] = [netaddr.IPAddress("192.168.200.12")]
    p.sync(policies("a"), set())
    assert p.last_full


def test_other_modes_leftovers_go_only_after_the_first_full_sync_and_kept_ones_stay():
    Kernel.leftovers = {"old": True, "kept": True}
    p = plane(conntrack=None)
    Kernel.fail = True
    with pytest.raises(RuntimeError):
        p.sync(policies("a"), None)
    assert not any(entry[0] == "cleanup" for entry in LOG)        # the old rules keep serving meanwhile
    Kernel.fail = False
    p.sync(policies("a"), None)
    assert [entry for entry in LOG if entry[0] == "cleanup"] == [("cleanup", "old", 4)]
    assert "kept" in Kernel.leftovers
    p.sync(policies("a"), set())
    assert len([entry for entry in LOG if entry[0] == "cleanup"]) == 1


def test_a_mode_may_decline_the_conntrack_hook():
    modes.register(fake_mode("own-table", cleans_conntrack=False))
    p = Dataplane(modes.get("own-table"), SETTINGS, local_addresses=lambda: [], sweep=False,
                  clean_conntrack=lambda family, policies: LOG.append(("conntrack", family)))
    p.sync(policies("a"), None)
    assert ("conntrack", 4) not in LOG


def test_node_port_addresses_are_neutral_values():
    from netplane.proxy.settings import nodeport_addresses
    settings = Settings(Node("n1"), nodeport_addresses=(netaddr.IPNetwork("10.0.0.0/8"),))
    local = [netaddr.IPAddress(a) for a in ("10.1.2.3", "192.168.1.1", "fd00::1")]
    assert nodeport_addresses(settings, 4, local) == (netaddr.IPAddress("10.1.2.3"),)
    assert nodeport_addresses(settings, 6, local) is EVERY_LOCAL_ADDRESS
