"""Pacing sends: ``[delivery] rate`` (messages per second) and ``daily_cap``.

The rate is kept strictly, as a receiving service counts it: sends go out in small chunks
spaced so that no second ever sees more than the rate, rather than a full bucket's burst.
"""

from __future__ import annotations

import math
import time
from typing import Callable

# Spacing is padded a little: a request that took longer to leave than the next one
# must not make a second at the service count one chunk too many.
_MARGIN = 1.01


class Throttle:
    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._next: float | None = None

    def chunk_size(self, max_batch: int) -> int:
        """How many messages one provider call may carry: a tenth of a second's worth at most."""
        if self.rate is None:
            return max_batch
        return max(1, min(max_batch, math.floor(self.rate / 10)))

    def wait(self, count: int, stop: Callable[[], bool] = lambda: False) -> bool:
        """Sleep until ``count`` messages may go; False if ``stop`` became true meanwhile.

        Each chunk waits for its own share of time (``count / rate``) after the previous
        one, the first included: N messages take at least N / rate seconds, and no burst
        at the start of a tick goes over the rate.
        """
        if self.rate is None:
            return not stop()
        spacing = count / self.rate * _MARGIN
        now = self.clock()
        # From the previous deadline, not from when the previous chunk's work ended: the
        # work must not slow the pace below the rate; after an overrun, go at once.
        self._next = now + spacing if self._next is None else max(self._next + spacing, now)
        while (delay := self._next - self.clock()) > 0:
            if stop():
                return False
            self.sleep(min(delay, 0.1))
        return not stop()
