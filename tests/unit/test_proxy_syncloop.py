"""The sync schedule, with explicit timestamps; and the loop on a real thread."""
import threading
import time

from netplane.proxy.syncloop import Schedule, SyncLoop


def run(schedule, now, full=None):
    """Start and finish a sync at `now`; returns whether it was a full one."""
    full = schedule.full_due(now) if full is None else full
    schedule.started(now, full)
    schedule.finished(True)
    return full


def test_the_first_sync_is_due_at_once_and_full():
    s = Schedule(min_interval=1, full_interval=30)
    assert s.next_due() == float("-inf") and s.full_due(0)


def test_changes_close_together_share_one_sync_min_interval_apart():
    s = Schedule(min_interval=1, full_interval=30)
    assert run(s, 100) is True
    s.request()
    s.request()
    assert s.next_due() == 101                       # not before min_interval after the last start
    assert run(s, 101) is False                      # a partial sync
    assert s.next_due() == 130                       # nothing pending: the periodic full sync


def test_a_periodic_full_sync_runs_without_changes():
    s = Schedule(min_interval=1, full_interval=30)
    run(s, 0)
    s.request()
    run(s, 5)
    assert s.next_due() == 30 and s.full_due(30) and not s.full_due(29)


def test_a_periodic_partial_sync_runs_every_sync_interval_between_full_ones():
    s = Schedule(min_interval=1, sync_interval=30, full_interval=3600)
    run(s, 0)
    assert s.next_due() == 30 and run(s, 30) is False        # partial: only checks and repairs cheaply
    assert s.next_due() == 60
    for t in range(60, 3600, 30):
        run(s, t)
    assert s.next_due() == 3600 and s.full_due(3600)


def test_a_failure_is_retried_as_a_full_sync():
    s = Schedule(min_interval=1, full_interval=30, retry_interval=2)
    run(s, 0)
    s.started(10, False)
    s.finished(False)
    assert s.next_due() == 12 and s.full_due(12)
    run(s, 12)
    assert s.next_due() == 42


def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_loop_coalesces_bursts_and_retries_failures():
    calls, fail = [], {"next": False}
    done = threading.Event()

    def sync(full):
        calls.append(full)
        if fail["next"]:
            fail["next"] = False
            raise RuntimeError("iptables-restore failed")
        if len(calls) >= 4:
            done.set()

    loop = SyncLoop(sync, Schedule(min_interval=0.1, full_interval=60, retry_interval=0.1))
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        wait_until(lambda: len(calls) == 1)      # the first, full sync
        for _ in range(20):                      # a burst of changes: one partial sync
            loop.request()
        wait_until(lambda: len(calls) == 2)
        time.sleep(0.3)                          # no change meanwhile: no sync either
        assert len(calls) == 2
        fail["next"] = True
        loop.request()                           # fails, then a full retry
        assert done.wait(3)
    finally:
        loop.stop()
        thread.join(2)
    assert calls == [True, False, False, True] and not thread.is_alive()
