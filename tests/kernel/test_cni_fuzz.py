"""A corpus of malformed inputs through both paths, on a real node namespace.

Each case runs once standalone (no agent on the node) and once through the
agent, as a runtime would run the installed plugin. Both must answer with
the same exit code and the same stdout; every error must be the spec's
error object with the case's code (never 999 or 11, which would mean a
crash or a dead worker); and a failed ADD must leave no reservation and no
veth behind. The cases are the defects an earlier fuzz found, plus wrong
types for each key, odd environments and stdin garbage.
"""
import json
from dataclasses import dataclass, field


from netplane.cni import config, runtime, versions

DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = ('{"a":' * 5000 + "1" + "}" * 5000).encode()
GOOD_PREV = {"interfaces": [{"name": "np0"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
             "ips": [{"address": "10.88.0.2/24", "gateway": "10.88.0.1", "interface": 1}],
             "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}], "dns": {}}
DROP = None  # a config key or variable given as None is left out


@dataclass(frozen=True)
class Case:
    id: str
    code: int                      # expected error code; 0: success
    verb: str = "ADD"
    conf: dict = field(default_factory=dict)    # overrides of the node's config
    stdin: bytes | None = None     # raw stdin instead of the config
    env: dict = field(default_factory=dict)     # overrides of the CNI_* environment


def prev(**changes) -> dict:
    return {**GOOD_PREV, **changes}


def prev_member(key: str, **changes) -> dict:
    return prev(**{key: [*GOOD_PREV[key][:-1], {**GOOD_PREV[key][-1], **changes}]})


def utf8(conf: dict) -> bytes:
    return json.dumps(conf).encode()


BASE = {"cniVersion": "1.0.0", "name": "testnet", "type": "netplane", "subnet": "10.88.0.0/24"}

CASES = [
    # The agent's request handling, before plugin.run: the environment
    # arrives as bytes, and a request may exceed what the agent keeps.
    Case("env-non-utf8-ifname", 4, env={"CNI_IFNAME": b"eth\xff"}),
    Case("env-non-utf8-cni-args", 7, conf={"name": "n" * 300}, env={"CNI_ARGS": b"K=\xff"}),
    Case("stdin-over-the-agents-4mib", 6, stdin=utf8({**BASE, "pad": "x" * (5 << 20)})),
    # The earlier fuzz's findings.
    Case("prev-dns-string", 7, conf={"prevResult": prev(dns="x")}),
    Case("prev-dns-number", 7, conf={"prevResult": prev(dns=5)}),
    Case("prev-dns-list", 7, conf={"prevResult": prev(dns=["8.8.8.8"])}),
    Case("prev-dns-nameservers-string", 7, conf={"prevResult": prev(dns={"nameservers": "8.8.8.8"})}),
    Case("prev-ifname-number", 7, conf={"prevResult": prev_member("interfaces", name=5)}),
    Case("prev-ip-interface-string", 7, conf={"prevResult": prev_member("ips", interface="x")}),
    Case("prev-ip-interface-out-of-range", 7, conf={"prevResult": prev_member("ips", interface=2)}),
    Case("nested-array-100k", 6, stdin=DEEP_ARRAY),
    Case("nested-object-5k", 6, stdin=DEEP_OBJECT),
    Case("name-70000", 7, conf={"name": "n" * 70_000}),
    Case("name-300", 7, conf={"name": "n" * 300}),
    Case("bridge-nul", 7, conf={"bridge": "np\x00"}),
    Case("subnet-trailing-newline", 7, conf={"subnet": "10.88.0.0/16\n"}),
    Case("stdin-utf16", 6, stdin=json.dumps(BASE).encode("utf-16")),
    # Wrong types and values for each key.
    Case("name-number", 7, conf={"name": 5}),
    Case("name-missing", 7, conf={"name": DROP}),
    Case("name-slash", 7, conf={"name": "a/b"}),
    Case("bridge-number", 7, conf={"bridge": 5}),
    Case("bridge-16-bytes", 7, conf={"bridge": "b" * 16}),
    Case("bridge-space", 7, conf={"bridge": "np 0"}),
    Case("subnet-number", 7, conf={"subnet": 5}),
    Case("subnet-empty-list", 7, conf={"subnet": []}),
    Case("subnet-host-bits", 7, conf={"subnet": "10.88.0.5/24"}),
    Case("subnet-netmask", 7, conf={"subnet": "10.88.0.0/255.255.255.0"}),
    Case("subnet-ipv6-only", 7, conf={"subnet": ["fd00:88::/64"]}),
    Case("subnet-object", 7, conf={"subnet": {"v4": "10.88.0.0/24"}}),
    Case("mtu-string", 7, conf={"mtu": "1400"}),
    Case("mtu-float", 7, conf={"mtu": 1400.5}),
    Case("mtu-bool", 7, conf={"mtu": True}),
    Case("mtu-tiny", 7, conf={"mtu": 100}),
    Case("datadir-relative", 7, conf={"dataDir": "ipam"}),
    Case("datadir-long-component", 7, conf={"dataDir": "/tmp/" + "d" * 300}),
    Case("statefile-list", 7, conf={"stateFile": []}),
    Case("type-bridge", 7, conf={"type": "bridge"}),
    Case("type-missing", 7, conf={"type": DROP}),
    Case("cniversion-number", 6, conf={"cniVersion": 1}),
    Case("cniversion-old", 1, conf={"cniVersion": "0.2.0"}),
    Case("cniversion-missing", 1, conf={"cniVersion": DROP}),
    Case("ipam-section", 2, conf={"ipam": {"type": "host-local"}}),
    Case("prev-not-object", 7, conf={"prevResult": []}),
    Case("prev-ips-string", 7, conf={"prevResult": prev(ips="nope")}),
    Case("prev-ip-address-no-prefix", 7, conf={"prevResult": prev_member("ips", address="10.88.0.2")}),
    Case("prev-route-dst-missing", 7, conf={"prevResult": prev_member("routes", dst=DROP)}),
    Case("prev-mtu-bool", 7, conf={"prevResult": prev_member("interfaces", mtu=True)}),
    # Odd environments.
    Case("command-missing", 4, env={"CNI_COMMAND": DROP}),
    Case("command-lowercase", 4, env={"CNI_COMMAND": "add"}),
    Case("ifname-missing", 4, env={"CNI_IFNAME": DROP}),
    Case("containerid-traversal", 4, env={"CNI_CONTAINERID": "../../etc"}),
    Case("containerid-300", 4, env={"CNI_CONTAINERID": "c" * 300}),
    Case("ifname-control", 4, env={"CNI_IFNAME": "eth\x01"}),
    Case("ifname-16-bytes", 4, env={"CNI_IFNAME": "i" * 16}),
    Case("netns-missing", 3, env={"CNI_NETNS": "/run/netns/netplane-none-such"}),
    Case("netns-node-own", 4, env={"CNI_NETNS": "/proc/self/ns/net"}),
    Case("netns-not-a-netns", 4, env={"CNI_NETNS": "/proc/self/status"}),
    Case("cni-args-malformed", 4, env={"CNI_ARGS": "K8S_POD_NAME"}),
    Case("cni-args-huge-malformed", 4, env={"CNI_ARGS": "K=V;" * 20_000 + "oops"}),
    # stdin garbage.
    Case("stdin-empty", 6, stdin=b""),
    Case("stdin-not-json", 6, stdin=b"not json"),
    Case("stdin-array", 6, stdin=b"[1]"),
    Case("stdin-utf8-bom", 6, stdin=b"\xef\xbb\xbf" + utf8(BASE)),
    Case("stdin-latin1", 6, stdin=utf8(BASE)[:-1] + b', "comment": "r\xe9seau"}'),
    Case("stdin-nan", 6, stdin=utf8(BASE)[:-1] + b', "mtu": NaN}'),
    Case("stdin-lone-surrogate", 6, stdin=utf8(BASE)[:-1] + b', "bridge": "\\ud800"}'),
    Case("stdin-2mib", 6, stdin=utf8({**BASE, "pad": "x" * (2 << 20)})),
    # The other verbs.
    Case("check-without-prev", 7, verb="CHECK"),
    Case("check-prev-dns-string", 7, verb="CHECK", conf={"prevResult": prev(dns="x")}),
    Case("check-old-version", 1, verb="CHECK", conf={"cniVersion": "0.3.1", "prevResult": GOOD_PREV}),
    Case("gc-without-list", 7, verb="GC", conf={"cniVersion": "1.1.0"}),
    Case("gc-list-string", 7, verb="GC", conf={"cniVersion": "1.1.0", "cni.dev/valid-attachments": "x"}),
    Case("status-old-version", 1, verb="STATUS"),
    Case("del-name-300", 7, verb="DEL", conf={"name": "n" * 300}),
    Case("del-containerid-missing", 4, verb="DEL", env={"CNI_CONTAINERID": DROP}),
    Case("version-nested", 0, verb="VERSION", stdin=DEEP_ARRAY),
    Case("version-utf16", 0, verb="VERSION", stdin=b'{"cniVersion": "0.4.0"}'.decode().encode("utf-16")),
    Case("version-asks-0.4.0", 0, verb="VERSION", stdin=b'{"cniVersion": "0.4.0"}'),
]


def run_case(node, case: Case) -> tuple[int, bytes]:
    env = runtime.env_for(case.verb, container_id="p1", netns=node.pods["p1"], ifname="eth0")
    env.update(case.env)
    env = {k: v for k, v in env.items() if v is not None}
    if case.stdin is not None:
        stdin = case.stdin
    else:
        body = {**node.conf, **case.conf}
        stdin = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
    out = runtime.invoke(node.plugin, env, stdin, node_netns=node.netns)
    return out.exit_code, out.stdout


def problems_with(node, case: Case, exit_code: int, stdout: bytes) -> list[str]:
    """What is wrong with one answer (empty: nothing)."""
    found = []
    try:
        out = json.loads(stdout)
    except ValueError:
        return [f"stdout is not JSON: {stdout[:200]!r}"]
    if case.code == 0:
        if exit_code != 0 or set(out) != {"cniVersion", "supportedVersions"}:
            found.append(f"expected success, got exit {exit_code}: {out}")
    elif (exit_code != 1 or out.get("code") != case.code or not set(out) <= {"cniVersion", "code", "msg", "details"}
          or out.get("cniVersion") not in versions.SUPPORTED or not isinstance(out.get("msg"), str) or not out["msg"]
          or not isinstance(out.get("details", ""), str)):
        found.append(f"expected the spec's error object with code {case.code}, got exit {exit_code}: {out}")
    if case.verb == "ADD":
        if node.reserved():
            found.append(f"reservations left behind: {node.reserved()}")
        if node.veths():
            found.append(f"veths left behind: {node.veths()}")
    return found


def run_corpus(node) -> dict[str, tuple[int, bytes]]:
    answers, problems = {}, []
    for case in CASES:
        answers[case.id] = run_case(node, case)
        problems += [f"{case.id}: {p}" for p in problems_with(node, case, *answers[case.id])]
    assert not problems, "\n".join(problems)
    return answers


def test_both_paths_answer_every_malformed_input_the_same(node):
    assert len({c.id for c in CASES}) == len(CASES)
    assert config.MAX_STDIN < 2 << 20 < 4 << 20   # stdin-2mib: refused by us, not by the agent's request limit
    node.pod("p1")
    standalone = run_corpus(node)
    node.start_agent()
    agent = run_corpus(node)
    differ = [f"{c.id}: standalone {standalone[c.id]!r}\n    agent {agent[c.id]!r}"
              for c in CASES if standalone[c.id] != agent[c.id]]
    assert not differ, "\n".join(differ)
    assert node.agent.poll() is None, "the agent died"
