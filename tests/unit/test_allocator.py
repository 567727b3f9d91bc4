import multiprocessing
import threading

import netaddr
import pytest

from netplane.cni import errors
from netplane.cni.config import Attachment
from netplane.cni.errors import CniError
from netplane.cni.ipam import allocator
from netplane.cni.ipam.pool import Pool
from netplane.cni.ipam.store import DiskStore, MemoryStore

V4 = Pool(netaddr.IPNetwork("10.0.0.0/29"))      # .2 - .6 usable: 5 pods
V6 = Pool(netaddr.IPNetwork("fd00::/120"))


def owner(n: int) -> Attachment:
    return Attachment(f"c{n}", "eth0")


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path):
    return MemoryStore() if request.param == "memory" else DiskStore(str(tmp_path), "net")


def test_pool_shape():
    assert str(V4.gateway) == "10.0.0.1" and V4.size == 5
    assert [str(ip) for ip in V4.candidates(None)] == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert [str(ip) for ip in V4.candidates(netaddr.IPAddress("10.0.0.4"))][:3] == ["10.0.0.5", "10.0.0.6", "10.0.0.2"]
    assert [str(ip) for ip in V4.candidates(netaddr.IPAddress("192.168.0.9"))][0] == "10.0.0.2"


def test_dual_stack_allocation(store):
    assert allocator.allocate(store, owner(1), [V4, V6]) == ["10.0.0.2", "fd00::2"]
    assert allocator.addresses_of(store, owner(1)) == ["10.0.0.2", "fd00::2"]


def test_round_robin_does_not_reuse_a_freed_address_at_once(store):
    allocator.allocate(store, owner(1), [V4])
    allocator.release(store, owner(1))
    assert allocator.allocate(store, owner(2), [V4]) == ["10.0.0.3"]


def test_exhaustion_then_release_makes_room(store):
    for n in range(5):
        allocator.allocate(store, owner(n), [V4])
    with pytest.raises(CniError) as exc:
        allocator.allocate(store, owner(9), [V4])
    assert exc.value.code == errors.RANGE_EXHAUSTED and "10.0.0.0/29" in exc.value.details
    assert allocator.addresses_of(store, owner(9)) == []
    allocator.release(store, owner(2))
    assert allocator.allocate(store, owner(9), [V4]) == ["10.0.0.4"]


def test_exhausting_the_second_family_releases_the_first(store):
    tiny_v6 = Pool(netaddr.IPNetwork("fd00::/126"))   # one usable address
    allocator.allocate(store, owner(1), [V4, tiny_v6])
    with pytest.raises(CniError):
        allocator.allocate(store, owner(2), [V4, tiny_v6])
    assert allocator.in_use(store, V4) == 1


def test_duplicate_attachment_is_refused_and_first_kept(store):
    first = allocator.allocate(store, owner(1), [V4])
    with pytest.raises(CniError) as exc:
        allocator.allocate(store, owner(1), [V4])
    assert exc.value.code == errors.ATTACHMENT_EXISTS and first[0] in exc.value.details
    assert allocator.addresses_of(store, owner(1)) == first


def test_same_container_other_interface_is_a_separate_attachment(store):
    allocator.allocate(store, Attachment("c1", "eth0"), [V4])
    assert allocator.allocate(store, Attachment("c1", "net1"), [V4]) == ["10.0.0.3"]


def test_release_is_idempotent(store):
    allocator.allocate(store, owner(1), [V4])
    assert allocator.release(store, owner(1)) == ["10.0.0.2"]
    assert allocator.release(store, owner(1)) == []
    assert allocator.in_use(store, V4) == 0


def test_stale_attachments_are_those_not_valid(store):
    for n in range(4):
        allocator.allocate(store, owner(n), [V4])
    stale = allocator.stale_attachments(store, frozenset({owner(1), owner(3)}))
    assert set(stale) == {owner(0), owner(2)}
    assert set(store.owners()) == {owner(n) for n in range(4)}   # finding them releases nothing


class FailingSecondReservation(MemoryStore):
    def try_reserve(self, ip, owner):
        if ip.startswith("fd00"):
            raise OSError(28, "No space left on device")
        return super().try_reserve(ip, owner)


def test_a_failed_reservation_rolls_back_the_whole_attachment():
    store = FailingSecondReservation()
    with pytest.raises(OSError):
        allocator.allocate(store, owner(1), [V4, V6])
    assert store.ips == {} and store.records == {}
    assert allocator.allocate(MemoryStore(), owner(1), [V4]) == ["10.0.0.2"]


def test_a_failed_cursor_write_keeps_the_allocation(monkeypatch):
    store = MemoryStore()
    monkeypatch.setattr(store, "set_last_reserved", lambda *a: (_ for _ in ()).throw(OSError(5, "EIO")))
    assert allocator.allocate(store, owner(1), [V4]) == ["10.0.0.2"]
    assert allocator.addresses_of(store, owner(1)) == ["10.0.0.2"]


def test_threads_never_share_an_address(store):
    pool = Pool(netaddr.IPNetwork("10.1.0.0/24"))
    got: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        ips = allocator.allocate(store, owner(n), [pool])
        with lock:
            got.extend(ips)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 64


def _allocate_in_process(root: str, n: int, queue) -> None:
    queue.put(allocator.allocate(DiskStore(root, "net"), owner(n), [Pool(netaddr.IPNetwork("10.1.0.0/24"))])[0])


def test_processes_never_share_an_address(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_allocate_in_process, args=(str(tmp_path), n, queue)) for n in range(32)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(got)) == 32


def test_disk_layout_and_lost_record_fallback(tmp_path):
    store = DiskStore(str(tmp_path), "net")
    allocator.allocate(store, owner(1), [V4, V6])
    assert (tmp_path / "net" / "ips" / "10.0.0.2").read_text() == "c1\neth0\n"
    assert (tmp_path / "net" / "attachments" / "c1:eth0").read_text() == "10.0.0.2\nfd00::2\n"
    (tmp_path / "net" / "attachments" / "c1:eth0").unlink()   # a lost index record
    assert sorted(allocator.release(store, owner(1))) == ["10.0.0.2", "fd00::2"]
    assert list((tmp_path / "net" / "ips").iterdir()) == []


def test_record_without_address_files_is_cleared_by_release(tmp_path):
    # What a crash between writing the record and the address files leaves.
    store = DiskStore(str(tmp_path), "net")
    with store.locked():
        store.record(owner(1), ["10.0.0.2"])
    with pytest.raises(CniError):
        allocator.allocate(store, owner(1), [V4])
    allocator.release(store, owner(1))
    assert allocator.allocate(store, owner(1), [V4]) == ["10.0.0.2"]


def test_debris_of_a_killed_writer_is_reclaimed(tmp_path):
    store = DiskStore(str(tmp_path), "net")
    allocator.allocate(store, owner(1), [V4])
    ips = tmp_path / "net" / "ips"
    (ips / ".10.0.0.3.tmp").write_text("c9\neth0\n")          # killed before the link
    (ips / "10.0.0.4").write_text("")                         # an older writer killed mid-write
    (tmp_path / "net" / "attachments" / ".c9:eth0.tmp").write_text("10.0.0.3\n")
    assert allocator.stale_attachments(store, frozenset({owner(1)})) == []
    assert sorted(p.name for p in ips.iterdir()) == ["10.0.0.2"]
    assert [p.name for p in (tmp_path / "net" / "attachments").iterdir()] == ["c1:eth0"]


def test_an_interface_named_like_a_temp_file_keeps_its_own_record(tmp_path):
    store = DiskStore(str(tmp_path), "net")
    allocator.allocate(store, Attachment("c1", "eth0.tmp"), [V4])
    allocator.allocate(store, Attachment("c1", "eth0"), [V4])
    assert allocator.addresses_of(store, Attachment("c1", "eth0.tmp")) == ["10.0.0.2"]
    assert set(store.owners()) == {Attachment("c1", "eth0.tmp"), Attachment("c1", "eth0")}


def test_an_empty_record_falls_back_to_the_address_files(tmp_path):
    store = DiskStore(str(tmp_path), "net")
    allocator.allocate(store, owner(1), [V4])
    (tmp_path / "net" / "attachments" / "c1:eth0").write_text("")
    assert allocator.release(store, owner(1)) == ["10.0.0.2"]


def test_release_never_frees_someone_elses_address(tmp_path):
    store = DiskStore(str(tmp_path), "net")
    allocator.allocate(store, owner(2), [V4])
    with store.locked():
        store.record(owner(1), ["10.0.0.2"])  # a corrupt record pointing at owner 2's address
    allocator.release(store, owner(1))
    assert allocator.addresses_of(store, owner(2)) == ["10.0.0.2"]
    assert (tmp_path / "net" / "ips" / "10.0.0.2").exists()
