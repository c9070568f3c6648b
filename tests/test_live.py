"""LiveMessage: one post, then updates at most once per interval, the final state soon after the end
(at once when no update came in the last interval)."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from bot.core.live import LiveMessage
from bot.render.messages import Message, plain

INTERVAL = 0.2


class RecordingReply:
    """Records each send/update with the time it returned (not the docker SDK: the chat side)."""

    def __init__(self, delay: float = 0.0, fail_updates: int = 0) -> None:
        self.calls: list[tuple[str, Message, float]] = []
        self.delay = delay
        self.fail_updates = fail_updates
        self.lock = threading.Lock()
        self.busy = 0  # calls in progress at once (must never exceed 1)
        self.max_busy = 0

    def _record(self, kind: str, message: Message) -> None:
        with self.lock:
            self.busy += 1
            self.max_busy = max(self.max_busy, self.busy)
        time.sleep(self.delay)
        with self.lock:
            self.busy -= 1
            self.calls.append((kind, message, time.monotonic()))

    def send(self, message: Message, *, live: bool = False) -> str:
        self._record("post" if live else "send", message)
        return "ref"

    def update(self, ref: object, message: Message, *, final: bool = False) -> None:
        assert ref == "ref"
        if not final and self.fail_updates:
            self.fail_updates -= 1
            raise RuntimeError("chat.update failed")
        self._record("final" if final else "update", message)

    def private(self, message: Message) -> None:
        self._record("private", message)

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.calls]

    @property
    def texts(self) -> list[str]:
        return [message.text for _, message, _ in self.calls]

    def gaps(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(t for _, _, t in self.calls)]


def live_timers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]


def test_first_show_posts_at_once_and_later_ones_coalesce() -> None:
    reply = RecordingReply()
    live = LiveMessage(reply, min_interval=INTERVAL)
    live.show(plain("0"))
    assert reply.kinds == ["post"]  # synchronously: the caller knows the message exists
    for i in range(1, 200):
        live.show(plain(str(i)))  # a burst within the first interval
    time.sleep(INTERVAL * 1.5)
    assert reply.kinds == ["post", "update"]
    assert reply.texts[-1] == "199"  # the newest state, not the first pending one
    live.finish(plain("done"))
    assert reply.kinds == ["post", "update", "final"]


def test_updates_are_spaced_by_the_interval_and_the_final_one_comes_within_it() -> None:
    reply = RecordingReply(delay=0.02)
    live = LiveMessage(reply, min_interval=INTERVAL)
    end = time.monotonic() + 1.0
    i = 0
    while time.monotonic() < end:
        live.show(plain(str(i)))
        i += 1
        time.sleep(0.003)
    finished_at = time.monotonic()
    live.finish(plain("done"))
    assert reply.kinds[0] == "post" and reply.kinds[-1] == "final"
    assert reply.texts[-1] == "done"
    assert min(reply.gaps()) >= INTERVAL  # measured between returns, as Slack counts arrivals
    assert 3 <= reply.kinds.count("update") <= 1.0 / INTERVAL + 1
    assert reply.calls[-1][2] - finished_at <= INTERVAL + 0.1
    assert reply.max_busy == 1


def test_finish_right_after_an_update_waits_only_the_rest_of_the_interval() -> None:
    reply = RecordingReply()
    live = LiveMessage(reply, min_interval=INTERVAL)
    live.show(plain("start"))
    live.show(plain("progress"))
    while reply.kinds != ["post", "update"]:  # sent one interval after the post
        time.sleep(0.005)
    time.sleep(INTERVAL * 0.75)
    started = time.monotonic()
    live.finish(plain("done"))
    waited = time.monotonic() - started
    assert INTERVAL * 0.1 <= waited <= INTERVAL * 0.5
    assert reply.kinds == ["post", "update", "final"] and reply.gaps()[1] >= INTERVAL


def test_finish_right_after_the_post_is_immediate() -> None:
    """The limit is on updates of the message: the post is chat.postMessage, limited on its own."""
    reply = RecordingReply()
    live = LiveMessage(reply, min_interval=INTERVAL)
    live.show(plain("start"))
    live.show(plain("pending"))
    started = time.monotonic()
    live.finish(plain("done"))
    assert time.monotonic() - started < INTERVAL * 0.25
    assert reply.kinds == ["post", "final"]


def test_finish_long_after_the_last_send_is_immediate() -> None:
    reply = RecordingReply()
    live = LiveMessage(reply, min_interval=INTERVAL)
    live.show(plain("start"))
    time.sleep(INTERVAL * 1.2)
    started = time.monotonic()
    live.finish(plain("done"))
    assert time.monotonic() - started < INTERVAL * 0.25


def test_finish_cancels_the_pending_update_and_nothing_follows_it() -> None:
    reply = RecordingReply()
    live = LiveMessage(reply, min_interval=INTERVAL)
    live.show(plain("start"))
    live.show(plain("pending"))
    live.finish(plain("done"))
    live.show(plain("late"))  # after the end: ignored
    time.sleep(INTERVAL * 1.5)
    assert reply.texts == ["start", "done"]
    assert live_timers() == []


def test_no_timer_threads_are_left_behind() -> None:
    before = len(live_timers())
    for _ in range(5):
        reply = RecordingReply()
        live = LiveMessage(reply, min_interval=0.05)
        for i in range(20):
            live.show(plain(str(i)))
            time.sleep(0.01)
        live.finish(plain("done"))
    time.sleep(0.1)
    assert len(live_timers()) == before


def test_the_same_state_is_not_sent_twice() -> None:
    reply = RecordingReply()
    live = LiveMessage(reply, min_interval=0.05)
    live.show(plain("a"))
    live.show(plain("a"))
    time.sleep(0.15)
    live.show(plain("a"))
    time.sleep(0.15)
    assert reply.texts == ["a"]
    live.finish(plain("b"))
    assert reply.texts == ["a", "b"]


def test_finish_without_show_sends_one_ordinary_message() -> None:
    reply = RecordingReply()
    LiveMessage(reply, min_interval=INTERVAL).finish(plain("only"))
    assert reply.kinds == ["send"]


def test_concurrent_shows_post_once_and_never_overlap() -> None:
    reply = RecordingReply(delay=0.01)
    live = LiveMessage(reply, min_interval=0.1)
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(50):
            live.show(plain(f"{n}-{i}"))
            time.sleep(0.004)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    live.finish(plain("done"))
    assert reply.kinds.count("post") == 1 and reply.kinds[0] == "post"
    assert reply.kinds[-1] == "final"
    assert reply.max_busy == 1
    assert min(reply.gaps()) >= 0.1


def test_a_failed_update_does_not_stop_the_message() -> None:
    reply = RecordingReply(fail_updates=1)
    live = LiveMessage(reply, min_interval=0.05)
    live.show(plain("a"))
    live.show(plain("b"))  # this update fails (logged)
    time.sleep(0.15)
    live.show(plain("c"))
    time.sleep(0.15)
    live.finish(plain("done"))
    assert reply.texts == ["a", "c", "done"]


@pytest.mark.parametrize("interval", [0.0, 0.05])
def test_tiny_intervals_still_send_the_final_state_last(interval: float) -> None:
    reply = RecordingReply()
    live = LiveMessage(reply, min_interval=interval)
    for i in range(100):
        live.show(plain(str(i)))
    live.finish(plain("done"))
    time.sleep(0.1)
    assert reply.texts[-1] == "done"
    assert reply.kinds.count("final") == 1


def test_without_a_rate_limit_the_final_state_goes_at_once() -> None:
    reply = RecordingReply()
    live = LiveMessage(reply, min_interval=1.0, final_waits=False)
    live.show(plain("first"))
    started = time.monotonic()
    live.finish(plain("done"))
    assert time.monotonic() - started < 0.2
    assert reply.kinds == ["post", "final"]
