"""Waking waiters across processes through Redis, with the row as the only truth."""

from __future__ import annotations

import threading
import time

from catalog.wakeups import wait_until, wakeup_send


class Row:
    """A stand-in for a database row: `done` counts its reads."""

    def __init__(self) -> None:
        self.value = False
        self.reads = 0

    def done(self) -> bool:
        self.reads += 1
        return self.value


def _later(delay: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), action()))
    thread.start()
    return thread


def test_a_wake_up_ends_the_wait_at_once_with_one_more_read(cache_redis):
    row = Row()

    def change() -> None:
        row.value = True
        wakeup_send("job:1")

    changer = _later(0.5, change)
    started = time.monotonic()
    assert wait_until("job:1", row.done, seconds=20, recheck=15)
    changer.join()
    assert time.monotonic() - started < 2
    assert row.reads == 2


def test_a_wake_up_for_another_name_does_not_end_the_wait(cache_redis):
    row = Row()
    sender = _later(0.2, lambda: wakeup_send("job:2"))
    started = time.monotonic()
    assert not wait_until("job:1", row.done, seconds=1.0, recheck=15)
    sender.join()
    assert time.monotonic() - started >= 0.95
    assert row.reads == 2  # on arrival, and at the deadline's end


def test_a_change_nobody_announces_is_seen_at_the_next_recheck(cache_redis):
    row = Row()
    changer = _later(0.3, lambda: setattr(row, "value", True))
    started = time.monotonic()
    assert wait_until("job:1", row.done, seconds=20, recheck=1.0)
    changer.join()
    assert 0.9 <= time.monotonic() - started < 3


def test_with_redis_down_the_wait_reads_the_row_until_it_changes_and_sending_never_raises(
    cache_redis,
):
    cache_redis.stop()
    wakeup_send("job:1")  # logged, not raised
    row = Row()
    changer = _later(0.5, lambda: setattr(row, "value", True))
    assert wait_until("job:1", row.done, seconds=20, recheck=15, poll=0.05)
    changer.join()
    assert row.reads >= 5  # it fell back to reading every 50 ms
