"""The service proxy on real traffic: a 2-node lab, `netplane proxy` (iptables)
on each node, echo servers in the pods, and an external client namespace."""
import contextlib
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import new_lab
from netplane import sandbox
from netplane.kube.client import ENDPOINTSLICES, SERVICES
from netplane.kube.fake_apiserver import FakeApiServer
from netplane.lab import services, topology
from netplane.proxy import build as b
from netplane.proxy import modes

PORT = [{"name": "http", "port": 80, "protocol": "TCP"}]
TARGET = [{"name": "http", "port": services.TARGET_PORT, "protocol": "TCP"}]


MODE = {}
SYNC_1S = ("--sync-period", "1s")


@pytest.fixture(scope="module", params=modes.available())
def lab(tmp_path_factory, request):
    """A 2-node lab with every node's proxy in one mode; every test below runs
    once per mode. They wait for the proxies' own report of a sync
    (/healthz lastUpdated) and judge real packets, not one mode's rules."""
    MODE["now"] = request.param
    lab = new_lab(tmp_path_factory.mktemp("labs"))
    try:
        lab.up(2, "vxlan", pods_per_node=2, resync_interval=1.0)
        services.enable(lab, proxy_args=SYNC_1S, mode=request.param)
        yield lab
    finally:
        lab.down()


def start_proxy(lab, node, *extra, **kwargs):
    lab.start_proxy(node, "--sync-period", "1s", *extra, mode=MODE["now"], **kwargs)


def iptables_only():
    """For the checks about the iptables mode's own objects."""
    if MODE["now"] != "iptables":
        pytest.skip("about the iptables mode's rules")


def eventually(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout * sandbox.TIMEOUT_SCALE        # longer in the emulated VM
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.1)


def dnat_targets(lab, node: str, family: int = 4) -> str:
    return services.rules(lab, node, "nat", family)


@contextlib.contextmanager
def connecting(lab, pod, vip, duration: float, interval: float):
    """A client in `pod` connecting to vip:80 every `interval` s for
    `duration` s; the dict it yields holds the probe's result afterwards."""
    result = {}
    client = lab.spawn(pod, [sys.executable, "-m", "netplane.lab.probe", "tcp", vip, "80", "--count", "0",
                             "--duration", str(duration), "--interval", str(interval), "--timeout", "2"],
                       stdout=subprocess.PIPE, text=True)
    try:
        yield result
        out, _ = client.communicate(timeout=30 + duration)
        result.update(json.loads(out))
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def answers(lab, pod, vip, count=1, timeout=2.0):
    return services.probe(lab, pod, "tcp", vip, 80, count=count, timeout=timeout)


def test_demo_services_answer_as_kube_proxy_would(lab):
    """ClusterIP (TCP, UDP, IPv6), NodePort from outside, externalTrafficPolicy
    Local keeping the client address, LoadBalancer source ranges, externalIPs,
    affinity, hairpin and rejection without endpoints: real packets each."""
    checks = services.run_checks(lab)
    assert all(c.ok for c in checks), "\n".join(services.table(checks))


def test_the_node_itself_reaches_services_and_node_ports_on_its_addresses(lab):
    """From the node's own processes: a cluster IP, and a node port on the
    node's address; on localhost too where sockets are translated at
    connect() (eBPF: nothing is routed, so no route_localnet is needed)."""
    node = "node1"
    node_ip = next(ip for ip in lab.record.nodes[node].internal_ips if ":" not in ip)
    assert services.probe(lab, node, "tcp", "10.96.0.10", 80, count=5)["failed"] == 0
    assert services.probe(lab, node, "tcp", node_ip, 30080, count=5)["failed"] == 0
    if modes.get(MODE["now"]).translates_at_connect:
        assert services.probe(lab, node, "tcp", "127.0.0.1", 30080, count=5)["failed"] == 0


def test_affinity_holds_over_many_connections_and_other_clients_spread(lab):
    pods = sorted(lab.record.pods)
    for client in pods[:2]:
        got = services.probe(lab, client, "tcp", "10.96.0.11", 80, count=30)
        assert got["failed"] == 0 and len({a.split()[0] for a in got["answers"]}) == 1


def test_endpoint_churn_under_a_continuous_client_loses_no_connection(lab):
    """Endpoints leave (marked terminating, rules updated, then the server
    stops) and come back, one after another, while a client connects every
    10 ms; the service always keeps a ready endpoint, so nothing may fail."""
    pods = sorted(lab.record.pods)
    state = {p: True for p in pods}

    def publish():
        eps = [b.endpoint(lab.record.pods[p].ips[0], lab.record.pods[p].node, ready=up, serving=up,
                          terminating=not up) for p, up in state.items()]
        services.publish(lab, [b.service("churn", "10.96.0.30", PORT),
                               b.endpoint_slice("churn", eps, TARGET)], "churn.json")

    publish()
    with connecting(lab, pods[0], "10.96.0.30", duration=12, interval=0.01) as result:
        time.sleep(0.5)
        for pod in pods[1:]:
            state[pod] = False
            publish()                       # every proxy reports it out of the rules
            time.sleep(0.3)                 # the pod's grace period: connections already routed finish
            lab.stop(f"echo/{pod}")
            time.sleep(0.5)
            lab.serve(pod)
            state[pod] = True
            publish()
    assert result["failed"] == 0, result
    assert result["ok"] > 200 and len({a.split()[0] for a in result["answers"]}) == len(pods)
    log = open(os.path.join(lab.node_dir("node1"), "proxy.log")).read()
    assert "sync=partial" in log and " changed=1 " in log   # churn is applied by partial syncs


UDP_ASK = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"who\\n", (sys.argv[1], 53))
data, peer = s.recvfrom(1000)
print(peer[0], peer[1], data.decode().split()[0])
"""


def test_an_unconnected_udp_request_is_answered_from_the_service_address(lab):
    """A DNS-style exchange: sendto() the Service, recvfrom() the reply. The
    reply must come from the Service's address and port, or a resolver drops
    it (conntrack undoes the DNAT; the eBPF mode's recvmsg program puts the
    Service address back)."""
    pod, vip = sorted(lab.record.pods)[0], "10.96.0.10"
    done = lab.run(pod, [sys.executable, "-c", UDP_ASK, vip])
    assert done.returncode == 0, done.stderr
    addr, port, who = done.stdout.split()
    assert (addr, port) == (vip, "53") and who in lab.record.pods


UDP_CONNECTED = """
import socket, sys, time
def fresh():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    s.connect((sys.argv[1], 5301))
    return s
s, deadline, resets = fresh(), time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < deadline:
    try:
        s.send(b"who\\n")
        print(s.recv(1000).decode().split()[0], flush=True)
    except socket.timeout:
        print("-", flush=True)
    except OSError:                   # destroyed under us: an application reconnects
        resets += 1
        s = fresh()
    time.sleep(0.1)
print("resets", resets, flush=True)
"""


def test_a_connected_udp_socket_moves_when_its_backend_goes(lab):
    """A client keeps one connected UDP socket (as a resolver does) while its
    Service moves from pod A (still running) to pod B: its datagrams must
    reach B. NAT modes delete the conntrack entry that pinned it; the eBPF
    mode, whose socket talks to A directly, destroys the socket, and the
    client reconnects."""
    pods = sorted(lab.record.pods)
    a, b_pod, client = pods[1], pods[2], pods[0]
    udp = [{"name": "u", "port": 5301, "protocol": "UDP"}]
    target = [{"name": "u", "port": services.TARGET_PORT, "protocol": "UDP"}]

    def point_at(pod):
        services.publish(lab, [b.service("udpc", "10.96.0.32", udp), b.endpoint_slice(
            "udpc", [b.endpoint(lab.record.pods[pod].ips[0], lab.record.pods[pod].node)], target)], "udpc.json")

    point_at(a)
    time.sleep(1)
    proc = lab.spawn(client, [sys.executable, "-c", UDP_CONNECTED, "10.96.0.32", "6"], stdout=subprocess.PIPE,
                     text=True)
    try:
        time.sleep(2)
        point_at(b_pod)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    answers = out.split()
    assert a in answers[:5], out                           # first on A
    assert answers[-3] == b_pod, out                       # in the end on B (before "resets N")


def test_a_proxy_restart_fails_no_new_connection(lab):
    """A client in a pod connects every 20 ms while its node's proxy is
    stopped and started again: the rules (or the pinned programs and maps)
    stay in place meanwhile, and the new proxy takes over without a gap."""
    pod = sorted(lab.record.pods)[0]
    node = lab.record.pods[pod].node
    with connecting(lab, pod, "10.96.0.10", duration=6, interval=0.02) as result:
        time.sleep(1)
        since = time.time()
        lab.stop(f"proxy/{node}")
        time.sleep(0.5)
        start_proxy(lab, node)
        eventually(lambda: lab.proxy_synced_since(node, since), what="the restarted proxy's first sync")
    assert result["failed"] == 0 and result["ok"] > 150, result


@pytest.mark.parametrize("family", [4, 6])
def test_stale_udp_conntrack_entries_are_deleted_when_the_endpoint_changes(lab, family):
    """A UDP client keeps its source port; after the service moves from pod A
    to pod B (A still running), its next datagram must reach B, which only
    happens if the proxy deleted the conntrack entry that pinned it to A."""
    pods = sorted(lab.record.pods)
    a, b_pod, client = pods[1], pods[2], pods[0]
    vip = "10.96.0.31" if family == 4 else "fd00:96::31"
    udp = [{"name": "u", "port": 5300, "protocol": "UDP"}]
    target = [{"name": "u", "port": services.TARGET_PORT, "protocol": "UDP"}]

    def ip_of(pod):
        return next(ip for ip in lab.record.pods[pod].ips if (":" in ip) == (family == 6))

    def point_at(pod):
        services.publish(lab, [b.service(f"udp{family}", vip, udp), b.endpoint_slice(
            f"udp{family}", [b.endpoint(ip_of(pod), lab.record.pods[pod].node)], target, family=family)],
            f"udp{family}.json")

    def answered_by():
        return next(iter(services.probe(lab, client, "udp", vip, 5300, sport=40123)["answers"])).split()[0]

    point_at(a)
    assert answered_by() == a
    point_at(b_pod)
    eventually(lambda: answered_by() == b_pod, timeout=5, what="the client to reach the new endpoint")


# mode -> damage -> (the command, a listing, what the listing shows while the rules are in)
DAMAGE = {
    "iptables": {"deleted": "iptables -t nat -F && iptables -t nat -X", "flushed": "iptables -t nat -F",
                 "listing": "iptables-save -t nat", "present": "-A NP-SERVICES"},
    "ebpf": {"deleted": "bpftool cgroup detach {cgroup} connect4 pinned {pin}/prog_connect4",
             "listing": "bpftool cgroup show {cgroup}; tc filter show dev eth0 ingress", "present": "connect4",
             "flushed": "tc filter del dev eth0 ingress pref 20048", "present_too": "netplane_ingress"},
    "nftables": {"deleted": "nft delete table ip netplane", "flushed": "nft flush table ip netplane",
                 "base chain": "nft flush chain ip netplane nat-prerouting && nft delete chain ip netplane nat-prerouting",
                 "listing": "nft list chain ip netplane nat-prerouting", "present": "jump services"},
    # (the VM tier's: IPVS cleared by an admin, our table flushed, a base chain deleted)
    "ipvs": {"deleted": "ipvsadm -C", "flushed": "nft flush table ip netplane-ipvs",
             "base chain": "nft flush chain ip netplane-ipvs input && nft delete chain ip netplane-ipvs input",
             "listing": "ipvsadm -Ln; nft list chain ip netplane-ipvs input", "present": "TCP  10.96.0.10:80",
             "present_too": "vmap @no-endpoints"},
}


@pytest.mark.parametrize("damage", ["deleted", "flushed", "base chain"])
def test_a_flushed_or_deleted_table_is_rebuilt_by_the_next_sync(lab, damage):
    """An admin's `iptables -t nat -F` (our chains emptied, still defined) or
    `-F; -X` (deleted) on a node; under nftables, our table deleted or
    flushed, or one of its base chains deleted: the next periodic (1 s)
    sync sees the damage, runs in full, and services work again."""
    how = DAMAGE[MODE["now"]]
    if damage not in how:
        pytest.skip(f"the {MODE['now']} mode has no {damage}")
    node = "node1"
    log = os.path.join(lab.node_dir(node), "proxy.log")
    noticed = open(log).read().count("doing a full sync")

    where = {"cgroup": lab.cgroup(node), "pin": os.path.join(lab.bpffs_dir, node)}

    def rules_in():
        shown = lab.run(node, ["sh", "-c", how["listing"].format(**where) + " 2>/dev/null"]).stdout
        return how["present"] in shown and how.get("present_too", "") in shown

    lab.run(node, ["sh", "-c", how[damage].format(**where)], check=True)
    # gone, unless the proxy already put them back (in the slow VM, a look may take longer than a sync)
    assert not rules_in() or open(log).read().count("doing a full sync") > noticed
    eventually(rules_in, what="the service rules to come back")
    pod = next(p for p, r in lab.record.pods.items() if r.node == node)
    assert services.probe(lab, pod, "tcp", "10.96.0.10", 80, count=5)["failed"] == 0
    assert open(log).read().count("doing a full sync") > noticed


LEFTOVERS = {"iptables": ("iptables-save", ":NP-"), "nftables": ("nft list tables", "table ip netplane\n"),
             "ebpf": ("ls {pin}; tc filter show dev eth0 ingress", "prog_connect4"),
             "ipvs": ("ipvsadm -Ln; ip link show np-ipvs0; nft list tables", "np-ipvs0")}


def test_switching_modes_sweeps_the_old_modes_objects(lab):
    """Every proxy restarted in the other mode: the demo still answers, and
    once that mode's first sync is in, nothing of the old one is left."""
    other = next(m for m in LEFTOVERS if m != MODE["now"])

    def holds(mode, node):
        command, marker = LEFTOVERS[mode]
        return marker in lab.run(node, ["sh", "-c", command.format(pin=os.path.join(lab.bpffs_dir, node))]).stdout

    assert all(holds(MODE["now"], n) for n in lab.record.nodes)
    try:
        services.switch_mode(lab, other, proxy_args=SYNC_1S)
        assert not any(holds(MODE["now"], n) for n in lab.record.nodes)
        checks = services.run_checks(lab)
        assert all(c.ok for c in checks), "\n".join(services.table(checks))
    finally:
        services.switch_mode(lab, MODE["now"], proxy_args=SYNC_1S)
    assert not any(holds(other, n) for n in lab.record.nodes)


def test_a_broken_manifest_and_an_invalid_object_take_nothing_down(lab):
    pod = sorted(lab.record.pods)[0]
    services.publish(lab, [b.service("bad", "10.96.0.32", [{"port": 99999}]),
                           b.service("good", "10.96.0.33", PORT),
                           b.endpoint_slice("good", [lab.record.pods[pod].ips[0]], TARGET)], "mixed.json")
    assert services.probe(lab, pod, "tcp", "10.96.0.33", 80)["failed"] == 0
    with open(os.path.join(lab.manifests_dir, "demo.json"), "w") as f:
        f.write('{"kind": "List", "items": [')                       # a half-written edit
    time.sleep(2.5)
    assert services.probe(lab, pod, "tcp", "10.96.0.10", 80, count=5)["failed"] == 0
    log = open(os.path.join(lab.node_dir("node1"), "proxy.log")).read()
    assert "skipping Service default/bad" in log and "keeping the last good objects" in log
    services.write_manifests(lab, services.demo_objects(lab))


def test_a_vanished_manifests_directory_withdraws_nothing_until_it_is_back(lab):
    """A remount or a volume swap takes the directory away: every Service
    keeps working meanwhile (the proxies keep their last good objects),
    and the directory's return changes nothing."""
    pod = sorted(lab.record.pods)[0]
    away = lab.manifests_dir + ".away"
    os.rename(lab.manifests_dir, away)
    try:
        time.sleep(2.5)                                   # > 2 periodic syncs, and the 1 s fallback poll
        assert services.probe(lab, pod, "tcp", "10.96.0.10", 80, count=20)["failed"] == 0
    finally:
        os.rename(away, lab.manifests_dir)
    log = open(os.path.join(lab.node_dir("node1"), "proxy.log")).read()
    assert "is missing; keeping the" in log
    eventually(lambda: "is back; reading it again" in open(os.path.join(lab.node_dir("node1"), "proxy.log")).read(),
               what="the proxy to read the directory again")
    services.publish(lab, services.demo_objects(lab), "demo.json")
    assert services.probe(lab, pod, "tcp", "10.96.0.10", 80, count=5)["failed"] == 0


def test_health_and_metrics_endpoints(lab):
    health = lab.run("node1", ["curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:10256/healthz"])
    body, code = health.stdout.rsplit(" ", 1)
    assert code == "200" and set(json.loads(body)) == {"lastUpdated", "currentTime", "nodeEligible"}
    assert lab.run("node1", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             "http://127.0.0.1:10256/livez"]).stdout == "200"
    metrics = lab.run("node1", ["curl", "-s", "http://127.0.0.1:10249/metrics"]).stdout
    for name in ("kubeproxy_sync_proxy_rules_duration_seconds_count", "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                 "kubeproxy_sync_proxy_rules_service_changes_pending"):
        assert name in metrics
    count = float(next(l for l in metrics.splitlines() if l.startswith("kubeproxy_sync_proxy_rules_duration_seconds_count")).split()[1])
    assert count >= 1


def netplane(netns, *args, **kwargs):
    return subprocess.run(sandbox.enter(netns, [sys.executable, "-m", "netplane", *args]),
                          capture_output=True, text=True, **kwargs)


def test_once_then_cleanup_leave_foreign_rules_alone(tmp_path):
    """(The iptables mode's; it builds its own namespace, not the lab.)"""
    with sandbox.Sandbox() as sb:
        node = sb.netns("node")
        sb.run(node, ["iptables", "-t", "nat", "-N", "ADMIN-CHAIN"])
        sb.run(node, ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
        before = {t: sb.run(node, ["iptables-save", "-t", t], text=True).stdout for t in ("nat", "filter")}
        manifests = tmp_path / "m"
        manifests.mkdir()
        (manifests / "s.yaml").write_text(
            "kind: Service\napiVersion: v1\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n")
        once = netplane(node, "proxy", "--once", "--manifests", str(manifests), "--node-name", "n",
                        "--cluster-cidr", "10.244.0.0/16,fd00:10:244::/56")
        assert once.returncode == 0, once.stderr
        saved = sb.run(node, ["iptables-save"], text=True).stdout
        assert "default/s:" not in saved and "default/s has no endpoints" in saved and "-j NP-SERVICES" in saved
        assert "NP-PROXY-CANARY" in sb.run(node, ["ip6tables-save"], text=True).stdout
        cleanup = netplane(node, "proxy", "--cleanup")
        assert cleanup.returncode == 0 and "removed IPv4 nat NP-SERVICES" in cleanup.stdout
        after = {t: sb.run(node, ["iptables-save", "-t", t], text=True).stdout for t in ("nat", "filter")}
        strip = lambda text: [l for l in text.splitlines() if not l.startswith("#")]
        assert all(strip(after[t]) == strip(before[t]) for t in after)
        assert "NP-" not in sb.run(node, ["ip6tables-save"], text=True).stdout


def test_nftables_once_then_cleanup_leave_other_tables_alone(tmp_path):
    """(The nftables mode's; its own namespace.) `--once` installs one table
    per family; `--cleanup` deletes them and nothing else: an admin's table
    survives."""
    with sandbox.Sandbox() as sb:
        node = sb.netns("node")
        sb.run(node, ["nft", "add table inet admin; add chain inet admin input "
                             "{ type filter hook input priority 0; }; add rule inet admin input tcp dport 22 accept"])
        manifests = tmp_path / "m"
        manifests.mkdir()
        (manifests / "s.yaml").write_text(
            "kind: Service\napiVersion: v1\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n")
        once = netplane(node, "proxy", "--once", "--mode", "nftables", "--manifests", str(manifests),
                        "--node-name", "n", "--node-ip", "192.168.200.11", "--cluster-cidr", "10.244.0.0/16")
        assert once.returncode == 0, once.stderr
        listing = sb.run(node, ["nft", "list", "ruleset"], text=True).stdout
        assert "table ip netplane" in listing and "10.96.0.1 . tcp . 80 : goto reject-chain" in listing
        assert "table ip6 netplane" not in listing           # the node has no IPv6 address: one family
        cleanup = netplane(node, "proxy", "--cleanup", "--mode", "nftables", "--node-ip", "192.168.200.11")
        assert cleanup.returncode == 0 and "removed IPv4 table ip netplane" in cleanup.stdout, cleanup
        after = sb.run(node, ["nft", "list", "ruleset"], text=True).stdout
        assert "netplane" not in after and "tcp dport 22 accept" in after


def test_ebpf_cleanup_removes_every_program_pin_and_map(lab):
    """(The eBPF mode's.) `--cleanup` on a node: its programs leave the
    cgroup, its tc programs leave the devices, and the pins (programs and
    maps) go."""
    if MODE["now"] != "ebpf":
        pytest.skip("about the eBPF mode's objects")
    node = "node2"
    pin, cgroup = os.path.join(lab.bpffs_dir, node), lab.cgroup(node)
    assert "connect4" in subprocess.run(["bpftool", "cgroup", "show", cgroup], capture_output=True, text=True).stdout
    lab.stop(f"proxy/{node}")
    try:
        done = lab.run(node, [sys.executable, "-m", "netplane", "proxy", "--cleanup", "--mode", "ebpf",
                              "--ebpf-cgroup-path", cgroup, "--ebpf-pin-path", pin])
        assert done.returncode == 0, done.stderr
        assert "removed program connect4" in done.stdout and "removed map services" in done.stdout
        assert "removed tc programs on eth0" in done.stdout
        assert "netplane" not in lab.run(node, ["tc", "filter", "show", "dev", "eth0", "ingress"]).stdout
        assert subprocess.run(["bpftool", "cgroup", "show", cgroup], capture_output=True, text=True).stdout.strip() == ""
        assert not os.path.exists(pin)
    finally:
        since = time.time()
        start_proxy(lab, node)
        eventually(lambda: lab.proxy_synced_since(node, since), what="the proxy back")


def test_the_proxy_follows_services_on_the_kubernetes_api(lab, tmp_path):
    """Services and EndpointSlices from a fake API server in the control-plane
    namespace: a proxy on node1 watches it, keeps its rules while the API is
    away, and catches up after a relist."""
    underlay = os.path.join(sandbox.RUN_NETNS, f"npl-{lab.name}-underlay")
    api = FakeApiServer.in_netns(underlay, topology.CONTROL_PLANE_V4.split("/")[0], bookmark_interval=0.5).start()
    pod = sorted(lab.record.pods)[0]
    try:
        api.put(SERVICES, b.service("api-svc", "10.96.0.40", PORT))
        api.put(ENDPOINTSLICES, b.endpoint_slice("api-svc", [lab.record.pods[pod].ips[0]], TARGET))
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        lab.stop("proxy/node1")
        start_proxy(lab, "node1", source=("--kubeconfig", str(kubeconfig)))
        eventually(lambda: answers(lab, pod, "10.96.0.40", timeout=0.5)["failed"] == 0, what="the API's service")
        assert answers(lab, pod, "10.96.0.10", timeout=0.5)["failed"] == 1     # manifests are not read now
        api.pause()
        time.sleep(2.5)                                                   # > 2 periodic syncs
        assert services.probe(lab, pod, "tcp", "10.96.0.40", 80)["failed"] == 0
        api.delete(SERVICES, "api-svc", namespace="default")
        api.compact()
        api.resume()
        eventually(lambda: answers(lab, pod, "10.96.0.40", timeout=0.5)["failed"] == 1, what="the service to go")
    finally:
        lab.stop("proxy/node1")
        start_proxy(lab, "node1")
        api.stop()


def test_kube_proxy_layout_serves_the_same_and_switching_layouts_leaves_nothing_behind(lab):
    """The proxies above run the compact layout. Restarted with kube-proxy's
    (a SEP chain per endpoint), every demo check still passes; each restart
    is a full sync that deletes the other layout's leftover chains."""
    iptables_only()

    def sep_chains(node):
        return sorted(l for l in dnat_targets(lab, node).splitlines() if l.startswith(":NP-SEP-"))

    def restart(*extra):
        since = time.time()
        for node in sorted(lab.record.nodes):
            lab.stop(f"proxy/{node}")
            start_proxy(lab, node, *extra)
        eventually(lambda: lab.proxies_synced_since(since), what="the restarted proxies' first sync")

    eventually(lambda: "default/echo" in dnat_targets(lab, "node1"), what="the demo services")
    compact = {n: sep_chains(n) for n in lab.record.nodes}
    assert all(compact.values())          # the local endpoints' chains, for hairpin
    try:
        restart("--iptables-layout", "kube-proxy")
        eventually(lambda: all(len(sep_chains(n)) > len(compact[n]) for n in lab.record.nodes),
                   what="a chain per endpoint")
        checks = services.run_checks(lab)
        assert all(c.ok for c in checks), "\n".join(services.table(checks))
    finally:
        restart()
    eventually(lambda: {n: sep_chains(n) for n in lab.record.nodes} == compact,
               what=lambda: f"the compact chains alone: {compact} != {({n: sep_chains(n) for n in lab.record.nodes})}")


def test_no_sync_failed_along_the_way(lab):
    """Last of the module: through every test above (restarts, damage,
    churn, affinity and source-range Services), no proxy's sync failed.
    (A full sync once took the anonymous sets of rules' `{ ... }` for
    leftovers, and every later sync failed deleting them.)"""
    for node in lab.record.nodes:
        log = open(os.path.join(lab.node_dir(node), "proxy.log")).read()
        assert "sync failed" not in log, [line[:300] for line in log.splitlines() if "sync failed" in line][:3]


# -- traffic from outside the cluster (the external client), in every mode ---------

def node_ip(lab, node: str) -> str:
    return next(ip for ip in lab.record.nodes[node].internal_ips if ":" not in ip)


def test_no_endpoints_is_refused_at_once_from_outside(lab):
    """A node port whose Service has no endpoint: the client's connect fails
    at once (an ICMP port unreachable, or a reset), not by timeout."""
    services.publish(lab, [b.service("empty", "10.96.0.40", [dict(PORT[0], nodePort=30099)], type="NodePort")],
                     "empty.json")
    started = time.monotonic()
    got = services.probe(lab, "client", "tcp", node_ip(lab, "node1"), 30099, timeout=3)
    assert got["errors"].get("refused") == 1, got
    assert time.monotonic() - started < 2.5 * sandbox.TIMEOUT_SCALE     # (the probe's start is most of it)


def test_the_same_flow_gets_the_same_backend_through_either_node(lab):
    """(Maglev.) A client's connection from one source port answers from
    the same pod whichever node it enters through: both build the same
    table from the endpoints' addresses, and the hash leaves the node
    port's address out."""
    if MODE["now"] != "ebpf":
        pytest.skip("only the eBPF mode hashes flows consistently across nodes")
    for sport in range(40100, 40120):
        seen = set()
        for node in ("node1", "node2"):
            got = services.probe(lab, "client", "tcp", node_ip(lab, node), 30080, sport=sport)
            assert got["ok"] == 1, got
            seen |= {a.split()[0] for a in got["answers"]}
        assert len(seen) == 1, (sport, seen)


def test_endpoint_churn_under_an_external_client_loses_no_connection(lab):
    """As the pods' churn test, through a node port from outside: endpoints
    leave (terminating first) and come back while the client connects every
    10 ms to a node whose pods come and go too."""
    pods = sorted(lab.record.pods)
    state = {p: True for p in pods}

    def publish():
        eps = [b.endpoint(lab.record.pods[p].ips[0], lab.record.pods[p].node, ready=up, serving=up,
                          terminating=not up) for p, up in state.items()]
        services.publish(lab, [b.service("xchurn", "10.96.0.41", [dict(PORT[0], nodePort=30041)], type="NodePort"),
                               b.endpoint_slice("xchurn", eps, TARGET)], "xchurn.json")

    publish()
    client = lab.spawn("client", [sys.executable, "-m", "netplane.lab.probe", "tcp", node_ip(lab, "node1"), "30041",
                                  "--count", "0", "--duration", "10", "--interval", "0.01", "--timeout", "2"],
                       stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        for pod in pods[1:]:
            state[pod] = False
            publish()
            time.sleep(0.3)
            lab.stop(f"echo/{pod}")
            time.sleep(0.5)
            lab.serve(pod)
            state[pod] = True
            publish()
        out, _ = client.communicate(timeout=40)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    result = json.loads(out)
    assert result["failed"] == 0, result
    assert result["ok"] > 150 and len({a.split()[0] for a in result["answers"]}) == len(pods)


SINK = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        data = c.recv(65536)
        if not data:
            break
        n += len(data)
    c.sendall(str(n).encode())
    c.close()
"""

UPLOAD = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"x" * int(sys.argv[3]))
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
"""


def test_a_large_upload_crosses_a_small_mtu_path(lab):
    """Path-MTU discovery through the Service: node1 reaches the backend
    (on node2) over a 1280-byte path, so it answers the client's full-size
    segments with "fragmentation needed" about the translated packet; the
    proxy must translate that error back (the Service's address in it) or
    the client's kernel ignores it and the upload stalls."""
    pod = next(p for p, r in sorted(lab.record.pods.items()) if r.node == "node2")
    pod_ip = lab.record.pods[pod].ips[0]
    sink = lab.spawn(pod, [sys.executable, "-c", SINK, "9000"], stdout=subprocess.PIPE, text=True)
    route = f"{pod_ip}/32 via 10.244.2.0 dev np-vxlan onlink mtu lock 1280"
    try:
        assert sink.stdout.readline().strip() == "listening"
        target = [{"name": "http", "port": 9000, "protocol": "TCP"}]
        services.publish(lab, [b.service("sink", "10.96.0.42", [dict(PORT[0], nodePort=30042)], type="NodePort"),
                               b.endpoint_slice("sink", services.endpoints(lab, [pod]), target)], "sink.json")
        lab.run("node1", ["sh", "-c", f"ip route add {route}"], check=True)
        size = 2_000_000
        done = lab.run("client", [sys.executable, "-c", UPLOAD, node_ip(lab, "node1"), "30042", str(size)],
                       timeout=30)
        assert done.returncode == 0 and done.stdout.strip() == str(size), done
    finally:
        lab.run("node1", ["sh", "-c", f"ip route del {route}"])
        sink.kill()
        sink.wait()


BIG_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
got = set()
for i in range(int(sys.argv[3])):
    s.sendto(b"who " + b"x" * 3000, (sys.argv[1], int(sys.argv[2])))
    got.add(s.recvfrom(5000)[0].decode().split()[0])
print(" ".join(sorted(got)))
"""


def test_fragmented_datagrams_reach_the_service_from_outside(lab):
    """A 3 KB datagram leaves the client in three fragments: the first has
    the ports, the others only the IP header. Each must follow the first to
    the same backend, local (DNAT only) or remote (SNAT too)."""
    dns = {"name": "dns", "port": services.TARGET_PORT, "protocol": "UDP"}
    pods = sorted(lab.record.pods)
    services.publish(lab, [b.service("frag", "10.96.0.43", [{"name": "dns", "port": 53, "protocol": "UDP",
                                                             "nodePort": 30043}], type="NodePort"),
                           b.endpoint_slice("frag", services.endpoints(lab, pods), [dns])], "frag.json")
    done = lab.run("client", [sys.executable, "-c", BIG_UDP, node_ip(lab, "node1"), "30043", "20"], timeout=60)
    assert done.returncode == 0, done.stderr
    answered = set(done.stdout.split())
    assert answered and answered <= set(pods), done.stdout


def test_no_rule_of_ours_in_ebpf_mode(lab):
    """(The eBPF mode's.) Traffic from other machines is in the tc programs:
    no iptables chain nor nftables table of ours is left on any node."""
    if MODE["now"] != "ebpf":
        pytest.skip("about the eBPF mode")
    for node in lab.record.nodes:
        assert "netplane" not in lab.run(node, ["nft", "list", "tables"]).stdout
        assert ":NP-" not in lab.run(node, ["iptables-save"]).stdout
        assert "netplane_ingress" in lab.run(node, ["tc", "filter", "show", "dev", "eth0", "ingress"]).stdout


def test_a_port_no_service_uses_reaches_the_node_from_outside(lab):
    """What a healthCheckNodePort listener needs: a port in the node-port
    range that no Service uses, on the node's own address, is the node's:
    no program or rule of the proxy hides it."""
    server = lab.spawn("node1", [sys.executable, "-c", SINK, "30555"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        done = lab.run("client", [sys.executable, "-c", UPLOAD, node_ip(lab, "node1"), "30555", "1000"], timeout=10)
        assert done.returncode == 0 and done.stdout.strip() == "1000", done
    finally:
        server.kill()
        server.wait()


HEALTH_GET = """
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/", timeout=5) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"""


def test_health_check_node_port_says_which_nodes_have_a_local_endpoint(lab):
    """A load balancer in front of an externalTrafficPolicy Local Service
    probes each node's healthCheckNodePort and sends traffic only where it
    gets 200: the node with the Service's pod, not the other."""
    pod = next(p for p, r in sorted(lab.record.pods.items()) if r.node == "node2")
    services.publish(lab, [b.service("hc", "10.96.0.45", [dict(PORT[0], nodePort=30045)], type="LoadBalancer",
                                     externalTrafficPolicy="Local", healthCheckNodePort=30557),
                           b.endpoint_slice("hc", services.endpoints(lab, [pod]), TARGET)], "hc.json")
    answers = {}
    for node in ("node1", "node2"):
        done = lab.run("client", [sys.executable, "-c", HEALTH_GET, node_ip(lab, node), "30557"], timeout=30)
        status, _, body = done.stdout.strip().partition(" ")
        answers[node] = (int(status), json.loads(body))
    service = {"namespace": "default", "name": "hc"}
    assert answers == {"node1": (503, {"service": service, "localEndpoints": 0, "serviceProxyHealthy": True}),
                       "node2": (200, {"service": service, "localEndpoints": 1, "serviceProxyHealthy": True})}


REUSE = """
import socket, struct, sys
# One source port for every connection: one the kernel says is free now (a
# fixed number collided once with another client's ephemeral port).
probe = socket.socket()
probe.bind(("", 0))
port = probe.getsockname()[1]
probe.close()
fails = 0
for i in range(int(sys.argv[3])):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # the close is a reset
    s.settimeout(2)
    s.bind(("", port))
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
        s.recv(100)
    except OSError:
        fails += 1
    s.close()
print(fails)
"""


def test_one_source_port_reopened_at_once_many_times_through_a_node_port(lab):
    """A client that reconnects from the same port at once, again and again
    (a reset each time), through a node port whose only endpoint is on the
    other node: each new connection gets a translation (under eBPF, the
    same SNAT port as its predecessor, not one more per reuse until the
    range's probes run out)."""
    pod = next(p for p, r in sorted(lab.record.pods.items()) if r.node == "node2")
    services.publish(lab, [b.service("reuse", "10.96.0.44", [dict(PORT[0], nodePort=30044)], type="NodePort"),
                           b.endpoint_slice("reuse", services.endpoints(lab, [pod]), TARGET)], "reuse.json")
    done = lab.run("client", [sys.executable, "-c", REUSE, node_ip(lab, "node1"), "30044", "150"], timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "0", done


ICMP_WATCH = """
import json, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(float(sys.argv[1]))
print("ready", flush=True)
try:
    while True:
        data = s.recv(2000)
        ihl = (data[0] & 15) * 4
        if data[ihl] != 3:
            continue
        inner = data[ihl + 8:]
        iihl = (inner[0] & 15) * 4
        sport, dport = struct.unpack("!HH", inner[iihl:iihl + 4])
        print(json.dumps({"to": socket.inet_ntoa(data[16:20]), "quoted_src": socket.inet_ntoa(inner[12:16]),
                          "quoted_sport": sport, "quoted_dport": dport}))
        break
except socket.timeout:
    print("{}")
"""

ICMP_SEND = """
import socket, sys
from scapy.all import ICMP, IP, UDP, send
client, node, node_port, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((client, sport))
s.settimeout(2)
s.sendto(b"who\\n", (node, node_port))
print(s.recv(2000).decode().split()[0], flush=True)
# the client says the reply's port is unreachable: an ICMP error quoting it, as it came (node:nodePort -> client)
send(IP(src=client, dst=node) / ICMP(type=3, code=3) / IP(src=node, dst=client) / UDP(sport=node_port, dport=sport),
     verbose=False)
"""


def test_an_icmp_error_from_the_client_reaches_the_backend_translated(lab):
    """scapy makes what a socket cannot: the client's ICMP port unreachable
    about the Service's UDP reply. It must reach the backend pod (on
    another node) about the packet the pod sent (its own address and port
    quoted), or the pod's UDP socket never learns of the error."""
    pod = next(p for p, r in sorted(lab.record.pods.items()) if r.node == "node2")
    pod_ip = lab.record.pods[pod].ips[0]
    dns = {"name": "dns", "port": services.TARGET_PORT, "protocol": "UDP"}
    services.publish(lab, [b.service("icmp", "10.96.0.45", [{"name": "dns", "port": 53, "protocol": "UDP",
                                                             "nodePort": 30045}], type="NodePort"),
                           b.endpoint_slice("icmp", services.endpoints(lab, [pod]), [dns])], "icmp.json")
    watch = lab.spawn(pod, [sys.executable, "-c", ICMP_WATCH, "10"], stdout=subprocess.PIPE, text=True)
    try:
        assert watch.stdout.readline().strip() == "ready"
        client = topology.CLIENT_ADDRESSES[0].split("/")[0]
        done = lab.run("client", [sys.executable, "-c", ICMP_SEND, client, node_ip(lab, "node1"), "30045", "40800"],
                       timeout=30)
        assert done.returncode == 0 and done.stdout.split()[0] == pod, done
        seen = json.loads(watch.stdout.readline() or "{}")
    finally:
        watch.kill()
        watch.wait()
    assert seen.get("to") == pod_ip and seen.get("quoted_src") == pod_ip, seen
    assert seen.get("quoted_sport") == services.TARGET_PORT, seen
