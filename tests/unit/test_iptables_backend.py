"""The iptables backend: detected as kube-proxy's image wrapper detects it,
decided once per process, logged once with its reason, and used by every
binary the iptables mode runs."""
import logging

import pytest

from netplane.proxy.iptables import backend as backends
from netplane.proxy.iptables.mode import IptablesApplier, IptablesOptions
from netplane.proxy.iptables.restore import Iptables


def saved(rules: int, chains: str = "") -> str:
    return "*filter\n" + chains + "".join(f"-A INPUT -s 10.0.0.{i}/32 -j DROP\n" for i in range(rules)) + "COMMIT\n"


def fake_save(nft: str = "", legacy: str = "", nft_mangle: str = ""):
    calls = []

    def save(backend, *args):
        calls.append((backend, args))
        if backend == backends.NFT:
            return nft_mangle if args == ("-t", "mangle") else nft
        return legacy
    save.calls = calls
    return save


@pytest.fixture(autouse=True)
def fresh_choice():
    backends.forget()
    yield
    backends.forget()


def test_the_backend_with_more_rules_wins_and_the_reason_counts_them():
    assert backends.detect(fake_save(legacy=saved(42))) == backends.Choice("legacy", "it holds 42 rules, nft 0")
    assert backends.detect(fake_save(nft=saved(5), legacy=saved(3))) == \
        backends.Choice("nft", "it holds 5 rules, legacy 3")


def test_a_tie_and_an_empty_node_go_to_nft():
    assert backends.detect(fake_save(nft=saved(4), legacy=saved(4))).backend == "nft"
    assert backends.detect(fake_save()).backend == "nft"


def test_kubelets_hint_chain_settles_it_whatever_the_counts():
    hint = ":KUBE-IPTABLES-HINT - [0:0]\n"
    assert backends.detect(fake_save(nft_mangle=saved(0, hint), legacy=saved(50))) == \
        backends.Choice("nft", "kubelet's KUBE-IPTABLES-HINT chain is in it")
    canary = ":KUBE-KUBELET-CANARY - [0:0]\n"
    assert backends.detect(fake_save(nft=saved(50), legacy=saved(0, canary))).backend == "legacy"


def test_legacy_is_listed_without_naming_a_table_which_would_create_it():
    save = fake_save()
    backends.detect(save)
    assert all(args == () for backend, args in save.calls if backend == backends.LEGACY)


def test_the_choice_is_made_once_and_logged_once(caplog):
    detections = []

    def detector():
        detections.append(1)
        return backends.Choice("legacy", "it holds 42 rules, nft 0")
    with caplog.at_level(logging.INFO, "netplane.proxy"):
        assert backends.resolve("auto", detector) == "legacy"
        assert backends.resolve("auto", detector) == "legacy"
    assert len(detections) == 1
    [record] = caplog.records
    assert (record.getMessage(), record.backend, record.reason) == ("iptables backend", "legacy",
                                                                    "it holds 42 rules, nft 0")
    assert backends.chosen_backend() == backends.Choice("legacy", "it holds 42 rules, nft 0")


def test_a_forced_backend_is_not_detected_but_still_logged(caplog):
    with caplog.at_level(logging.INFO, "netplane.proxy"):
        assert backends.resolve("nft", lambda: pytest.fail("detected")) == "nft"
    [record] = caplog.records
    assert (record.backend, record.reason) == ("nft", "set by --iptables-backend / iptables.backend")


def test_a_later_request_for_the_other_backend_keeps_the_first_and_says_so(caplog):
    backends.resolve("nft", lambda: pytest.fail("detected"))
    caplog.clear()             # the choice's own line, shown when an earlier test left the root logger at INFO
    with caplog.at_level(logging.INFO, "netplane.proxy"):
        assert backends.resolve("legacy") == "nft"
    [record] = caplog.records
    assert (record.levelname, record.asked, record.backend) == ("WARNING", "legacy", "nft")


def test_every_binary_of_the_runner_is_the_chosen_backends():
    v4, v6 = Iptables(4, backend="legacy"), Iptables(6, backend="legacy")
    assert (v4.cmd, v4.restore_cmd, v4.save_cmd) == ("iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save")
    assert (v6.cmd, v6.restore_cmd, v6.save_cmd) == ("ip6tables-legacy", "ip6tables-legacy-restore",
                                                     "ip6tables-legacy-save")
    plain = Iptables(4)
    assert (plain.cmd, plain.restore_cmd, plain.backend) == ("iptables", "iptables-restore", None)


def test_nothing_is_detected_until_the_kernel_is_needed(monkeypatch):
    """A compile builds an applier but never runs a binary: no listing either."""
    monkeypatch.setattr(backends, "detect", lambda: pytest.fail("detected"))
    Iptables(4, backend="auto")
    assert backends.chosen_backend() is None


def test_the_applier_passes_the_option_and_says_the_backend(monkeypatch):
    monkeypatch.setattr(backends, "detect", lambda: backends.Choice("legacy", "it holds 1 rules, nft 0"))
    applier = IptablesApplier(4, IptablesOptions(backend="auto"))
    assert applier.backend == "legacy" and applier.runner.restore_cmd == "iptables-legacy-restore"
