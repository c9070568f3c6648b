"""One scheduler among several replicas: whoever holds the database lease (bot.state.lease) leads.

The leader runs the scheduler and the ledger's event watchers; the others serve every command
(schedules are added, listed and cancelled in the shared job store) and try to take the lease every
third of its time. The leader renews it as often, and stops leading when it has not renewed it for
`seconds - margin` by its own clock, counted from before the last renewal that succeeded: the
database extends the lease from a later moment, so another replica can only take it after the
leader stopped. A partitioned leader therefore stops on time even if its renewal hangs (renewals
run on their own thread, and are waited for no longer than the lease allows).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from bot.state.lease import Lease

log = logging.getLogger("dockerbot.leadership")


class Leadership:
    def __init__(
        self,
        lease: Lease,
        *,
        on_gain: Callable[[], None],
        on_loss: Callable[[], None],
        on_renewed: Callable[[], None] = lambda: None,
        presence: Lease | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.presence = presence  # this replica's own lease, renewed alongside: "it is alive"
        self.on_gain = on_gain
        self.on_loss = on_loss
        self.on_renewed = on_renewed
        self.clock = clock
        self.every = lease.seconds / 3
        self.margin = lease.seconds / 6  # time to stop leading before the lease could pass on
        self.leading = False
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._renewals = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease-renewal")
        self._pending: Future[bool] | None = None
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop leading (if this replica does) and hand the lease back, so another takes it at once."""
        self._stop.set()
        self._thread.join(self.lease.seconds)
        if self.presence is not None:
            with contextlib.suppress(Exception):  # it expires by itself
                self.presence.release()
        if self.leading:
            self._step_down("shutting down")
            try:
                self.lease.release()
            except Exception as error:  # noqa: BLE001 - it expires by itself
                log.warning(
                    "could not hand back the scheduler lease (it expires in %g s): %s",
                    self.lease.seconds,
                    error,
                )
        self._renewals.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self.clock()
            held = self._try(self._renewal_timeout(started))
            if held:
                self._valid_until = started + self.lease.seconds
                if not self.leading:
                    self.leading = True
                    log.info(
                        "this replica holds the scheduler lease (%s): it runs the schedules",
                        self.lease.holder,
                    )
                    self._call(self.on_gain, "start leading")
                else:
                    self._call(self.on_renewed, "renew")
            elif held is False and self.leading:
                self._step_down("another replica holds the scheduler lease")
            if self.leading and self.clock() >= self._valid_until - self.margin:
                self._step_down("the scheduler lease could not be renewed in time")
            self._stop.wait(self._pause())

    def _renewal_timeout(self, now: float) -> float:
        if not self.leading:
            return self.every
        return max(0.05, self._valid_until - self.margin - now)

    def _pause(self) -> float:
        if not self.leading:
            return self.every
        return max(0.0, min(self.every, self._valid_until - self.margin - self.clock()))

    def _try(self, timeout: float) -> bool | None:
        """True (held), False (another holds it), None (no answer from the database in time)."""
        if self._pending is None or self._pending.done():
            self._pending = self._renewals.submit(self._renew)
        try:
            return self._pending.result(timeout)
        except FutureTimeout:
            log.warning("the database did not answer the scheduler lease's renewal within %.1f s", timeout)
        except Exception as error:  # noqa: BLE001 - database down or unreachable: try again
            log.warning("could not renew the scheduler lease: %s", error)
        return None

    def _renew(self) -> bool:
        if self.presence is not None:
            self.presence.acquire()
        return self.lease.acquire()

    def _step_down(self, why: str) -> None:
        self.leading = False
        log.warning("this replica stops running the schedules: %s", why)
        self._call(self.on_loss, "stop leading")

    def _call(self, hook: Callable[[], None], what: str) -> None:
        try:
            hook()
        except Exception:  # a hook that fails must not end the lease's thread
            log.exception("could not %s", what)
