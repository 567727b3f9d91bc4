"""`netplane explain --manifests`, in every mode: what the proxy does to a
packet, through the mode's real compile and applier over its fake kernel and
the semantic suite's tracer (with chances and the rules crossed), said in
words and in JSON; and the live readers' parsing of iptables-save and nft's
listing. Node n1 (192.168.200.11) in cluster CIDR 10.244.0.0/16."""
import json

import netaddr
import pytest
import yaml

from netplane import testing
from netplane.cli import explain
from netplane.cli.common import Parser
from netplane.errors import OperatorError
from netplane.explain import live, live_ebpf, live_ipvs
from netplane.explain.kernel import Kernel
from netplane.explain.packet import Packet
from netplane.proxy import build as b
from netplane.proxy.ebpf.mode import EbpfOptions
from netplane.proxy.ipvs import names as ipvs_names
from netplane.proxy.ipvs.plan import Key, VirtualServer
from netplane.proxy.policy import Node, family_policies
from netplane.proxy.settings import Settings
from netplane.proxy.state import snapshot
from netplane.testing.ipvs_trace import IpvsTracer

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


# -- the eBPF and IPVS modes' live readers, over the fakes' shapes --------------------------------

CIDR = netaddr.IPNetwork("10.244.0.0/16")
SETTINGS = Settings(Node("n1"), (netaddr.IPAddress(NODE_IP),), (CIDR,))
LOCAL = (NODE_IP, "127.0.0.1", "::1")
ADMINS = Key("TCP", "203.0.113.5", 80)            # an admin's virtual server (keepalived), not the proxy's
OBJECTS = [b.service("web", "10.96.0.10", PORTS, type="NodePort"), b.endpoint_slice("web", BOTH, EP_PORTS),
           b.service("local", "10.96.0.12", [dict(PORTS[0], nodePort=30082)], type="LoadBalancer",
                     externalTrafficPolicy="Local", ingress=["192.0.2.10"], loadBalancerSourceRanges=["198.51.100.0/24"]),
           b.endpoint_slice("local", [b.endpoint("10.244.1.7", "n1"), b.endpoint("10.244.2.7", "n2")], EP_PORTS),
           b.service("empty", "10.96.0.11", [dict(PORTS[0], nodePort=30081)], type="NodePort")]
TRACED = [(POD, "10.96.0.10", 80), (OUTSIDE, "10.96.0.10", 80), (OUTSIDE, NODE_IP, 30080), (POD, NODE_IP, 30082),
          (OUTSIDE, "192.0.2.10", 80), ("198.51.100.7", "192.0.2.10", 80), (POD, "10.96.0.11", 80),
          (NODE_IP, "10.96.0.10", 80), (POD, "203.0.113.5", 80), (POD, "10.96.0.99", 80)]


def programmed(mode: str):
    """The mode's fake kernel, programmed through its real applier from OBJECTS."""
    services = [o for o in OBJECTS if o["kind"] == "Service"]
    slices = [o for o in OBJECTS if o["kind"] != "Service"]
    policies = {4: family_policies(snapshot(services, slices).ports, 4, Node("n1"))}
    return testing.get(mode).program(SETTINGS, policies, LOCAL)


def traced(trace) -> list:
    """Each TRACED packet's verdict, with its ways (which Verdict's equality leaves out)."""
    return [(v, v.branches) for v in (trace(src, "tcp", dst, port) for src, dst, port in TRACED)]


def test_ipvs_live_reader_keeps_the_modes_own_virtual_servers_and_traces_as_the_fake_kernel():
    applier = programmed("ipvs").kernel[4]
    fake, table = applier.kernel, applier.nft.tables["ip"]
    fake.apply([(ADMINS, VirtualServer())], [], [("add", ADMINS, ("10.0.0.7", 80), 1)], [])
    # what the kernel's read_back() holds: the dump, np-ipvs0's addresses, the recorded node-port servers
    recorded = {Key(proto.upper(), address, int(port))
                for address, proto, port in table["sets"][ipvs_names.NODEPORT_SERVERS]["elements"]}
    installed = {"servers": fake.servers(), "addresses": applier.device.addresses(4), "recorded": recorded}
    held = live_ipvs.held(installed)
    assert set(held.services) == set(fake.services) - {ADMINS}
    assert Key("TCP", NODE_IP, 30080) in held.services          # a node-port server: ours as recorded
    local = LOCAL + tuple(sorted(applier.device.addresses(4)))
    del fake.services[ADMINS], fake.real[ADMINS]                  # the proxy's own, for the reference trace
    assert traced(IpvsTracer(table, local, held).trace) == traced(IpvsTracer(table, local, fake).trace)
    # a node-port server not recorded in the set is no Service of ours (it could be an admin's)
    assert Key("TCP", NODE_IP, 30080) not in live_ipvs.held(dict(installed, recorded=set())).services


def test_ebpf_pinned_maps_trace_as_the_fake_maps_they_are_read_into():
    done = programmed("ebpf")
    fake = done.kernel[4]
    pinned = live_ebpf.PinnedMaps("/pins", services=dict(fake.services), backends=dict(fake.backends),
                                  nodeports=dict(fake.nodeports), source_ranges=dict(fake.source_ranges),
                                  tables=live_ebpf.Tables(fake.tables))
    assert pinned.tables, "the node port and the load-balancer IP are served through Maglev tables"
    kernel = Kernel("ebpf", 4, pinned, LOCAL, (CIDR,))

    def trace(src, proto, dst, port):
        return kernel.trace(Packet(src, dst, port, proto))
    assert traced(trace) == traced(done.trace)


def test_ebpf_live_read_names_the_pin_path_it_found_empty(tmp_path):
    missing = str(tmp_path / "pins")
    with pytest.raises(OperatorError, match=f"no eBPF maps pinned under {missing}"):
        live.kernel("ebpf", 4, {"ebpf": EbpfOptions(pin_path=missing)}, (CIDR,))
    (tmp_path / "pins").mkdir()
    with pytest.raises(OperatorError, match=f"{missing} holds no pinned map services"):
        live.kernel("ebpf", 4, {"ebpf": EbpfOptions(pin_path=missing)}, (CIDR,))


def test_the_proxy_line_names_the_pin_path_for_ebpf_and_the_namespace_otherwise():
    pinned = live.LiveKernel("ebpf", 4, None, (), read_from="maps pinned under /sys/fs/bpf/np")
    assert live.where(pinned, None).startswith("live maps pinned under /sys/fs/bpf/np (")
    assert "not network namespace n1's" in live.where(pinned, "n1")
    assert live.where(live.LiveKernel("ipvs", 4, None, ()), None) == "live state of this network namespace"
    assert live.where(live.LiveKernel("nftables", 4, None, ()), "n1") == "live state of network namespace n1"


@pytest.mark.parametrize("present, found", [
    ({"ebpf", "nftables"}, "nftables"),      # the machine's pins do not hide this namespace's own mode
    ({"ebpf"}, "ebpf"),
    ({"ipvs"}, "ipvs"),
])
def test_detect_looks_for_the_namespaces_own_modes_before_the_machines_ebpf_pins(monkeypatch, present, found):
    monkeypatch.setattr(live, "_present", lambda name, family, options: name in present)
    assert live.detect(4, {}) == found


def test_detect_refuses_two_modes_of_one_namespace(monkeypatch):
    monkeypatch.setattr(live, "_present", lambda name, family, options: name in ("nftables", "ipvs"))
    with pytest.raises(OperatorError, match=r"several modes is here \(nftables, ipvs\).*--mode"):
        live.detect(4, {})


def test_nft_listing_is_read_back_into_the_rules_the_ipvs_mode_wrote():
    listed = ("table ip netplane-ipvs {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
              "\t\tct state new meta mark 0x4e500000/12 accept\n\t}\n\tchain postrouting {\n"
              "\t\tct mark & 0x00004000 == 0x00004000 masquerade fully-random\n\t}\n}\n")
    assert live._rule_texts(listed) == {
        "input": ["ct state new meta mark & 0xfff00000 == 0x4e500000 accept"],
        "postrouting": ["ct mark & 0x4000 == 0x4000 masquerade fully-random"]}


def test_a_mark_map_is_read_with_the_marks_in_hex_as_the_compile_writes_them(monkeypatch):
    listing = {"nftables": [{"map": {"name": "local-shortcut", "type": ["ipv4_addr", "inet_proto", "inet_service"],
                                     "map": "mark", "elem": [[{"concat": ["192.0.2.10", "tcp", 80]}, 1313865729]]}}]}
    monkeypatch.setattr(live, "_run", lambda argv: json.dumps(listing) if "-j" in argv else "")
    held = live.nft_table("ip", ipvs_names.TABLE)["sets"][ipvs_names.SHORTCUT]["elements"]
    assert held == {("192.0.2.10", "tcp", "80"): ("0x4e500001",)}


def test_a_whole_iptables_save_dump_is_split_by_table():
    """The live reader asks for whole dumps: `-t nat` would create the table in a legacy backend."""
    from netplane.explain.live import _tables_of

    dump = ("*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MARK --set-mark 1\nCOMMIT\n"
            "*nat\n:PREROUTING ACCEPT [0:0]\n:NP-SERVICES - [0:0]\n"
            "-A PREROUTING -m comment --comment \"netplane service portals\" -j NP-SERVICES\nCOMMIT\n"
            "*filter\n:INPUT ACCEPT [0:0]\n:NP-FIREWALL - [0:0]\nCOMMIT\n")
    tables = _tables_of(dump)
    assert set(tables) == {"nat", "filter"}
    assert tables["nat"]["NP-SERVICES"] == [] and tables["nat"]["PREROUTING"][0].endswith("-j NP-SERVICES")
    assert "NP-FIREWALL" in tables["filter"] and "PREROUTING" not in tables["filter"]


# -- the iptables tracer's ways: chances and the rules crossed ---------------------------------------

def test_the_iptables_tracer_weighs_each_random_choice_and_keeps_the_rules_each_way_matched():
    from netplane.testing.iptables_trace import Tracer

    svc = "-A NP-SVC-X -m statistic --mode random --probability 0.2500000000 -j NP-SEP-A"
    tables = {"nat": {"PREROUTING": ["-A PREROUTING -d 10.96.0.10/32 -j NP-SVC-X"],
                      "NP-SVC-X": [svc, "-A NP-SVC-X -j NP-SEP-B"],
                      "NP-SEP-A": ["-A NP-SEP-A -p tcp -j DNAT --to-destination 10.244.1.5:8080"],
                      "NP-SEP-B": ["-A NP-SEP-B -p tcp -j DNAT --to-destination 10.244.2.5:8080"]},
              "filter": {}}
    verdict = Tracer(tables, [NODE_IP]).trace(POD, "tcp", "10.96.0.10", 80)
    ways = {b.endpoint: b for b in verdict.branches}
    assert {ep: b.weight for ep, b in ways.items()} == {LOCAL_EP: 0.25, REMOTE_EP: 0.75}
    assert ways[LOCAL_EP].steps == ("nat PREROUTING: -A PREROUTING -d 10.96.0.10/32 -j NP-SVC-X", f"nat NP-SVC-X: {svc}",
                                    f"nat NP-SEP-A: {tables['nat']['NP-SEP-A'][0]}")
    assert ways[REMOTE_EP].steps[1] == "nat NP-SVC-X: -A NP-SVC-X -j NP-SEP-B"      # the choice passed over is no step
    assert verdict.endpoints == {LOCAL_EP, REMOTE_EP} and verdict.verdict == "ACCEPT"


# -- what an address serves when the port misses ---------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_a_service_address_on_another_port_names_what_it_serves(capsys, tmp_path, mode):
    path = manifests(tmp_path)
    code, out, _ = run(capsys, POD, "10.96.0.10:81", "--manifests", path, "--mode", mode, "--node-name", "n1",
                       "--node-ip", NODE_IP)
    assert "no Service port matches 10.96.0.10:81/tcp" in out and "not a Service address" not in out
    assert "10.96.0.10 serves default/web:http 80/tcp" in out
    _, got = explained(capsys, mode, path, POD, "10.96.0.10:81/tcp")
    assert got["on_address"] == ["default/web:http 80/tcp"]
    code, out, _ = run(capsys, POD, f"{NODE_IP}:22", "--manifests", path, "--mode", mode, "--node-name", "n1",
                       "--node-ip", NODE_IP)
    assert f"{NODE_IP} serves default/web:http node port 30080/tcp" in out
    code, out, _ = run(capsys, POD, "10.96.0.99:80", "--manifests", path, "--mode", mode, "--node-name", "n1",
                       "--node-ip", NODE_IP)
    assert code == 3 and "not a Service address: passes untouched" in out and "serves" not in out


@pytest.mark.parametrize("layout", ["compact", "kube-proxy"])
def test_live_iptables_rules_name_the_services_on_an_address(layout):
    from netplane.explain import names

    rules = programmed(f"iptables/{layout}").kernel[4].tables
    on = lambda dst: names.on_address_from_rules("iptables", rules, Packet(POD, dst, 81, "tcp"))  # noqa: E731
    assert on("10.96.0.10") == ("default/web:http 80/tcp",)
    assert on("10.96.0.11") == ("default/empty:http 80/tcp",)       # only a REJECT rule (no endpoints) holds it
    assert on("10.96.0.99") == ()
    assert names.on_address_from_rules("nftables", {}, Packet(POD, "10.96.0.10", 81, "tcp")) == ()


# -- manifests that do not parse ------------------------------------------------------------------

@pytest.mark.parametrize("as_dir", [False, True])
def test_manifests_that_do_not_parse_are_one_line_naming_the_file_and_exit_2(capsys, tmp_path, as_dir):
    good = manifests(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nmetadata: {name: x\n")
    code, out, err = run(capsys, POD, "10.96.0.10:80", "--manifests", str(tmp_path if as_dir else bad),
                         "--node-name", "n1", "--node-ip", NODE_IP)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert f"{bad}: invalid YAML" in err and err.count(str(bad)) == 1 and "last good" not in err
    assert good not in err


def test_a_bad_item_of_a_list_is_skipped_with_a_warning_and_the_rest_explained(capsys, tmp_path):
    path = tmp_path / "list.yaml"
    items = [5] + [b.service("web", "10.96.0.10", PORTS)]
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    code, out, err = run(capsys, POD, "10.96.0.10:80", "--manifests", str(path), "--node-name", "n1",
                         "--node-ip", NODE_IP)
    assert code == 1 and "service    default/web:http (cluster IP)" in out       # no endpoints: rejected
    assert "item 0" in err and err.count(str(path)) == 1 and len(err.strip().splitlines()) == 1, err


# -- live reads refused for lack of privilege ------------------------------------------------------

def test_detect_says_root_is_needed_when_a_mode_could_not_be_looked_for(monkeypatch):
    from pyroute2.netlink.exceptions import NetlinkError

    class Refusing:
        def applier(self, family, options):
            raise NetlinkError(1, "Operation not permitted")

        def options(self):
            return None
    monkeypatch.setattr(live.modes, "get", lambda name: Refusing())
    assert live._present("nftables", 4, {}) is None
    with pytest.raises(OperatorError, match=r"iptables/nftables/ipvs state here: permission denied; root \("
                                            r"CAP_NET_ADMIN\) is needed") as caught:
        live.detect(4, {})
    assert "is netplane proxy running" not in str(caught.value)


def test_detect_without_any_modes_state_still_asks_whether_the_proxy_runs(monkeypatch):
    monkeypatch.setattr(live, "_present", lambda name, family, options: False)
    with pytest.raises(OperatorError, match="is netplane proxy running here"):
        live.detect(4, {})


def test_a_tool_refused_for_lack_of_privilege_says_root_is_needed_even_where_failure_is_allowed():
    refused = ["sh", "-c", "echo 'iptables-save v1.8: Permission denied (you must be root)' >&2; exit 4"]
    with pytest.raises(OperatorError, match=r"^sh: iptables-save v1.8: Permission denied .*CAP_NET_ADMIN"):
        live._run(refused, missing_ok=True)
    assert live._run(["sh", "-c", "echo 'no such table' >&2; exit 1"], missing_ok=True) == ""
    with pytest.raises(OperatorError, match="no such table$"):
        live._run(["sh", "-c", "echo 'no such table' >&2; exit 1"])


@pytest.mark.parametrize("err, refused", [
    (PermissionError(13, "Permission denied"), True),
    (OSError(2, "No such file or directory"), False),
    (RuntimeError("iptables-nft-save: Could not fetch rule set generation id: Permission denied (you must be root)"),
     True),
    (RuntimeError("the kernel has no IPVS (is the ip_vs module loaded?)"), False),
])
def test_privilege_failures_are_told_from_others(err, refused):
    from netplane.explain.privilege import denied

    assert denied(err) is refused


@pytest.mark.parametrize("mode, served", [("iptables", True), ("ebpf", False)])
def test_live_words_never_claim_an_address_is_no_services(capsys, monkeypatch, mode, served):
    """Live, iptables' comments name what the address serves; eBPF maps hold no names,
    so a miss is said as one, without "not a Service address"."""
    held = programmed("iptables/compact" if mode == "iptables" else mode).kernel[4]
    state = held.tables if mode == "iptables" else held
    monkeypatch.setattr(live, "kernel", lambda *args: live.LiveKernel(mode, 4, state, LOCAL, (CIDR,)))
    code, out, _ = run(capsys, POD, "10.96.0.10:81", "--mode", mode)
    assert code == 3 and "no Service port matches 10.96.0.10:81/tcp: passes untouched" in out
    assert "not a Service address" not in out
    assert ("10.96.0.10 serves default/web:http 80/tcp" in out) is served
