"""`netplane compile` as a CI lint: one warning line per problem on stderr,
--strict exits 1 on any, the plan is printed either way; a file works as
well as a directory; the jumps from the kernel's chains are printed."""
import json
import re

import pytest

from netplane.cli import main

SERVICE = {"kind": "Service", "metadata": {"name": "web"},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080}]}}
SLICE = {"kind": "EndpointSlice", "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.2.3"], "nodeName": "n2"}],
         "ports": [{"port": 80}]}
BAD = {"kind": "Service", "metadata": {"name": "bad"}, "spec": {"clusterIP": "10.96.0.11", "ports": [{"port": 70000}]}}
DEPLOYMENT = {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}}
NODE = ["--node-ip", "192.168.1.1", "--node-name", "n1"]


def manifests(tmp_path, *objects, name="m"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "app.yaml").write_text("\n---\n".join(json.dumps(o) for o in objects))
    return folder


def compile_(capsys, *argv):
    code = main(["compile", *argv])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line]


def test_a_skipped_object_is_one_warning_and_fails_only_with_strict(tmp_path, capsys):
    folder = str(manifests(tmp_path, SERVICE, SLICE, BAD))
    code, out, err = compile_(capsys, "--manifests", folder, *NODE)
    assert code == 0 and "10.96.0.10" in out and "10.96.0.11" not in out
    [warning] = err
    assert "level=warning" in warning and "Service default/bad" in warning and "70000" in warning
    code, out, err = compile_(capsys, "--manifests", folder, *NODE, "--strict")
    assert code == 1 and "10.96.0.10" in out                       # the plan is still printed
    assert "Service default/bad" in err[0] and "--strict" in err[-1] and len(err) == 2


def test_a_clean_directory_with_other_kinds_passes_strict(tmp_path, capsys):
    code, out, err = compile_(capsys, "--manifests", str(manifests(tmp_path, DEPLOYMENT, SERVICE, SLICE)), *NODE,
                              "--strict")
    assert (code, err) == (0, []) and "10.96.0.10" in out


def test_a_file_that_does_not_parse_fails_strict(tmp_path, capsys):
    folder = manifests(tmp_path, SERVICE, SLICE)
    (folder / "broken.yaml").write_text("kind: Service\nspec: [unclosed\n")
    code, out, err = compile_(capsys, "--manifests", str(folder), *NODE, "--strict")
    assert code == 1 and "10.96.0.10" in out and "broken.yaml" in err[0]


def test_a_file_works_as_well_as_a_directory(tmp_path, capsys):
    folder = manifests(tmp_path, DEPLOYMENT, SERVICE, SLICE)
    _, from_folder, _ = compile_(capsys, "--manifests", str(folder), *NODE)
    code, from_file, err = compile_(capsys, "--manifests", str(folder / "app.yaml"), *NODE, "--strict")
    assert (code, err) == (0, []) and from_file == from_folder and "10.244.2.3" in from_file


def test_a_missing_source_is_one_line_naming_it(tmp_path, capsys):
    code, _, err = compile_(capsys, "--manifests", str(tmp_path / "nowhere.yaml"))
    assert code == 2 and err == [f"netplane: manifests {tmp_path / 'nowhere.yaml'}: no such file or directory"]


def declared(plan: str) -> dict[str, set[str]]:
    """table -> the chains an iptables-restore text declares."""
    found, table = {}, None
    for line in plan.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            found.setdefault(table, set()).add(line[1:].split()[0])
    return found


def test_the_iptables_jumps_are_printed_and_lead_into_chains_the_plan_declares(tmp_path, capsys):
    code, out, _ = compile_(capsys, "--manifests", str(manifests(tmp_path, SERVICE, SLICE)), *NODE)
    plan, _, jumps = out.partition("# jumps from the kernel's chains")
    assert code == 0 and jumps and "not by iptables-restore" in jumps.splitlines()[0]
    chains, table, targets = declared(plan), None, []
    for line in jumps.splitlines()[1:]:
        if line.startswith("# iptables -t "):
            table = line.split()[-1]
        elif line.startswith("-A "):
            builtin, target = line.split()[1], line.split()[-1]
            assert builtin in {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
            assert target in chains[table], f"{line} jumps to a chain the {table} plan does not declare"
            targets.append((table, builtin, target))
    assert ("nat", "PREROUTING", "NP-SERVICES") in targets and ("nat", "POSTROUTING", "NP-POSTROUTING") in targets
    assert {t for t, _, _ in targets} == {"nat", "filter"}


@pytest.mark.parametrize("mode,says", [("nftables", "base chains in the plan above carry the hooks (nat-prerouting"),
                                       ("ipvs", "sysctl"), ("ebpf", "CGROUP_INET4_CONNECT")])
def test_every_mode_says_what_it_hooks_into_the_kernel(tmp_path, capsys, mode, says):
    code, out, _ = compile_(capsys, "--manifests", str(manifests(tmp_path, SERVICE, SLICE)), *NODE, "--mode", mode)
    assert code == 0 and says in out.partition("# jumps from the kernel's chains")[2]


def test_a_node_port_filter_matching_none_of_the_node_ips_warns_and_fails_strict(tmp_path, capsys):
    folder = str(manifests(tmp_path, SERVICE, SLICE))
    code, out, err = compile_(capsys, "--manifests", folder, *NODE, "--nodeport-addresses", "192.168.1.0/24")
    assert (code, err) == (0, []) and re.search(r"-A NP-SERVICES -d 192\.168\.1\.1/32 .*-j NP-NODEPORTS", out)
    code, out, err = compile_(capsys, "--manifests", folder, *NODE, "--nodeport-addresses", "10.0.0.0/8", "--strict")
    assert code == 1 and "-j NP-NODEPORTS" not in out and "10.96.0.10" in out     # node ports unreachable
    assert re.search(r"10\.0\.0\.0/8 matches none of the node's IPv4 addresses, 192\.168\.1\.1, 127\.0\.0\.1 "
                     r"\(from --node-ip, and loopback\)", err[0])


def test_a_loopback_filter_passes_strict_with_localhost_node_ports_and_fails_without(tmp_path, capsys):
    # loopback is every node's address: with --node-ip it is counted, and planned, as on the node
    folder = str(manifests(tmp_path, SERVICE, SLICE))
    code, out, err = compile_(capsys, "--manifests", folder, *NODE, "--nodeport-addresses", "127.0.0.0/8", "--strict")
    assert (code, err) == (0, []) and re.search(r"-A NP-SERVICES -d 127\.0\.0\.1/32 .*-j NP-NODEPORTS", out)
    assert "route_localnet=1" in out
    code, out, err = compile_(capsys, "--manifests", folder, *NODE, "--nodeport-addresses", "127.0.0.0/8", "--strict",
                              "--iptables-localhost-nodeports=false")
    assert code == 1 and "-j NP-NODEPORTS" not in out and "route_localnet" not in out
    assert "127.0.0.0/8 matches only loopback among the node's IPv4 addresses" in err[0]


def test_without_node_ips_the_filter_is_matched_against_this_machines_addresses(tmp_path, capsys):
    # 127.0.0.1 is on every machine's loopback; TEST-NET-3 is on none
    folder = str(manifests(tmp_path, SERVICE, SLICE))
    code, _, err = compile_(capsys, "--manifests", folder, "--nodeport-addresses", "127.0.0.0/8,203.0.113.0/24",
                            "--strict")
    assert (code, err) == (0, [])
    code, _, err = compile_(capsys, "--manifests", folder, "--nodeport-addresses", "203.0.113.0/24", "--strict")
    assert code == 1 and "127.0.0.1" in err[0] and "this machine's, as no --node-ip was given" in err[0]
