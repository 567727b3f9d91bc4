import json
import os
import subprocess
import sys

import pytest

from netplane import cli
from netplane.cni import install


def test_install_writes_executable_and_valid_conflist(tmp_path):
    written = install.install(str(tmp_path / "bin"), str(tmp_path / "net.d"),
                              plugin_conf={"subnet": ["10.9.0.0/24", "fd00::/64"], "mtu": 1450})
    plugin, conflist = written
    assert os.access(plugin, os.X_OK) and os.path.basename(plugin) == "netplane"
    body = json.loads(open(conflist).read())
    assert body == {"cniVersion": "1.0.0", "name": "netplane",
                    "plugins": [{"type": "netplane", "subnet": ["10.9.0.0/24", "fd00::/64"], "mtu": 1450}]}
    assert not [p for p in os.listdir(tmp_path / "bin") if p.endswith(".tmp")]


def test_invalid_conflist_options_are_refused_and_nothing_written(tmp_path):
    with pytest.raises(install.InstallError, match="subnet"):
        install.install(str(tmp_path / "bin"), str(tmp_path / "net.d"), plugin_conf={"subnet": "10.9.0.1/24"})
    assert not (tmp_path / "bin").exists()


def test_script_wrappers_are_refused_as_interpreters(tmp_path):
    wrapper = tmp_path / "python3"
    wrapper.write_text("#!/bin/sh\nexec python3 \"$@\"\n")
    wrapper.chmod(0o755)
    with pytest.raises(install.InstallError, match="script wrapper"):
        install.install(str(tmp_path / "bin"), python=str(wrapper))


def test_cli_install(tmp_path, capsys):
    code = cli.main(["cni", "install", "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(tmp_path / "d"),
                     "--subnet", "10.9.0.0/24", "--cni-version", "1.1.0"])
    assert code == 0
    assert json.loads((tmp_path / "d" / "10-netplane.conflist").read_text())["cniVersion"] == "1.1.0"
    assert str(tmp_path / "bin" / "netplane") in capsys.readouterr().out


@pytest.mark.parametrize("argv, phrase", [
    (["cni", "install", "--bin-dir", "/tmp/x", "--conf-dir", "/tmp/y", "--subnet", "banana"], "subnet"),
    (["cni", "install", "--bin-dir", "/tmp/x", "--python", "/nonexistent/python"], "/nonexistent/python"),
    (["agent", "--pod-cidr", "10.1.0.0/33"], "--pod-cidr"),
    (["agent", "--pod-cidr", "10.1.0.0/24", "--mtu", "12"], "--mtu"),
    (["demo", "--pods", "1"], "--pods"),
])
def test_cli_refuses_bad_values_clearly(argv, phrase, capsys):
    assert cli.main(argv) == 2
    assert phrase in capsys.readouterr().err


def test_cli_refuses_unknown_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["agent", "--no-such-flag"])
    assert exc.value.code == 2 and "--no-such-flag" in capsys.readouterr().err


def test_python_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "netplane", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "agent" in proc.stdout and "cni" in proc.stdout


def test_a_bin_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "bin"
    blocker.write_text("not a directory")
    assert cli.main(["cni", "install", "--bin-dir", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("client", ["native", "python"])
def test_both_clients_install_and_run(tmp_path, client):
    [plugin] = install.install(str(tmp_path / client), client=client, agent_socket=f"@netplane-test-none-{os.getpid()}",
                               standalone=False)
    proc = subprocess.run([plugin], input=b"{}", env={"CNI_COMMAND": "VERSION"}, capture_output=True, timeout=30)
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["code"] == 11 and f"netplane-test-none-{os.getpid()}" in out["details"]
