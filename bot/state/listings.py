"""Listings kept for their More button: the pages of one `images` reply, by an opaque token."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ListingStore(Generic[T]):
    """Bounded LRU of listings by random token, each kept `ttl` seconds (in memory, per process)."""

    def __init__(self, capacity: int = 32, ttl: float = 1800, clock: Callable[[], float] = time.monotonic):
        self.capacity = capacity
        self.ttl = ttl
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, listing: T) -> str:
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._items[token] = (self.clock(), listing)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return token

    def get(self, token: str) -> T | None:
        with self._lock:
            item = self._items.get(token)
            if item is None:
                return None
            if self.clock() - item[0] > self.ttl:
                del self._items[token]
                return None
            self._items.move_to_end(token)
            return item[1]
