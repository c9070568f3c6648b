"""A message that changes while slow work runs (pull progress), updated at most once per interval.

Slack allows about one `chat.update` per second per message, while the engine can emit hundreds of
progress events a second. `show` only records the newest state; a timer sends it when the interval
since the last send has passed, so callers never wait on the network after the first post. The
final state goes out at once unless an update went out less than an interval ago.
"""

from __future__ import annotations

import logging
import threading
import time

from bot.core.commands import MessageRef, Reply
from bot.render.messages import Message

log = logging.getLogger("dockerbot.live")


class LiveMessage:
    def __init__(self, reply: Reply, min_interval: float = 1.0, final_waits: bool = True) -> None:
        self.reply = reply
        self.min_interval = min_interval
        self.final_waits = final_waits  # False where nothing limits the rate (the terminal)
        self.ref: MessageRef | None = None
        self.sends = 0  # posts + updates done, for tests and logs
        self._state = threading.Lock()  # guards the fields below
        self._io = threading.Lock()  # one send at a time, in order; the final one last
        self._pending: Message | None = None
        self._latest: Message | None = None  # the newest state shown, sent or pending
        self._timer: threading.Timer | None = None
        self._started = False  # the first post is under way or done
        self._finished = False
        self._last_sent = 0.0  # monotonic time the last send *returned*: Slack counts arrivals
        self._last_update: float | None = None  # the same for the last chat.update (not the post)

    def show(self, message: Message) -> None:
        """Make `message` the current state. Posts the first time; later calls coalesce."""
        with self._state:
            if self._finished or message == self._latest:
                return
            self._latest = message
            if self._started:
                self._pending = message
                if self._timer is None:
                    self._timer = threading.Timer(self._wait_left(), self._flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._started = True
        with self._io:
            self.ref = self.reply.send(message, live=True)
            self._sent()

    def finish(self, message: Message) -> None:
        """Send the final state: at once, or after the rest of the interval since the last *update*.

        The limit is on updates of one message; the first post is another method with a limit of
        its own (chat.postMessage), so a pull that ends within a second shows its result then."""
        with self._state:
            if self._finished:
                return
            self._finished = True
            self._pending = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        with self._io:  # a flush already sending completes first; later ones see _finished
            with self._state:
                since = self._last_update
            delay = since + self.min_interval - time.monotonic() if since is not None else 0.0
            if delay > 0 and self.final_waits:
                time.sleep(delay)
            if self.ref is None:
                self.ref = self.reply.send(message)
            else:
                self.reply.update(self.ref, message, final=True)
            self._sent()

    def _wait_left(self) -> float:  # call with _state held
        if self.sends == 0:
            return 0.0
        return max(0.0, self._last_sent + self.min_interval - time.monotonic())

    def _sent(self) -> None:
        with self._state:
            self.sends += 1
            self._last_sent = time.monotonic()

    def _flush(self) -> None:
        with self._io:
            with self._state:
                self._timer = None
                message, self._pending = self._pending, None
                if self._finished or message is None or self.ref is None:
                    return
                # The first post may have been under way when the timer was set: wait out its interval.
                delay = self._wait_left()
                if delay > 0:
                    self._pending = message
                    self._timer = threading.Timer(delay, self._flush)
                    self._timer.daemon = True
                    self._timer.start()
                    return
            try:
                self.reply.update(self.ref, message)
            except Exception:  # a lost progress update is not worth failing the work for
                log.warning("could not update a live message", exc_info=True)
            self._sent()
            with self._state:
                self._last_update = self._last_sent
