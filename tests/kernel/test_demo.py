"""The README's main command runs end to end and says what it saw."""
import subprocess
import sys


def test_demo_wires_pings_and_cleans_up():
    proc = subprocess.run([sys.executable, "-m", "netplane", "demo", "--pods", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all pods reach each other and the gateway" in proc.stdout
    assert "addresses still reserved: 0" in proc.stdout
    assert proc.stdout.count("10.244.0.") >= 3
