"""Every bad invocation of the CLI is one line on stderr, never a traceback.

Each runs inside a throwaway network namespace, so a case that did not
fail as it should could not touch the host. The table holds the cases an
operator met (issue 20's list) and the flags of every command.
"""
import subprocess
import sys

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def cases(tmp) -> list[tuple[str, list[str], str]]:
    """(id, argv, what the line must name)."""
    manifests, a_file = tmp / "manifests", tmp / "a-file"
    manifests.mkdir()
    a_file.write_text("")
    m = ["--manifests", str(manifests)]

    def config(text: str) -> str:
        path = tmp / f"config-{abs(hash(text))}.yaml"
        path.write_text(text)
        return str(path)

    return [
        ("agent-log-level", ["agent", "--log-level", "bogus"], "--log-level"),
        ("proxy-log-level", ["proxy", *m, "--log-level", "bogus"], "--log-level"),
        ("proxy-log-file-dir", ["proxy", *m, "--log-file", "/nonexistent/x.log"], "--log-file"),
        ("agent-log-file-dir", ["agent", "--log-file", "/nonexistent/x.log"], "--log-file"),
        ("proxy-in-cluster", ["proxy", "--in-cluster"], "in-cluster"),
        ("proxy-kubeconfig", ["proxy", "--kubeconfig", "/nonexistent/kubeconfig"], "/nonexistent/kubeconfig"),
        ("proxy-manifests-missing", ["proxy", "--manifests", "/nonexistent"], "/nonexistent"),
        ("proxy-unknown-flag", ["proxy", *m, "--no-such-flag"], "--no-such-flag"),
        ("proxy-mode", ["proxy", *m, "--mode", "userspace"], "userspace"),
        ("agent-pod-cidr", ["agent", "--pod-cidr", "10.1.0.0/33"], "--pod-cidr"),
        ("agent-mtu", ["agent", "--pod-cidr", "10.1.0.0/24", "--mtu", "12"], "--mtu"),
        ("cni-install-bin-dir-is-a-file", ["cni", "install", "--bin-dir", str(a_file)], str(a_file)),
        ("cni-install-client", ["cni", "install", "--bin-dir", str(tmp / "bin"), "--client", "rust"], "--client"),
        ("cni-install-subnet", ["cni", "install", "--bin-dir", str(tmp / "bin"), "--conf-dir", str(tmp / "d"),
                                "--subnet", "banana"], "subnet"),
        ("demo-pods", ["demo", "--pods", "1"], "--pods"),
        ("bench-services", ["bench", "proxy", "--services", "0"], "--services"),
        ("proxy-logging-format", ["proxy", *m, "--logging-format", "xml"], "--logging-format"),
        ("agent-logging-format", ["agent", "--logging-format", "xml"], "--logging-format"),
        ("proxy-conntrack-min", ["proxy", *m, "--conntrack-min", "many"], "--conntrack-min"),
        ("proxy-conntrack-timeout", ["proxy", *m, "--conntrack-tcp-timeout-established", "soon"],
         "--conntrack-tcp-timeout-established"),
        ("proxy-iptables-backend", ["proxy", *m, "--iptables-backend", "xtables"], "--iptables-backend"),
        ("proxy-localhost-nodeports", ["proxy", *m, "--iptables-localhost-nodeports=maybe"],
         "--iptables-localhost-nodeports"),
        ("proxy-config-nested-typo", ["proxy", *m, "--config", config("logging: {optoins: {}}\n")], "optoins"),
        ("proxy-config-conntrack", ["proxy", *m, "--config", config("conntrack: {min: lots}\n")], "conntrack.min"),
        ("compile-manifests-missing", ["compile", "--manifests", "/nonexistent/x.yaml"], "/nonexistent/x.yaml"),
        ("explain-address", ["explain", "banana", "10.96.0.10:80"], "banana"),
        ("explain-port", ["explain", "10.0.0.1", "10.96.0.10:99999/tcp"], "99999"),
        ("explain-proto", ["explain", "10.0.0.1", "10.96.0.10:80/icmp"], "icmp"),
        ("explain-netns", ["explain", "10.0.0.1", "10.96.0.10:80", "--netns", "no-such-ns"], "no-such-ns"),
        ("agent-healthz-address", ["agent", "--healthz-bind-address", "10266"], "--healthz-bind-address"),
        ("proxy-as-nobody", [*NOBODY, "proxy", *m], "CAP_NET_ADMIN"),
        ("agent-as-nobody", [*NOBODY, "agent"], "CAP_NET_ADMIN"),
    ]


def run_cli(sb, netns: str, argv: list[str]) -> subprocess.CompletedProcess:
    prefix = []
    if argv[0] == "setpriv":
        prefix, argv = argv[:4], argv[4:]
    return sb.run(netns, [*prefix, sys.executable, "-m", "netplane", *argv], check=False,
                  capture_output=True, text=True, timeout=60)


def test_every_bad_invocation_is_one_line(sb, tmp_path):
    netns = sb.netns("cli")
    problems = []
    for case, argv, names in cases(tmp_path):
        out = run_cli(sb, netns, argv)
        lines = out.stderr.strip().splitlines()
        if out.returncode == 0 or len(lines) != 1 or "Traceback" in out.stderr or names not in out.stderr:
            problems.append(f"{case}: exit {out.returncode}, stderr {out.stderr!r}")
    assert not problems, "\n".join(problems)


def test_a_taken_healthz_port_is_one_line_and_touches_nothing(sb, tmp_path):
    """The state during a migration: kube-proxy still holds :10256."""
    netns = sb.netns("cli")
    (tmp_path / "m").mkdir()
    holder = sb.spawn(netns, [sys.executable, "-c", (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('0.0.0.0', 10256)); s.listen(); print('ready', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        out = run_cli(sb, netns, ["proxy", "--manifests", str(tmp_path / "m"), "--mode", "iptables"])
    finally:
        holder.kill()
        holder.wait()
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "10256" in lines[0] and "kube-proxy" in lines[0], out.stderr
    rules = sb.run(netns, ["iptables-save"], capture_output=True, text=True).stdout
    assert "NP-" not in rules     # it stopped before its first sync


