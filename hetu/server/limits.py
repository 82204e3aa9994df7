"""Message-rate limits of one connection, per direction."""

from __future__ import annotations

import time


class FloodChecker:
    """Counts messages since a window start; ``[[max, seconds], ...]`` rules.

    A rule is broken when more than ``max`` messages arrived within ``seconds`` of the
    window start. Once the last (longest) rule's time has passed, the count restarts.
    An empty rule list means unlimited.
    """

    def __init__(self) -> None:
        self.count = 0
        self.start = time.monotonic()

    def hit(self, limits: list) -> bool:
        """Count one message; True when that breaks a rule."""
        if not limits:
            return False
        now = time.monotonic()
        if now - self.start > limits[-1][1]:
            self.count, self.start = 0, now
        count = self.count = self.count + 1
        elapsed = now - self.start
        for n, w in limits:  # a loop, not any(): twice per call, a generator costs
            if count > int(n) and elapsed < float(w):
                return True
        return False
