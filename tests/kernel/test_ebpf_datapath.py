"""The tc datapath (bpf/tc_lb.c) on crafted packets: what other machines'
traffic to a node port or load-balancer IP becomes, hop by hop, with no
network at all. ebpf_datapath_scenarios.py (beside this file) compiles the
program text the proxy loads, fills its maps as the proxy would, and plays
each scenario through tc_ingress / tc_egress by BPF_PROG_TEST_RUN, feeding
one hook's output to the next as the kernel would between them; it runs
once for the module, in a private mount namespace with its own bpffs (the
maps are pinned), and hands back every packet in and out. The tests here
judge those packets: addresses, ports, verdicts, and every checksum, since
a translated packet with a wrong checksum is dropped silently by the
receiver, which no verdict shows.

Nothing is attached and nothing is mounted in the host's namespaces.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, defragment
from scapy.layers.inet6 import ICMPv6DestUnreach, IPerror6, IPv6, IPv6ExtHdrFragment, defragment6, in6_chksum
from scapy.layers.l2 import Ether
from scapy.utils import checksum

from netplane.proxy.ebpf import mode

HERE = Path(__file__).parent
SCRIPT = HERE / "ebpf_datapath_scenarios.py"
_spec = importlib.util.spec_from_file_location("ebpf_datapath_scenarios", SCRIPT)
sc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sc)

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
NAT_PORTS = range(61000, 65535 + 1)             # the default SNAT range the scenarios compile with
FAMILIES = {4: (sc.CLIENT4, sc.NODE4, sc.REMOTE4, sc.LOCAL4), 6: (sc.CLIENT6, sc.NODE6, sc.REMOTE6, sc.LOCAL6)}


class Step(NamedTuple):
    hook: str
    retval: int
    sent: bytes
    got: bytes

    @property
    def out(self) -> Ether:
        return Ether(self.got)

    @property
    def inp(self) -> Ether:
        return Ether(self.sent)


@pytest.fixture(scope="module")
def played():
    """Every scenario's packets, from one run of the helper (two compiles)."""
    reason = mode.unavailable()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("loading BPF programs and mounting a private bpffs need root")
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs unshare(1) and mount(8) for a private bpffs")
    env = dict(os.environ)
    headers = mode._bootstrap_headers()
    if headers:
        env.setdefault("BCC_KERNEL_SOURCE", headers)
    repo = str(HERE.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    bpffs = tempfile.mkdtemp(prefix="netplane-bpffs-")
    try:
        # the mount lives and dies with the private mount namespace
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t bpf bpf "$1" && exec "$2" "$3" "$1"', "sh", bpffs, sys.executable, str(SCRIPT)],
            capture_output=True, text=True, env=env, cwd=repo, timeout=240)
    finally:
        os.rmdir(bpffs)
    if proc.returncode != 0:
        pytest.fail(f"the scenario helper failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scenario(played, name: str) -> dict[str, Step]:
    got = played["scenarios"][name]
    assert got["error"] is None, got["error"]
    return {s["label"]: Step(s["hook"], s["retval"], bytes.fromhex(s["in"]), bytes.fromhex(s["out"]))
            for s in got["steps"]}


def l3(pkt):
    return pkt[IPv6] if IPv6 in pkt else pkt[IP]


def tuple_of(pkt) -> tuple[str, int, str, int]:
    ip = l3(pkt)
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    return ip.src, l4.sport, ip.dst, l4.dport


def quoted_tuple(pkt: Ether) -> tuple[str, int, str, int]:
    """The (source, port, destination, port) of the packet an ICMP error quotes."""
    ip = pkt[IPerror] if IPerror in pkt else pkt[IPerror6]
    return ip.src, ip[TCPerror].sport, ip.dst, ip[TCPerror].dport


def assert_checksums(pkt: Ether) -> None:
    """The IPv4 header's and the L4 checksum as the packet holds them equal
    what scapy computes once they are deleted and the packet rebuilt."""
    wire = bytes(pkt)
    again = Ether(wire)
    ip = l3(again)
    l4 = ip.payload
    while isinstance(l4, IPv6ExtHdrFragment):
        l4 = l4.payload
    field = "cksum" if "cksum" in l4.fields else "chksum"
    held = (ip.chksum if IP in again else None, getattr(l4, field))
    if IP in again:
        assert checksum(wire[14:14 + ip.ihl * 4]) == 0, "the IPv4 header checksum"
        del ip.chksum
    delattr(l4, field)
    rebuilt = Ether(bytes(again))
    rl3 = l3(rebuilt)
    rl4 = rl3.payload
    while isinstance(rl4, IPv6ExtHdrFragment):
        rl4 = rl4.payload
    assert held == (rl3.chksum if IP in rebuilt else None, getattr(rl4, field)), type(l4).__name__


def assert_translated(step: Step, src: tuple[str, int], dst: tuple[str, int]) -> None:
    """Passed on (TC_ACT_OK) as src -> dst, checksums right, and nothing else changed."""
    assert step.retval == TC_ACT_OK, step
    out, inp = step.out, step.inp
    assert tuple_of(out) == (*src, *dst)
    assert_checksums(out)
    assert len(step.got) == len(step.sent)
    assert bytes(l3(out).payload.payload) == bytes(l3(inp).payload.payload)      # the payload
    if TCP in out:
        assert (out[TCP].seq, out[TCP].ack, out[TCP].flags) == (inp[TCP].seq, inp[TCP].ack, inp[TCP].flags)


@pytest.mark.parametrize("family", [4, 6])
def test_round_trip_through_a_remote_backend_is_dnated_and_snated(played, family):
    """A node port whose backend runs on another node: the client's SYN is
    DNATed at ingress, SNATed at egress (so the backend's reply comes back
    through this node: the SNAT address is the one nat_addresses holds for
    the test run's device, the loopback), the SYN-ACK to the SNAT port is
    handed back to the client at ingress, and its source becomes the node
    port again at egress: the client sees one connection with N:30080. The
    flow's next packet keeps its SNAT port."""
    client, node, remote, _ = FAMILIES[family]
    steps = scenario(played, f"round_trip{family}")
    assert_translated(steps["syn"], (client, 40000), (remote, sc.BACKEND_PORT))
    snat = steps["syn-egress"]
    natport = snat.out[TCP].sport
    assert natport in NAT_PORTS
    assert_translated(snat, (node, natport), (remote, sc.BACKEND_PORT))
    assert tuple_of(steps["synack"].inp) == (remote, sc.BACKEND_PORT, node, natport)
    assert_translated(steps["synack"], (remote, sc.BACKEND_PORT), (client, 40000))
    assert_translated(steps["synack-egress"], (node, sc.NODEPORT_REMOTE), (client, 40000))
    assert_translated(steps["ack"], (client, 40000), (remote, sc.BACKEND_PORT))
    assert_translated(steps["ack-egress"], (node, natport), (remote, sc.BACKEND_PORT))


def test_the_test_run_device_is_the_loopback(played):
    """nat_addresses is keyed by the device: the scenarios key it by the
    ifindex a test-run skb carries (probed), the loopback's."""
    assert played["ifindex"] == 1


@pytest.mark.parametrize("family", [4, 6])
def test_a_local_backend_keeps_the_clients_address(played, family):
    """A backend on this node is reached without SNAT (its reply comes back
    through the node anyway, and the pod sees the real client): ingress
    DNATs, egress leaves the client's packet alone, and the pod's reply gets
    the node port as its source at egress."""
    client, node, _, local = FAMILIES[family]
    steps = scenario(played, f"local{family}")
    assert_translated(steps["syn"], (client, 40001), (local, sc.BACKEND_PORT))
    egress = steps["syn-egress"]
    assert (egress.retval, egress.got) == (TC_ACT_OK, egress.sent)
    assert_translated(steps["synack-egress"], (node, sc.NODEPORT_LOCAL), (client, 40001))


def snat_ports(steps: dict[str, Step], prefix: str, n: int, label: str) -> list[int]:
    ports = []
    for i in range(n):
        step = steps[f"{prefix}{i}-{label}"]
        assert step.retval == TC_ACT_OK, (prefix, i, label)
        assert_checksums(step.out)
        src, sport, dst, dport = tuple_of(step.out)
        assert (src, dst, dport) == (sc.NODE4, sc.REMOTE4, sc.BACKEND_PORT)
        ports.append(sport)
    return ports


def test_snat_ports_are_distinct_in_range_and_stable(played):
    """Every flow to one backend gets its own SNAT port (else two clients'
    replies would meet at one (N, port) and one would get the other's),
    within NAT_PORT_MIN..NAT_PORT_MAX (outside the kernel's ephemeral
    range), and keeps it for all its packets: 64 client addresses, then one
    address with 64 source ports."""
    steps = scenario(played, "nat_ports")
    first = snat_ports(steps, "c", 64, "syn-egress")
    assert snat_ports(steps, "c", 64, "ack-egress") == first
    same_client = snat_ports(steps, "p", 64, "syn-egress")
    ports = first + same_client
    assert len(set(ports)) == len(ports) == 128
    assert all(p in NAT_PORTS for p in ports)


def test_snat_port_exhaustion_drops_rather_than_sharing(played):
    """With 8 SNAT ports and 8 flows holding them, a 9th flow's packet is
    dropped at egress (the client retries later) instead of being given a
    port another flow uses; the 8 keep theirs."""
    steps = scenario(played, "exhaustion")
    low, high = played["nat_small"]
    first = snat_ports(steps, "c", 8, "syn-egress")
    assert sorted(first) == list(range(low, high + 1))
    assert_translated(steps["ninth-syn"], ("198.18.1.9", 50008), (sc.REMOTE4, sc.BACKEND_PORT))
    assert steps["ninth-syn-egress"].retval == TC_ACT_SHOT
    assert steps["ninth-retry-egress"].retval == TC_ACT_SHOT
    assert snat_ports(steps, "c", 8, "ack-egress") == first


def test_an_expired_flows_snat_port_is_taken_again(played):
    """A SNAT port is held while its flow lives, not for ever: once the 8
    flows that took all 8 ports time out (never answered: CT_TCP_SYN, 2 s in
    this compile), the flow that was refused gets one of theirs."""
    steps = scenario(played, "expiry")
    low, high = played["nat_small"]
    ports = [steps[f"c{i}-syn-egress"].out[TCP].sport for i in range(8)]
    assert sorted(ports) == list(range(low, high + 1))
    assert steps["ninth-syn-egress"].retval == TC_ACT_SHOT
    retry = steps["ninth-retry-egress"]
    assert_translated(retry, (sc.NODE4, retry.out[TCP].sport), (sc.REMOTE_B, sc.BACKEND_PORT))
    assert retry.out[TCP].sport in ports


@pytest.mark.parametrize("family", [4, 6])
def test_a_service_without_endpoints_is_rejected(played, family):
    """No endpoint anywhere (count 0, no DROP flag): the client gets an ICMP
    port unreachable at once (sent back out the device: TC_ACT_REDIRECT),
    as kube-proxy's REJECT, quoting its packet so its stack finds the socket."""
    client, node, _, _ = FAMILIES[family]
    step = scenario(played, f"reject{family}")["syn"]
    assert step.retval == TC_ACT_REDIRECT
    out = step.out
    assert (l3(out).src, l3(out).dst) == (node, client)
    if family == 4:
        assert (out[ICMP].type, out[ICMP].code) == (3, 3)
        hlen = 20
        assert checksum(step.got[14 + 20:]) == 0 and checksum(step.got[14:14 + 20]) == 0
    else:
        assert ICMPv6DestUnreach in out and out[ICMPv6DestUnreach].code == 4
        hlen = 40
        assert icmp6_sum(step.got) == 0
    # the original IP header and at least the 8 bytes after it (the ports), from
    # the bytes: scapy would rebuild a quote cut within the TCP header as a whole one
    quote = step.got[14 + hlen + 8:]
    assert len(quote) >= hlen + 8 and quote == step.sent[14:14 + len(quote)]
    assert tuple_of(Ether(step.sent)) == (client, 40002, node, sc.NODEPORT_REJECT)


def test_a_local_policy_without_local_endpoints_drops(played):
    """Endpoints exist, none on this node, externalTrafficPolicy Local (the
    DROP flag): the packet is dropped, not refused, so a load balancer's
    health check moves the traffic to a node that has one."""
    assert scenario(played, "drop")["syn"].retval == TC_ACT_SHOT


def test_a_cluster_ip_routed_to_the_node_is_translated(played):
    """A cluster IP that reaches the node from outside (routed to it) is
    found in the cluster scope and DNATed to one of its slots."""
    assert_translated(scenario(played, "cluster_ip")["syn"], (sc.CLIENT4, 40005), (sc.LOCAL4, sc.BACKEND_PORT))


def test_load_balancer_source_ranges(played):
    """loadBalancerSourceRanges (an LPM trie by port id and source): a
    source inside 203.0.113.0/24 reaches the backend, any other is dropped."""
    steps = scenario(played, "source_ranges")
    assert_translated(steps["allowed"], ("203.0.113.7", 40003), (sc.REMOTE4, sc.BACKEND_PORT))
    assert steps["denied"].retval == TC_ACT_SHOT
    assert steps["denied-neighbour"].retval == TC_ACT_SHOT


def reassembled(outs: list[Ether], family: int):
    """The fragments put together (scapy's defragment), dissected again."""
    if family == 4:
        [datagram] = defragment([o[IP] for o in outs])
        return IP(bytes(datagram))
    return IPv6(bytes(defragment6([o[IPv6] for o in outs])))


@pytest.mark.parametrize("family", [4, 6])
def test_udp_fragments_follow_their_first_fragment(played, family):
    """A UDP datagram in 3 fragments to N:30080: only the first has ports,
    so the later ones take the flow from `frags`, and all reach the backend
    (a fragment left behind makes the whole datagram lost); the first
    fragment's UDP checksum, which covers the whole datagram, stays right
    for the reassembled datagram. At egress all are SNATed alike. A later
    fragment whose first never came is left alone."""
    steps = scenario(played, "fragments" if family == 4 else "fragments6")
    client = "192.0.2.60" if family == 4 else "2001:db8::60"
    node = sc.NODE4 if family == 4 else sc.NODE6
    remote = sc.REMOTE4 if family == 4 else sc.REMOTE6
    frags = [steps[f"frag{i}"] for i in range(3)]
    egress = [steps[f"frag{i}-egress"] for i in range(3)]
    original = reassembled([f.inp for f in frags], family)
    for step in frags + egress:
        assert step.retval == TC_ACT_OK
        assert len(step.got) == len(step.sent)
        if family == 4:
            assert checksum(bytes(step.out[IP])[:20]) == 0
            assert (step.out[IP].id, step.out[IP].frag, step.out[IP].flags) == \
                (step.inp[IP].id, step.inp[IP].frag, step.inp[IP].flags)
    for step in frags[1:] + egress[1:]:       # later fragments: only the addresses change
        assert bytes(l3(step.out).payload) == bytes(l3(step.inp).payload)

    dnatted = reassembled([f.out for f in frags], family)
    assert (dnatted.src, dnatted[UDP].sport, dnatted.dst, dnatted[UDP].dport) == \
        (client, 5000, remote, sc.BACKEND_PORT)
    assert bytes(dnatted[UDP].payload) == bytes(original[UDP].payload)
    assert_checksums(Ether() / dnatted)

    snatted = reassembled([f.out for f in egress], family)
    assert (snatted.src, snatted.dst, snatted[UDP].dport) == (node, remote, sc.BACKEND_PORT)
    assert snatted[UDP].sport in NAT_PORTS
    assert_checksums(Ether() / snatted)

    lone = steps["lone"]
    assert (lone.retval, lone.got) == (TC_ACT_OK, lone.sent)


def test_an_ipv4_udp_datagram_without_checksum_stays_without(played):
    """IPv4 UDP checksum 0 means "none": DNAT must not turn it into a
    (wrong) checksum, so the datagram is not dropped by the backend."""
    step = scenario(played, "udp_no_checksum")["datagram"]
    assert step.retval == TC_ACT_OK
    assert tuple_of(step.out) == ("192.0.2.62", 5001, sc.REMOTE4, sc.BACKEND_PORT)
    assert step.out[UDP].chksum == 0
    assert checksum(step.got[14:34]) == 0


def test_an_ipv4_udp_checksum_that_sums_to_zero_is_sent_as_ffff(played):
    """A translated datagram whose checksum computes to 0 must carry 0xffff:
    a 0 would tell the backend it has no checksum (BPF_F_MARK_MANGLED_0)."""
    step = scenario(played, "udp_checksum_ffff")["datagram"]
    assert step.retval == TC_ACT_OK
    assert tuple_of(step.out) == ("192.0.2.63", 5002, sc.REMOTE4, sc.BACKEND_PORT)
    assert step.out[UDP].chksum == 0xFFFF
    assert_checksums(step.out)


def icmp6_sum(wire: bytes) -> int:
    """The ICMPv6 message summed with its pseudo-header, its checksum
    included, as the receiver checks it: 0 when right. From the bytes, not
    a rebuild: a quote cut within the TCP header would not rebuild as it was."""
    return in6_chksum(58, IPv6(wire[14:54]), wire[54:])


def assert_icmp_error(step: Step, outer: tuple[str, str], inner: tuple[str, int, str, int]) -> None:
    """Passed on as outer[0] -> outer[1], quoting `inner`, with the outer
    IPv4 header's, the ICMP and the quoted IPv4 header's checksums right."""
    assert step.retval == TC_ACT_OK
    out = step.out
    assert (l3(out).src, l3(out).dst) == outer
    assert quoted_tuple(out) == inner
    assert len(step.got) == len(step.sent)
    l4 = 14 + 2 * (20 if IP in out else 40) + 8           # the quoted TCP header, past its ports
    assert step.got[l4 + 4:] == step.sent[l4 + 4:]
    if IP in out:                                           # from the bytes, as the receiver checks them
        assert checksum(step.got[14:34]) == 0, "the IPv4 header"
        assert checksum(step.got[34:]) == 0, "the ICMP checksum"
        assert checksum(step.got[42:62]) == 0, "the quoted IPv4 header"
    else:
        assert icmp6_sum(step.got) == 0, "the ICMPv6 checksum (with the pseudo-header)"


@pytest.mark.parametrize("name", ["round_trip4", "round_trip6", "local4", "local6"])
def test_the_nodes_fragmentation_needed_reaches_the_client_translated(played, name):
    """Path-MTU discovery: when this node cannot forward the client's DNATed
    packet it sends the client "fragmentation needed" quoting C -> backend,
    a connection the client never opened; egress makes the quote
    C:c -> N:30080 (and keeps every checksum right), so the client's stack
    finds its socket and lowers the MTU."""
    family = int(name[-1])
    client, node, remote, local = FAMILIES[family]
    cport, nodeport = (40000, sc.NODEPORT_REMOTE) if name.startswith("round") else (40001, sc.NODEPORT_LOCAL)
    step = scenario(played, name)["frag-needed"]
    assert quoted_tuple(step.inp)[2:] in ((remote, sc.BACKEND_PORT), (local, sc.BACKEND_PORT))
    assert_icmp_error(step, (node, client), (client, cport, node, nodeport))


@pytest.mark.parametrize("family", [4, 6])
def test_an_error_from_beyond_the_snat_reaches_the_client(played, family):
    """A router on the backend's side sends "fragmentation needed" about our
    SNATed packet (N:natport -> backend) to N. As any packet of the flow,
    it is translated in two halves: ingress hands it to the client (outer
    destination, quoted source C:c), egress makes the quoted destination
    the node port: the client's stack finds C:c -> N:30080, its socket."""
    client, node, remote, _ = FAMILIES[family]
    router = "10.244.2.1" if family == 4 else "fd00:244:2::1"
    steps = scenario(played, f"round_trip{family}")
    natport = steps["syn-egress"].out[TCP].sport
    assert quoted_tuple(steps["frag-needed-in"].inp) == (node, natport, remote, sc.BACKEND_PORT)
    assert_icmp_error(steps["frag-needed-in"], (router, client), (client, 40000, remote, sc.BACKEND_PORT))
    assert_icmp_error(steps["frag-needed-in-egress"], (router, client), (client, 40000, node, sc.NODEPORT_REMOTE))


@pytest.mark.parametrize("name", ["round_trip4", "round_trip6", "local4", "local6"])
def test_an_error_about_a_reply_reaches_the_backend(played, name):
    """A router on the client's side sends "fragmentation needed" about the
    reply N:30080 -> C:c to N: ingress sends it on to the backend, quoting
    backend:8080 -> C:c, and for a SNATed flow egress makes that
    backend:8080 -> N:natport, the connection the backend holds (a local
    backend holds the client's own)."""
    family = int(name[-1])
    client, node, remote, local = FAMILIES[family]
    client_router = "192.0.2.1" if family == 4 else "2001:db8::1"
    steps = scenario(played, name)
    if name.startswith("round"):
        backend, cport, nodeport = remote, 40000, sc.NODEPORT_REMOTE
        last = (node, steps["syn-egress"].out[TCP].sport)
    else:
        backend, cport, nodeport = local, 40001, sc.NODEPORT_LOCAL
        last = (client, cport)
    assert quoted_tuple(steps["reply-frag-needed"].inp) == (node, nodeport, client, cport)
    assert_icmp_error(steps["reply-frag-needed"], (client_router, backend), (backend, sc.BACKEND_PORT, client, cport))
    assert_icmp_error(steps["reply-frag-needed-egress"], (client_router, backend), (backend, sc.BACKEND_PORT, *last))


@pytest.mark.parametrize("family", [4, 6])
def test_the_clients_own_error_reaches_the_backend_from_the_snat_address(played, family):
    """The client itself refuses the reply (ICMP port unreachable from C):
    behind SNAT the backend never heard of C, so egress rewrites the outer
    source too, to the SNAT address, with the quote B:8080 -> N:natport."""
    client, node, remote, _ = FAMILIES[family]
    steps = scenario(played, f"round_trip{family}")
    natport = steps["syn-egress"].out[TCP].sport
    assert_icmp_error(steps["client-unreachable"], (client, remote), (remote, sc.BACKEND_PORT, client, 40000))
    assert_icmp_error(steps["client-unreachable-egress"], (node, remote), (remote, sc.BACKEND_PORT, node, natport))


@pytest.mark.parametrize("family", [4, 6])
def test_a_local_backends_icmp_error_comes_from_the_node_port(played, family):
    """The backend pod's own ICMP error about the client's packet leaves
    with the node port's address, outside and in the quote: the client
    never talked to the pod's address."""
    client, node, _, _ = FAMILIES[family]
    step = scenario(played, f"local{family}")["backend-unreachable"]
    assert_icmp_error(step, (node, client), (client, 40001, node, sc.NODEPORT_LOCAL))


def test_a_client_rst_closes_the_entry_and_a_new_syn_picks_again(played):
    """Connection tracking follows TCP: while the flow lives, its SYN
    (retransmitted) keeps the backend it got, even after the Service's
    Maglev table moved to another; the client's RST still reaches that
    backend and closes the entry, so a new SYN on the same tuple (a port
    reused) is a new connection, picked from the table as it is now."""
    steps = scenario(played, "tcp_state")
    flow = ("192.0.2.70", 40010)
    assert_translated(steps["syn"], flow, (sc.STATE_A, sc.BACKEND_PORT))
    assert_translated(steps["syn-again"], flow, (sc.STATE_A, sc.BACKEND_PORT))
    assert_translated(steps["rst"], flow, (sc.STATE_A, sc.BACKEND_PORT))
    assert_translated(steps["syn-after-rst"], flow, (sc.STATE_B, sc.BACKEND_PORT))


def test_a_backend_rst_closes_the_clients_entry(played):
    """The backend's RST (seen at egress, on its way to the client) closes
    the client's entry as well: the client's next SYN on that tuple is a
    new connection, picked from the table as it is now."""
    steps = scenario(played, "tcp_state")
    flow = ("192.0.2.71", 40011)
    assert_translated(steps["b-syn"], flow, (sc.STATE_B, sc.BACKEND_PORT))
    assert_translated(steps["b-rst"], (sc.NODE4, sc.NODEPORT_STATE), flow)
    assert_translated(steps["b-syn-after-rst"], flow, (sc.STATE_A, sc.BACKEND_PORT))
