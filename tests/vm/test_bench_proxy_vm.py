"""`netplane bench proxy` inside the VM, as the host's run starts it there
for the modes this machine's kernel lacks (IPVS): its results must hold
every number, each measured through IPVS (or, for the VM's own floor,
straight to the pod). No time is asserted."""
import subprocess
import sys

import pytest

from netplane.testing.bench_checks import assert_complete

pytestmark = pytest.mark.vm


def test_the_guests_bench_measures_ipvs_and_its_own_floor(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "netplane", "bench", "proxy", "--vm-guest", "--no-vm", "--quick",
                           "--modes", "ipvs", "--services", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = assert_complete(out, ["ipvs@vm", "floor@vm"], [5], plots=False)
    assert {s["where"] for s in results["subjects"]} == {"vm"}
