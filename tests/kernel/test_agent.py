"""What only the agent path does: state file, deferred teardown, trust."""
import os
import socket

from netplane import sandbox
from netplane.cni import runtime, shim
from netplane.netlink.netns import call_in_netns, open_netns


def test_pod_cidr_and_mtu_from_the_agents_state_file(node):
    state = str(node.tmp / "node.json")
    node.start_agent("--node-name", "n1", "--pod-cidr", "10.90.3.0/24", "--mtu", "1380", "--state-file", state)
    result = node.add("p1", subnet=None, mtu=None, stateFile=state)
    assert [ip["address"] for ip in result["ips"]] == ["10.90.3.2/24"]
    [link] = node.ip(node.pods["p1"], "link", "show", "eth0")
    assert link["mtu"] == 1380


def test_no_subnet_and_no_state_file_says_so(node):
    node.pod("p1")
    out = node.cni("ADD", "p1", subnet=None, stateFile=str(node.tmp / "absent.json"))
    err = out.json()
    assert err["code"] == 11 and "pod CIDR is unknown" in err["msg"] and "absent.json" in err["details"]
    assert node.reserved() == {} and node.veths() == []


def test_del_cuts_the_pod_off_before_returning(node):
    node.start_agent()
    node.add("a")
    b = node.add("b")
    b4 = b["ips"][0]["address"].split("/")[0]
    host_b = b["interfaces"][1]["name"]
    assert node.ping("a", b4)
    assert node.cni("DEL", "b").ok
    # Right after DEL, b's veth is either gone already or down with its port
    # disabled (test_a_retired_link_... checks the second case directly).
    links = {l["ifname"]: l for l in node.ip(node.netns, "-d", "link", "show")}
    assert host_b not in links or ("UP" not in links[host_b]["flags"] and
                                   links[host_b]["linkinfo"]["info_slave_data"]["state"] == "disabled")
    assert [owner.container_id for owner in node.reserved()] == ["a"]
    assert not node.ping("a", b4)
    sandbox.wait_for(lambda: host_b not in [l["ifname"] for l in node.node_links()], what="the reaper")


REFERENCE_BRIDGE = {"cniVersion": "1.0.0", "name": "ref", "type": "bridge", "bridge": "cni0", "isGateway": True,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]]}}


def reference(node, verb: str, pod: str) -> runtime.Outcome:
    conf = {**REFERENCE_BRIDGE, "ipam": {**REFERENCE_BRIDGE["ipam"], "dataDir": str(node.tmp / "ref-ipam")}}
    env = runtime.env_for(verb, container_id=f"ref-{pod}", netns=node.pods[pod], ifname="eth0")
    return runtime.invoke(f"{runtime.REFERENCE_CNI_PATH}/bridge", env, conf, node_netns=node.netns)


def pod_link_names(node, pod: str) -> list[str]:
    return [link["ifname"] for link in node.ip(node.pods[pod], "link", "show")]


def test_del_frees_the_interface_name_before_returning(node, mode):
    """The spec's DEL removes CNI_IFNAME: another plugin may ADD it at once,
    although the pair itself is deleted a little later (by the agent's
    batch, or by the standalone plugin's child)."""
    ours = node.add("p1")["interfaces"][1]["name"]
    assert node.cni("DEL", "p1").ok
    assert "eth0" not in pod_link_names(node, "p1")
    added = reference(node, "ADD", "p1")
    assert added.ok, added.stdout
    sandbox.wait_for(lambda: ours not in node.veths(), what="our pair to be deleted")
    assert pod_link_names(node, "p1") == ["lo", "eth0"]     # the reference's; ours is gone for good
    assert reference(node, "DEL", "p1").ok


def test_del_leaves_another_plugins_interface_of_that_name_alone(node):
    node.start_agent()
    node.add("p1")
    assert node.cni("DEL", "p1").ok
    assert reference(node, "ADD", "p1").ok       # the name is someone else's now
    assert node.cni("DEL", "p1").ok               # a repeated DEL, as runtimes do
    [eth0] = node.ip(node.pods["p1"], "-d", "link", "show", "eth0")
    assert eth0["linkinfo"]["info_kind"] == "veth" and "UP" in eth0["flags"]
    assert reference(node, "DEL", "p1").ok


def test_re_add_right_after_del_works(node):
    node.start_agent()
    first = node.add("p1")
    assert node.cni("DEL", "p1").ok
    second = node.add("p1")
    assert second["interfaces"][1]["name"] == first["interfaces"][1]["name"]
    assert node.ping("p1", "10.88.0.1")


def test_agent_start_reaps_links_a_dead_agent_retired(node):
    """An agent killed between DEL and the batch delete leaves a retired
    link; the next agent removes it at start, and live pods are untouched."""
    from netplane.netlink import messages as m
    from netplane.netlink.channel import Channel

    keep, gone = node.add("keep"), node.add("gone")             # no agent yet: standalone
    fd = open_netns(node.netns)
    try:
        call_in_netns(fd, lambda: _send(Channel, m.retire_link(gone["interfaces"][1]["name"])))
    finally:
        os.close(fd)
    assert len(node.veths()) == 2                                # retired, not deleted
    node.start_agent()
    assert node.veths() == [keep["interfaces"][1]["name"]]       # reaped before serving
    assert node.ping("keep", "10.88.0.1")


def _send(channel_class, request):
    with channel_class.open() as channel:
        channel.send(request)


def test_agent_refuses_clients_that_are_not_root(node):
    node.start_agent()
    request = shim.encode_request({b"CNI_COMMAND": b"VERSION"}, b"{}")

    def as_nobody() -> bytes:
        pid = os.fork()
        if pid == 0:  # child: drop to nobody, ask the agent, report what came back
            try:
                os.setgid(65534)
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.connect(shim.AGENT_SOCKET)
                    try:
                        sock.sendall(request)
                        sock.shutdown(socket.SHUT_WR)
                        answer = sock.recv(100)
                    except ConnectionError:   # closed on us before we finished: refused too
                        answer = b""
                    os._exit(0 if answer == b"" else 1)
            except BaseException:
                os._exit(2)
        return os.waitpid(pid, 0)[1]

    fd = open_netns(node.netns)
    try:
        status = call_in_netns(fd, as_nobody)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, "a non-root client got an answer"
    assert "refused a CNI request" in open(node.tmp / "agent.log").read()


def test_a_retired_link_cuts_the_pod_off_while_it_still_exists(node):
    """The mechanism behind the agent's fast DEL, without the background
    deletion racing the check: the retired link stays until reap()."""
    from netplane.cni.reaper import Reaper
    from netplane.netlink.channel import Channel

    node.add("a")                                       # standalone path: no agent running
    b = node.add("b")
    b4 = b["ips"][0]["address"].split("/")[0]
    host_b = b["interfaces"][1]["name"]
    assert node.ping("a", b4) and node.ping("b", "10.88.0.1")
    reaper = Reaper()                                   # never started: nothing deletes in the background
    fd = open_netns(node.netns)
    try:
        call_in_netns(fd, lambda: _retire(reaper, Channel, host_b))
        assert host_b in node.veths()                   # still there ...
        assert not node.ping("a", b4)                   # ... and unreachable from other pods
        assert not node.ping("b", "10.88.0.1")          # and cannot reach the node
        assert node.ping("a", "10.88.0.1")              # while everyone else is fine
        call_in_netns(fd, reaper.reap)
    finally:
        os.close(fd)
    assert host_b not in node.veths()


def _retire(reaper, channel_class, host: str) -> None:
    with channel_class.open() as channel:
        reaper.retire(channel, host)
