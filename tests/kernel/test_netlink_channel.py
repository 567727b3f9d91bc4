"""The rtnetlink channel against this kernel: a batch far larger than the
socket's receive buffer holds acks for (1,000 addresses; each ack costs
about a kilobyte of it) goes through whole, in a namespace of its own."""
import json
import sys

import pytest

from netplane import sandbox

pytestmark = pytest.mark.kernel

SCRIPT = """
import json
from netplane.netlink import messages as m
from netplane.netlink.channel import Channel
with Channel.open() as ch:
    index = m.link_index(ch.send(m.get_link("lo"))[0].replies[0])
    ch.send(*[m.new_address(index, f"10.77.{i // 250}.{i % 250 + 1}", 32, 4) for i in range(1000)])
    added = [m.decode_address(raw).get_attr("IFA_LOCAL") or "" for raw in ch.dump(m.dump_addresses())]
    print(json.dumps(sum(a.startswith("10.77.") for a in added)))
"""


def test_a_thousand_acked_requests_in_one_call_all_take_effect():
    with sandbox.Sandbox() as sb:
        done = sb.run(sb.netns("channel"), [sys.executable, "-c", SCRIPT], text=True, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == 1000
