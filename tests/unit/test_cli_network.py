"""Bad agent and lab flags are refused with a clear message, before anything runs."""
import pytest

from netplane import cli


@pytest.mark.parametrize("argv, phrase", [
    (["agent", "--nodes-file", "/nonexistent/nodes.json"], "no such file"),
    (["agent", "--nodes-file", "{nodes}", "--vni", "0"], "--vni 0"),
    (["agent", "--nodes-file", "{nodes}", "--vxlan-port", "70000"], "--vxlan-port 70000"),
    (["agent", "--nodes-file", "{nodes}", "--resync-interval", "0"], "--resync-interval"),
    (["agent", "--nodes-file", "{nodes}", "--pod-cidr", "10.0.0.0/24"], "one or the other"),
    (["agent", "--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig"),
    (["agent", "--nodes-file", "{nodes}", "--resync-interval", "inf"], "--resync-interval"),
    (["agent", "--nodes-file", "{nodes}", "--mtu", "1400"], "one or the other"),
    (["agent", "--mtu", "1400"], "--mtu needs --pod-cidr"),
    (["agent", "--nodes-file", "{nodes}", "--status-file", "{nodes}/status.json"], "--status-file"),
    (["agent", "--kubeconfig", ""], "--kubeconfig: empty path"),
    (["lab", "up", "--nodes", "0", "--root", "{tmp}"], "--nodes 0"),
    (["lab", "up", "--name", "no/slash", "--root", "{tmp}"], "lab name"),
    (["lab", "up", "--proxy", "--proxy-mode", "magic", "--root", "{tmp}"], "--proxy-mode 'magic': available modes"),
    (["lab", "status", "--name", "absent", "--root", "{tmp}"], "no lab named absent"),
])
def test_refused_clearly(argv, phrase, tmp_path, capsys):
    nodes = tmp_path / "nodes.json"
    nodes.write_text("{}")
    argv = [a.format(nodes=nodes, tmp=tmp_path) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err


def test_mode_must_be_known(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["agent", "--mode", "bgp"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
