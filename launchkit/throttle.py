"""Pacing sends: ``[delivery] rate`` (messages per second) and ``daily_cap``.

The rate is kept strictly, as a receiving service counts it: sends go out in small chunks,
each waiting its share of time after the previous one, and never more than the rate may
start within any window a little longer than a second, so the jitter of a busy machine
(a request that left late, the next one on time) cannot push a second at the service over.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

_MARGIN = 1.01  # chunk spacing, padded a little
_WINDOW = 1.05  # seconds: the rate holds within any window this long, not just within one second


class Throttle:
    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._next: float | None = None
        self._starts: deque[tuple[float, int]] = deque()  # (when, how many) of recent chunks

    def chunk_size(self, max_batch: int) -> int:
        """How many messages one provider call may carry: a tenth of a second's worth at most."""
        if self.rate is None:
            return max_batch
        return max(1, min(max_batch, math.floor(self.rate / 10)))

    def wait(self, count: int, stop: Callable[[], bool] = lambda: False) -> bool:
        """Sleep until ``count`` messages may go; False if ``stop`` became true meanwhile.

        Each chunk waits for its own share of time (``count / rate``) after the previous
        deadline, the first included: N messages take at least N / rate seconds, and the
        work between chunks does not slow the pace below the rate.
        """
        if self.rate is None:
            return not stop()
        spacing = count / self.rate * _MARGIN
        now = self.clock()
        self._next = now + spacing if self._next is None else max(self._next + spacing, now)
        while True:
            now = self.clock()
            while self._starts and self._starts[0][0] <= now - _WINDOW:
                self._starts.popleft()
            in_window = sum(n for _, n in self._starts)
            if now >= self._next and in_window + count <= self.rate:
                break
            if stop():
                return False
            until_window = self._starts[0][0] + _WINDOW - now if in_window + count > self.rate and self._starts else 0.0
            self.sleep(min(max(self._next - now, until_window, 0.001), 0.1))
        self._starts.append((now, count))
        return not stop()
