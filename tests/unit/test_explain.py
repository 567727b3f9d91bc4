"""`netplane explain --manifests`, in every mode: what the proxy does to a
packet, through the mode's real compile and applier over its fake kernel and
the semantic suite's tracer (with chances and the rules crossed), said in
words and in JSON; and the live readers' parsing of iptables-save and nft's
listing. Node n1 (192.168.200.11) in cluster CIDR 10.244.0.0/16."""
import json

import pytest
import yaml

from netplane.cli import explain
from netplane.cli.common import Parser
from netplane.errors import OperatorError
from netplane.explain import live
from netplane.proxy import build as b

MODES = ["iptables", "nftables", "ebpf", "ipvs"]
NODE_IP, POD, OUTSIDE = "192.168.200.11", "10.244.1.9", "192.168.200.99"
LOCAL_EP, REMOTE_EP = "10.244.1.5:8080", "10.244.2.5:8080"
PORTS = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
BOTH = [b.endpoint("10.244.1.5", "n1"), b.endpoint("10.244.2.5", "n2")]


def manifests(tmp_path, endpoints=BOTH, **spec) -> str:
    objects = [b.service("web", "10.96.0.10", PORTS, type="NodePort", **spec)]
    if endpoints:
        objects.append(b.endpoint_slice("web", endpoints, EP_PORTS))
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


def run(capsys, *argv) -> tuple[int, str, str]:
    """As `netplane explain ARGV` (the command's parser, and main()'s one line for an OperatorError)."""
    parser = Parser(prog="netplane")
    explain.add_parser(parser.add_subparsers(parser_class=Parser))
    try:
        args = parser.parse_args(["explain", *argv])
        code = args.func(args)
    except OperatorError as err:
        print(f"netplane: {err}", file=__import__("sys").stderr)
        code = 2
    except SystemExit as done:
        code = done.code
    out, err = capsys.readouterr()
    return code, out, err


def explained(capsys, mode, path, src, dst, *extra) -> tuple[int, dict]:
    code, out, err = run(capsys, src, dst, "--manifests", path, "--mode", mode, "--node-name", "n1",
                         "--node-ip", NODE_IP, "--cluster-cidr", "10.244.0.0/16", "--json", *extra)
    assert err == "", err
    return code, json.loads(out)


@pytest.mark.parametrize("mode", MODES)
def test_a_cluster_ip_with_two_endpoints_names_both_at_even_chances_and_the_service(capsys, tmp_path, mode):
    code, got = explained(capsys, mode, manifests(tmp_path), POD, "10.96.0.10:80/tcp")
    assert code == 0 and got["outcome"] == "endpoint" and got["mode"] == mode
    assert {e["endpoint"]: e["weight"] for e in got["endpoints"]} == {LOCAL_EP: 0.5, REMOTE_EP: 0.5}
    assert got["service"] == "default/web:http" and got["frontend"] == "cluster IP"
    assert got["decided_by"], "the rule (chain, map entry) that decided is said"
    assert got["masquerade"] is False and not any(e["masquerade"] for e in got["endpoints"])


@pytest.mark.parametrize("mode", MODES)
def test_the_words_say_the_endpoints_chances_service_and_masquerade(capsys, tmp_path, mode):
    code, out, _ = run(capsys, POD, "10.96.0.10:80", "--manifests", manifests(tmp_path), "--mode", mode,
                       "--node-name", "n1", "--node-ip", NODE_IP, "--cluster-cidr", "10.244.0.0/16")
    assert code == 0
    assert "service    default/web:http (cluster IP)" in out
    assert f"{LOCAL_EP}   50.0%" in out and f"{REMOTE_EP}   50.0%" in out
    assert "masquerade no" in out and "inside the cluster CIDR 10.244.0.0/16" in out


@pytest.mark.parametrize("mode", MODES)
def test_a_service_without_endpoints_is_rejected(capsys, tmp_path, mode):
    code, got = explained(capsys, mode, manifests(tmp_path, endpoints=[]), POD, "10.96.0.10:80/tcp")
    assert code == 1 and got["outcome"] == "reject" and got["endpoints"] == []
    code, out, _ = run(capsys, POD, "10.96.0.10:80", "--manifests", manifests(tmp_path, endpoints=[]),
                       "--mode", mode, "--node-name", "n1", "--node-ip", NODE_IP)
    assert code == 1 and "REJECTED" in out


@pytest.mark.parametrize("mode", MODES)
def test_external_policy_local_without_local_endpoints_drops_outside_clients(capsys, tmp_path, mode):
    path = manifests(tmp_path, endpoints=[b.endpoint("10.244.2.5", "n2")], externalTrafficPolicy="Local")
    code, got = explained(capsys, mode, path, OUTSIDE, f"{NODE_IP}:30080/tcp")
    assert code == 1 and got["outcome"] == "drop" and got["frontend"] == "node port"
    code, got = explained(capsys, mode, path, POD, f"{NODE_IP}:30080/tcp")     # a pod is no external client
    assert code == 0 and [e["endpoint"] for e in got["endpoints"]] == [REMOTE_EP]


@pytest.mark.parametrize("mode", MODES)
def test_masquerade_is_said_for_a_source_outside_the_cluster_cidr(capsys, tmp_path, mode):
    path = manifests(tmp_path, endpoints=[b.endpoint("10.244.2.5", "n2")])
    code, got = explained(capsys, mode, path, OUTSIDE, "10.96.0.10:80/tcp")
    assert code == 0 and got["masquerade"] is True and got["endpoints"][0]["masquerade"] is True
    assert got["masquerade_steps"], "why it is masqueraded: the rule or entry that says so"
    code, out, _ = run(capsys, OUTSIDE, "10.96.0.10:80", "--manifests", path, "--mode", mode,
                       "--node-name", "n1", "--node-ip", NODE_IP, "--cluster-cidr", "10.244.0.0/16")
    assert "masquerade yes (SNAT)" in out


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_address_passes_untouched(capsys, tmp_path, mode):
    code, got = explained(capsys, mode, manifests(tmp_path), POD, "10.96.0.99:80/tcp")
    assert code == 3 and got["outcome"] == "untouched" and got["service"] is None
    # another port of a cluster IP: untouched, or rejected where the mode does it as kube-proxy's nftables mode
    code, got = explained(capsys, mode, manifests(tmp_path), POD, "10.96.0.10:81/tcp")
    assert (code, got["outcome"]) == ((1, "reject") if mode in ("nftables", "ipvs") else (3, "untouched"))


def test_the_weights_follow_the_endpoint_count(capsys, tmp_path):
    """Three endpoints: a third each, from iptables' chained probabilities as from nftables' numgen slots."""
    three = BOTH + [b.endpoint("10.244.3.5", "n3")]
    for mode in MODES:
        _, got = explained(capsys, mode, manifests(tmp_path, endpoints=three), POD, "10.96.0.10:80")
        assert [round(e["weight"], 4) for e in got["endpoints"]] == [0.3333] * 3, mode


@pytest.mark.parametrize("argv, names", [
    (["banana", "10.96.0.10:80/tcp"], "banana"),
    (["10.244.1.5", "10.96.0.10"], "10.96.0.10"),
    (["10.244.1.5", "10.96.0.10:http/tcp"], "'http'"),
    (["10.244.1.5", "10.96.0.10:70000"], "'70000'"),
    (["10.244.1.5", "10.96.0.10:80/icmp"], "'icmp'"),
    (["10.244.1.5", "[fd00::10]:80/tcp"], "same IP family"),
    (["10.244.1.5", "10.96.0.10:80", "--manifests", "/nonexistent/m"], "/nonexistent/m"),
    (["10.244.1.5", "10.96.0.10:80", "--netns", "np-no-such-netns"], "np-no-such-netns"),
    (["10.244.1.5", "10.96.0.10:80", "--mode", "userspace"], "userspace"),
    (["10.244.1.5", "10.96.0.10:80", "--manifests", "EMPTY", "--netns", "n1"], "--netns"),
    (["10.244.1.5", "10.96.0.10:80", "--manifests", "EMPTY", "--node-ip", "fd00::11"], "IPv6"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, names):
    code, out, err = run(capsys, *[str(tmp_path) if a == "EMPTY" else a for a in argv])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and names in err, err
    assert "Traceback" not in err


# -- the live readers' parsing --------------------------------------------------------------------

SAVED = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:NP-MARK-MASQ - [0:0]
:NP-POSTROUTING - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A PREROUTING -m comment --comment "netplane service portals" -j NP-SERVICES
-A POSTROUTING -m comment --comment "netplane postrouting rules" -j NP-POSTROUTING
-A NP-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A NP-POSTROUTING -j MARK --set-xmark 0x4000/0x0
COMMIT
"""


def test_iptables_save_is_read_back_into_the_rules_the_proxy_wrote():
    chains = live._ours("nat", live._saved_chains(SAVED))
    assert "DOCKER" not in chains                      # other software's chains and jumps are not ours to explain
    assert chains["PREROUTING"] == ['-A PREROUTING -m comment --comment "netplane service portals" -j NP-SERVICES']
    assert chains["NP-MARK-MASQ"] == ["-A NP-MARK-MASQ -j MARK --or-mark 0x4000"]
    assert chains["NP-POSTROUTING"] == ["-A NP-POSTROUTING -j MARK --xor-mark 0x4000"]


def test_nft_json_elements_are_read_as_the_fake_holds_them():
    assert live._element([{"concat": ["10.96.0.10", "tcp", 80]}, {"goto": {"target": "cluster-tcp-2"}}], True) \
        == (("10.96.0.10", "tcp", "80"), "goto cluster-tcp-2")
    assert live._element([{"concat": [30080, 1]}, {"concat": ["10.244.2.5", 8080]}], True) \
        == (("30080", "1"), ("10.244.2.5", "8080"))
    assert live._element({"prefix": {"addr": "10.0.0.0", "len": 8}}, False) == (("10.0.0.0/8",), None)
    assert live._element([{"concat": ["10.96.0.10", "tcp", 80]}, {"drop": None}], True)[1] == "drop"
    listed = "table ip netplane {\n\tchain services {\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n" \
             "\t}\n\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n" \
             "\t\tjump services\n\t}\n}\n"
    assert live._rule_texts(listed) == {"services": ["ip daddr . meta l4proto . th dport vmap @service-ips"],
                                        "nat-output": ["jump services"]}
