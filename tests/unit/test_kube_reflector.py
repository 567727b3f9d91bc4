"""The Reflector against the fake API server: list, watch, re-watch, relist
after 410, and riding out a lost API without losing the cache."""
import socket
import threading
import time

import kubernetes
import pytest

from netplane.kube.client import NODES, SERVICES
from netplane.kube.fake_apiserver import FakeApiServer, Status
from netplane.kube.reflector import Reflector

FAST = {"watch_timeout": 1, "backoff_initial": 0.05, "backoff_max": 0.2}


def node(name, **spec):
    return {"metadata": {"name": name}, "spec": spec}


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Changes:
    """on_change recorder: every snapshot it was given, in order."""

    def __init__(self):
        self.seen: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, snapshot):
        with self.lock:
            self.seen.append(snapshot)

    @property
    def last(self):
        with self.lock:
            return self.seen[-1] if self.seen else None


@pytest.fixture
def reflect(api):
    started = []

    def make(resource=NODES, **options):
        changes = Changes()
        reflector = Reflector(api, resource, changes, **(FAST | options)).start()
        started.append(reflector)
        return reflector, changes

    yield make
    for reflector in started:
        reflector.stop()


def watch_versions(fake):
    return [r.query["resourceVersion"] for r in fake.requests if r.query.get("watch") == "true"]


def test_initial_list_syncs_the_cache(fake, reflect):
    fake.put(NODES, node("n1", podCIDRs=["10.244.1.0/24"]))
    fake.put(NODES, node("n2"))
    reflector, changes = reflect()
    assert reflector.synced.wait(2)
    assert sorted(reflector.snapshot()) == ["n1", "n2"]
    assert reflector.snapshot()["n1"]["spec"]["podCIDRs"] == ["10.244.1.0/24"]
    # listed items get the kind and apiVersion that watched objects carry
    assert reflector.snapshot()["n1"]["kind"] == "Node" and reflector.snapshot()["n1"]["apiVersion"] == "v1"
    assert changes.seen == [reflector.snapshot()] and reflector.lists == 1


def test_watch_events_reach_the_cache_and_on_change(fake, reflect):
    fake.put(NODES, node("n1"))
    reflector, changes = reflect()
    assert reflector.synced.wait(2)
    fake.put(NODES, node("n2"))
    wait_for(lambda: "n2" in reflector.snapshot())
    fake.put(NODES, node("n1", unschedulable=True))
    wait_for(lambda: reflector.snapshot()["n1"]["spec"] == {"unschedulable": True})
    fake.delete(NODES, "n2")
    wait_for(lambda: "n2" not in reflector.snapshot())
    assert [sorted(s) for s in changes.seen] == [["n1"], ["n1", "n2"], ["n1", "n2"], ["n1"]]
    assert changes.seen[2]["n1"]["spec"] == {"unschedulable": True}
    assert reflector.lists == 1


def test_snapshot_is_a_copy(fake, reflect):
    fake.put(NODES, node("n1"))
    reflector, _ = reflect()
    assert reflector.synced.wait(2)
    reflector.snapshot().pop("n1")
    assert "n1" in reflector.snapshot()


def test_watch_timeout_rewatches_from_the_last_version_without_relisting(fake, reflect):
    fake.put(NODES, node("n1"))
    reflector, changes = reflect(watch_timeout=1)
    assert reflector.synced.wait(2)
    fake.put(NODES, node("n2"))                                 # rv 2, seen by the first watch
    fake.put(SERVICES, {"metadata": {"namespace": "a", "name": "web"}})    # rv 3: only a bookmark shows it
    wait_for(lambda: reflector.watches >= 2)
    assert reflector.lists == 1 and reflector.relists_after_gone == 0
    assert watch_versions(fake)[:2] == ["1", "3"]
    assert len(changes.seen) == 2      # the list and n2; bookmarks and re-watches are no change


def test_410_relists_and_drops_what_was_deleted_in_the_gap(fake, reflect):
    for name in ("n1", "n2"):
        fake.put(NODES, node(name))
    reflector, changes = reflect()
    assert reflector.synced.wait(2)
    wait_for(lambda: reflector.watches >= 1)
    fake.pause()                         # cut the watch, and hold the reflector off while...
    fake.delete(NODES, "n1")
    fake.put(NODES, node("n2", unschedulable=True))
    fake.put(NODES, node("n3"))
    fake.compact()                       # ...the events it missed are compacted away
    fake.resume()
    wait_for(lambda: reflector.lists == 2)
    wait_for(lambda: changes.last is not None and sorted(changes.last) == ["n2", "n3"])
    assert reflector.relists_after_gone == 1
    assert sorted(reflector.snapshot()) == ["n2", "n3"]
    assert reflector.snapshot()["n2"]["spec"] == {"unschedulable": True}
    assert [sorted(s) for s in changes.seen] == [["n1", "n2"], ["n2", "n3"]]      # one call for the relist


def test_http_410_on_watch_also_relists(fake, reflect, monkeypatch):
    # an apiserver may refuse a too-old watch with HTTP 410 instead of a 200 and an ERROR event
    stream = FakeApiServer._watch

    def refusing(self, h, resource, namespace, query):
        if int(query["resourceVersion"]) < self._floor:
            raise Status(410, "Expired", "too old resource version")
        return stream(self, h, resource, namespace, query)

    monkeypatch.setattr(FakeApiServer, "_watch", refusing)
    fake.put(NODES, node("n1"))
    reflector, _ = reflect()
    wait_for(lambda: reflector.watches >= 1)
    fake.pause()
    fake.delete(NODES, "n1")
    fake.compact()
    fake.resume()
    wait_for(lambda: reflector.lists == 2)
    assert reflector.relists_after_gone == 1 and reflector.snapshot() == {}


def test_dropped_watch_resumes_without_loss_or_relist(fake, reflect):
    reflector, _ = reflect()
    assert reflector.synced.wait(2)
    wait_for(lambda: reflector.watches >= 1)
    fake.drop_watches()
    fake.put(NODES, node("n1"))
    wait_for(lambda: "n1" in reflector.snapshot())
    wait_for(lambda: reflector.watches >= 2)
    assert reflector.lists == 1 and reflector.relists_after_gone == 0


def test_lost_api_keeps_the_cache_backs_off_and_catches_up(fake, reflect):
    fake.put(NODES, node("n1"))
    reflector, changes = reflect(backoff_initial=0.05, backoff_max=0.4)
    assert reflector.synced.wait(2)
    wait_for(lambda: reflector.watches >= 1)
    before, calls = reflector.snapshot(), len(changes.seen)
    fake.pause()
    sent = len(fake.requests)
    fake.put(NODES, node("n2"))
    time.sleep(1.0)
    retries = len(fake.requests) - sent
    # 0.05, 0.1, 0.2, 0.4, 0.4 s (halved at worst by jitter): a few retries, not a busy loop
    assert 3 <= retries <= 12, retries
    assert reflector.snapshot() == before and len(changes.seen) == calls
    fake.resume()
    wait_for(lambda: "n2" in reflector.snapshot())
    assert reflector.lists == 1      # nothing was compacted: a re-watch caught up


def test_unreachable_api_never_syncs_and_stops_promptly():
    with socket.socket() as closed:        # a port with nobody listening
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    dead = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=f"http://127.0.0.1:{port}"))
    reflector = Reflector(dead, NODES, watch_timeout=1, backoff_initial=5, backoff_max=30).start()
    time.sleep(0.2)
    assert not reflector.synced.is_set() and reflector.snapshot() == {}
    started = time.monotonic()
    reflector.stop()
    assert time.monotonic() - started < 2 and not reflector._thread.is_alive()


def test_stop_cuts_an_open_watch_promptly(fake, api):
    reflector = Reflector(api, NODES, watch_timeout=300).start()
    assert reflector.synced.wait(2)
    wait_for(lambda: reflector.watches >= 1)
    time.sleep(0.1)                      # let it block in the read
    started = time.monotonic()
    reflector.stop()
    assert time.monotonic() - started < 2 and not reflector._thread.is_alive()


def test_namespaced_keys(fake, reflect):
    fake.put(SERVICES, {"metadata": {"namespace": "a", "name": "web"}})
    reflector, _ = reflect(SERVICES)
    assert reflector.synced.wait(2)
    fake.put(SERVICES, {"metadata": {"namespace": "b", "name": "web"}})
    wait_for(lambda: sorted(reflector.snapshot()) == ["a/web", "b/web"])
    fake.delete(SERVICES, "web", "a")
    wait_for(lambda: sorted(reflector.snapshot()) == ["b/web"])


def test_a_failing_on_change_does_not_stop_the_mirror(fake, api):
    def broken(snapshot):
        raise RuntimeError("consumer bug")

    reflector = Reflector(api, NODES, broken, **FAST).start()
    try:
        assert reflector.synced.wait(2)
        fake.put(NODES, node("n1"))
        wait_for(lambda: "n1" in reflector.snapshot())
        assert reflector.lists == 1
    finally:
        reflector.stop()


def test_watches_that_close_at_once_are_backed_off_not_hammered(fake, reflect, monkeypatch):
    def empty_watch(self, h, resource, namespace, query):       # 200, then the stream ends at once
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "0")
        h.end_headers()

    monkeypatch.setattr(FakeApiServer, "_watch", empty_watch)
    reflector, _ = reflect(backoff_initial=0.1, backoff_max=0.4)
    time.sleep(1.5)
    # without backoff this loops thousands of times a second; with it: about 0.1+0.2+0.4+0.4...
    assert 2 <= reflector.watches <= 8
