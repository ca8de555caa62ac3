"""A per-client request budget for the public collect endpoint: at most N requests per minute
per address, counted in fixed one-minute windows, in memory (per API process), for a bounded
number of addresses (the least recently seen are forgotten)."""

from __future__ import annotations

from ecrm.lru import LruCache

ADDRESSES_KEPT = 100_000


class RateLimit:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: LruCache[str, tuple[int, int]] = LruCache(ADDRESSES_KEPT)

    def allow(self, address: str, now: float) -> bool:
        """Count one request from `address` at `now` (seconds); False once its minute's budget is spent."""
        minute = int(now // 60)
        window, used = self._windows.get(address) or (minute, 0)
        if window != minute:
            window, used = minute, 0
        if used >= self.per_minute:
            return False
        self._windows.put(address, (window, used + 1))
        return True
