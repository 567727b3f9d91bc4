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
    runner.restore(json.load(sys.stdin))
    print(json.dumps({"ok": sorted(runner.chains("nat"))}))
except IptablesError as err:
    print(json.dumps({"error": str(err)}))
"""


def restore_in(sb: sandbox.Sandbox, netns: str, parts: list[str]) -> dict:
    done = sb.run(netns, [sys.executable, "-c", SCRIPT], input=json.dumps(parts), text=True)
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
