"""The restore runner against the real binaries, in a namespace of its own:
a transaction streamed in pieces, and a refused one reported with
iptables' own words, also when it fails with megabytes still unsent."""
import json
import sys

import pytest

from netplane import sandbox

pytestmark = pytest.mark.kernel

# runs inside the namespace: restore the pieces given as JSON, print the result
SCRIPT = """
import json, sys
from netplane.proxy.iptables.restore import Iptables, IptablesError
runner = Iptables(4)
try:
    runner.restore(json.load(sys.stdin), bulk=len(sys.argv) > 1)
    print(json.dumps({"ok": sorted(runner.chains("nat"))}))
except IptablesError as err:
    print(json.dumps({"error": str(err)}))
"""


def restore_in(sb: sandbox.Sandbox, netns: str, parts: list[str], bulk: bool = False) -> dict:
    done = sb.run(netns, [sys.executable, "-c", SCRIPT] + (["bulk"] if bulk else []), input=json.dumps(parts),
                  text=True)
    return json.loads(done.stdout)


@pytest.fixture
def netns():
    with sandbox.Sandbox() as sb:
        yield sb, sb.netns("restore")


def test_pieces_make_one_transaction(netns):
    sb, ns = netns
    chains = [f"NP-TEST-{i}" for i in range(2000)]
    parts = ["*nat\n"] + [f":{c} - [0:0]\n" for c in chains] + [f"-A {c} -j RETURN\n" for c in chains] + ["COMMIT\n"]
    assert restore_in(sb, ns, parts) == {"ok": sorted(chains)}


def test_a_refused_transaction_reports_why_and_changes_nothing(netns):
    sb, ns = netns
    bad = ["*nat\n", ":NP-GOOD - [0:0]\n", "-A NP-MISSING -j RETURN\n"]
    filler = ["-A NP-GOOD -j RETURN\n" * 1000] * 200          # 4 MB the binary may never read
    result = restore_in(sb, ns, bad + filler + ["COMMIT\n"])
    assert "iptables-restore" in result["error"] and "line 3" in result["error"].lower(), result
    assert restore_in(sb, ns, []) == {"ok": []}                 # nothing of it was applied


def test_a_bulk_transaction_loads_the_same_and_flushes_nothing_of_anyone_elses(netns):
    """The `-S` line a bulk load adds lists the table; it must not flush it."""
    sb, ns = netns
    sb.run(ns, ["iptables", "-t", "nat", "-N", "ADMIN"], check=True)
    sb.run(ns, ["iptables", "-t", "nat", "-A", "ADMIN", "-j", "RETURN"], check=True)
    sb.run(ns, ["iptables", "-t", "nat", "-A", "PREROUTING", "-j", "ADMIN"], check=True)
    chains = [f"NP-TEST-{i}" for i in range(300)]
    parts = ["*nat\n"] + [f":{c} - [0:0]\n" for c in chains] + [f"-A {c} -j RETURN\n" for c in chains] + ["COMMIT\n"]
    assert restore_in(sb, ns, parts, bulk=True) == {"ok": sorted(chains)}
    saved = sb.run(ns, ["iptables-save", "-t", "nat"], text=True).stdout
    assert "-A ADMIN -j RETURN" in saved and "-A PREROUTING -j ADMIN" in saved
    assert restore_in(sb, ns, parts[:1] + [":NP-TEST-0 - [0:0]\n", "-X NP-TEST-0\n", "COMMIT\n"], bulk=True) \
        == {"ok": sorted(chains[1:])}


def test_rules_are_inserted_and_deleted_by_number_as_the_partial_compile_counts_them(netns):
    """The top-level chains are edited rule by rule: -D and -I by number, in
    one transaction, from the last port to the first."""
    sb, ns = netns
    rules = [f"-A NP-TOP -d 10.96.0.{i}/32 -j RETURN\n" for i in (1, 2, 4)]
    assert restore_in(sb, ns, ["*nat\n", ":NP-TOP - [0:0]\n", *rules, "COMMIT\n"]) == {"ok": ["NP-TOP"]}
    edits = ["-I NP-TOP 4 -d 10.96.0.5/32 -j RETURN\n",        # after the last rule
             "-D NP-TOP 2\n", "-I NP-TOP 2 -d 10.96.0.3/32 -j RETURN\n"]
    assert restore_in(sb, ns, ["*nat\n", *edits, "COMMIT\n"]) == {"ok": ["NP-TOP"]}
    listed = sb.run(ns, ["iptables", "-t", "nat", "-S", "NP-TOP"], text=True).stdout.split("\n")
    assert [line.split()[3] for line in listed if line.startswith("-A")] == [
        "10.96.0.1/32", "10.96.0.3/32", "10.96.0.4/32", "10.96.0.5/32"]
