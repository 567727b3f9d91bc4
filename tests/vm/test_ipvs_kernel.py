"""IpvsKernel against the real IPVS (Debian's 6.1 kernel, in the VM).

Each test works in a network namespace of its own (IPVS state is per
namespace), made and removed by a Sandbox. What is applied is read back
twice: through IpvsKernel.servers() and through `ipvsadm -Ln`, which reads
the kernel with its own code (libipvs). Run with `make test-vm`, or
scripts/vm-run -- .venv/bin/pytest -m vm tests/vm/test_ipvs_kernel.py -s
"""
import errno
import re
import shutil
import time

import pytest

from netplane import vm
from netplane.proxy.ipvs.kernel import IpvsError, IpvsKernel
from netplane.proxy.ipvs.plan import FWMARK, Key, VirtualServer
from netplane.sandbox import Sandbox

pytestmark = [pytest.mark.vm, pytest.mark.skipif(not vm.in_vm(), reason="runs in the VM (make test-vm)")]


@pytest.fixture
def netns():
    with Sandbox() as box:
        yield box, box.netns("ipvs")


@pytest.fixture
def kernels(netns):
    _, path = netns
    with IpvsKernel(4, netns=path) as v4, IpvsKernel(6, netns=path) as v6:
        yield {4: v4, 6: v6}


SMALL = {
    4: {Key("TCP", "10.96.0.10", 80): (VirtualServer("rr", 0), {("10.244.1.5", 8080): 1, ("10.244.2.7", 8080): 1}),
        Key("UDP", "10.96.0.53", 53): (VirtualServer("wlc", 0), {("10.244.1.9", 53): 1}),
        Key("SCTP", "10.96.0.77", 36412): (VirtualServer("rr", 0), {("10.244.3.1", 36412): 1}),
        Key("TCP", "10.96.0.11", 443): (VirtualServer("rr", 10800), {("10.244.1.5", 8443): 1}),
        Key("TCP", "10.96.0.12", 80): (VirtualServer("mh", 0), {("10.244.1.5", 80): 1, ("10.244.2.7", 80): 1}),
        Key(FWMARK, "", 0x4001): (VirtualServer("rr", 0), {("10.244.1.5", 8080): 1})},
    6: {Key("TCP", "fd00:10:96::a", 80): (VirtualServer("rr", 0), {("fd00:10:244:1::5", 8080): 1}),
        Key("UDP", "fd00:10:96::35", 53): (VirtualServer("sh", 60), {("fd00:10:244:1::9", 53): 1}),
        Key(FWMARK, "", 7): (VirtualServer("rr", 0), {("fd00:10:244:2::7", 80): 1})},
}


def apply_all(kernel: IpvsKernel, wanted: dict) -> None:
    kernel.apply([(key, server) for key, (server, _) in wanted.items()], [],
                 [("add", key, dest, weight) for key, (_, dests) in wanted.items() for dest, weight in dests.items()],
                 [])


def read(kernel: IpvsKernel) -> dict:
    """servers() without the connection counts: {key: (server, {dest: weight})}."""
    return {key: (server, {dest: counts[0] for dest, counts in dests.items()})
            for key, (server, dests) in kernel.servers().items()}


def test_small_batches_read_back(netns, kernels):
    box, path = netns
    for family, wanted in SMALL.items():
        apply_all(kernels[family], wanted)
    for family, wanted in SMALL.items():
        assert read(kernels[family]) == wanted
    assert ipvsadm(box, path) in (None, {**SMALL[4], **SMALL[6]})

    # weights, an edit each way (persistence off, scheduler and persistence on), deletes
    key, other = Key("TCP", "10.96.0.10", 80), Key("TCP", "10.96.0.11", 443)
    kernels[4].apply([], [(key, VirtualServer("wlc", 30)), (other, VirtualServer("rr", 0))],
                     [("set", key, ("10.244.1.5", 8080), 0), ("delete", key, ("10.244.2.7", 8080), 0),
                      ("add", key, ("10.244.4.4", 8080), 3)],
                     [Key("UDP", "10.96.0.53", 53), Key(FWMARK, "", 0x4001)])
    expected = dict(SMALL[4])
    expected[key] = (VirtualServer("wlc", 30), {("10.244.1.5", 8080): 0, ("10.244.4.4", 8080): 3})
    expected[other] = (VirtualServer("rr", 0), SMALL[4][other][1])
    del expected[Key("UDP", "10.96.0.53", 53)], expected[Key(FWMARK, "", 0x4001)]
    assert read(kernels[4]) == expected
    assert read(kernels[6]) == SMALL[6]                 # the other family's are left alone
    assert ipvsadm(box, path) in (None, {**expected, **SMALL[6]})


def test_batch_path(netns, kernels):
    """2,000 virtual servers x 5 real servers: ~12,000 messages in chunks."""
    box, path = netns
    kernel = kernels[4]
    wanted = {Key("TCP", f"10.96.{i >> 8}.{i & 255}", 80):
              (VirtualServer("rr", 0), {(f"10.244.{i % 200}.{j + 1}", 8080): 1 for j in range(5)})
              for i in range(2000)}
    start = time.perf_counter()
    apply_all(kernel, wanted)
    applied = time.perf_counter() - start
    start = time.perf_counter()
    back = read(kernel)
    dumped = time.perf_counter() - start
    print(f"\nbatch: 12,000 messages applied in {applied:.3f} s ({12000 / applied:,.0f}/s), "
          f"read back in {dumped:.3f} s (kernel.chunk_bytes={kernel.chunk_bytes})")
    assert back == wanted
    listed = ipvsadm(box, path)
    assert listed in (None, wanted)

    # and a batch of weight changes, deletes of real and virtual servers
    keys = list(wanted)
    sets = [("set", key, dest, 0) for key in keys[:1000] for dest in wanted[key][1]]
    deletes = [("delete", key, dest, 0) for key in keys[1000:1500] for dest in wanted[key][1]]
    start = time.perf_counter()
    kernel.apply([], [], sets + deletes, keys[1500:])
    changed = time.perf_counter() - start
    print(f"batch: {len(sets) + len(deletes) + 500:,} changes applied in {changed:.3f} s")
    back = read(kernel)
    assert len(back) == 1500
    assert all(set(dests.values()) == {0} for _, dests in (back[k] for k in keys[:1000]))
    assert all(back[k][1] == {} for k in keys[1000:1500])


def test_a_failure_names_the_operation(kernels):
    kernel = kernels[4]
    key = Key("TCP", "10.96.0.10", 80)
    kernel.apply([(key, VirtualServer())], [], [("add", key, ("10.244.1.5", 8080), 1)], [])
    missing = Key("TCP", "10.96.0.99", 80)
    with pytest.raises(IpvsError) as raised:
        kernel.apply([], [], [("add", missing, ("10.244.1.5", 8080), 1)], [])
    assert str(raised.value) == ("adding real server 10.244.1.5:8080 to TCP 10.96.0.99:80: "
                                 "No such process (no such virtual server)")
    assert raised.value.errno == errno.ESRCH

    # no idempotency: adding what exists is the kernel's EEXIST; the batch
    # is not a transaction, so what follows the failure still happens
    later = Key("UDP", "10.96.0.53", 53)
    with pytest.raises(IpvsError, match=r"^adding virtual server TCP 10.96.0.10:80 \(rr\): File exists$"):
        kernel.apply([(key, VirtualServer()), (later, VirtualServer())], [], [], [])
    assert later in kernel.servers()
    with pytest.raises(IpvsError, match=r"^adding real server 10.244.1.5:8080 to TCP 10.96.0.10:80: File exists$"):
        kernel.apply([], [], [("add", key, ("10.244.1.5", 8080), 1)], [])
    with pytest.raises(IpvsError, match=r"^deleting real server 10.244.9.9:80 from TCP 10.96.0.10:80: "):
        kernel.apply([], [], [("delete", key, ("10.244.9.9", 80), 0)], [])

    # what cannot be encoded fails before anything of its batch is sent
    fresh = Key("TCP", "10.96.0.88", 80)
    with pytest.raises(IpvsError, match=r"^adding real server 10.244.1.300:80 to TCP 10.96.0.10:80: cannot encode"):
        kernel.apply([(fresh, VirtualServer())], [], [("add", key, ("10.244.1.300", 80), 1)], [])
    assert fresh not in kernel.servers()


def test_many_failures_in_a_batch(kernels):
    """Thousands of errors in one batch: the first is named, the rest counted."""
    kernel = kernels[4]
    keys = [Key("TCP", f"10.96.{i >> 8}.{i & 255}", 80) for i in range(3000)]
    kernel.apply([(k, VirtualServer()) for k in keys], [], [], [])
    with pytest.raises(IpvsError) as raised:
        kernel.apply([(k, VirtualServer()) for k in keys], [], [], [])
    assert str(raised.value).startswith("adding virtual server TCP 10.96.0.0:80 (rr): File exists; and 2999")
    # the socket is clean afterwards
    kernel.apply([], [], [], keys)
    assert kernel.servers() == {}


def test_dests_of_one_server(kernels):
    kernel = kernels[4]
    key, empty = Key("TCP", "10.96.0.10", 80), Key("TCP", "10.96.0.20", 80)
    kernel.apply([(key, VirtualServer()), (empty, VirtualServer())], [],
                 [("add", key, ("10.244.1.5", 8080), 1), ("add", key, ("10.244.1.6", 8080), 0)], [])
    assert kernel.dests(key) == {("10.244.1.5", 8080): (1, 0, 0), ("10.244.1.6", 8080): (0, 0, 0)}
    assert kernel.dests(empty) == {}
    with pytest.raises(IpvsError, match="no such virtual server"):
        kernel.dests(Key("TCP", "10.96.0.30", 80))


def test_namespaces_are_separate(netns, kernels):
    box, _ = netns
    kernels[4].apply([(Key("TCP", "10.96.0.10", 80), VirtualServer())], [], [], [])
    with IpvsKernel(4, netns=box.netns("other")) as other:
        assert other.servers() == {}


# --- ipvsadm -Ln, parsed

SERVICE_LINE = re.compile(r"^(TCP|UDP|SCTP|FWM)\s+(\S+)\s+(IPv6\s+)?(\S+)(.*)$")
DEST_LINE = re.compile(r"^\s+->\s+(\S+)\s+(\w+)\s+(\d+)\s+\d+\s+\d+")


def ipvsadm(box: Sandbox, path: str) -> dict | None:
    """What `ipvsadm -Ln` lists, as read() returns it (None without ipvsadm).
    Every real server must be masqueraded."""
    if shutil.which("ipvsadm") is None:
        return None
    out, key = {}, None
    for line in box.run(path, ["ipvsadm", "-Ln"], text=True).stdout.splitlines():
        if match := SERVICE_LINE.match(line):
            protocol, where, _, scheduler, rest = match.groups()
            key = Key(FWMARK, "", int(where)) if protocol == "FWM" else Key(protocol, *_split(where))
            persistent = re.search(r"persistent (\d+)", rest)
            out[key] = (VirtualServer(scheduler, int(persistent.group(1)) if persistent else 0), {})
        elif match := DEST_LINE.match(line):
            where, forward, weight = match.groups()
            assert forward == "Masq", line
            out[key][1][_split(where)] = int(weight)
    return out


def _split(where: str) -> tuple[str, int]:
    address, port = where.rsplit(":", 1)
    return address.strip("[]"), int(port)
