"""A small in-process rate limiter: at most N requests per client in any sliding minute.

Each client (an IP address) keeps the times of its recent requests; a request is allowed while
fewer than `limit` of them fall inside the window. It is per process, which is what the family
page needs: it slows down someone guessing links or hammering the link-request form, and a
deployment with several web replicas simply allows each replica its own share.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_WINDOW_SECONDS = 60.0
# Clients remembered at once; past this the least recently seen are forgotten, so a flood of
# addresses can't grow the process without bound.
DEFAULT_MAX_CLIENTS = 10_000


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int  # 0 when allowed; else whole seconds until a request is allowed


class SlidingWindowLimiter:
    def __init__(
        self,
        limit: int,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("a rate limit must allow at least one request")
        self.limit = limit
        self.window = window_seconds
        self.max_clients = max_clients
        self._now = now
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, client: str) -> Verdict:
        """Count a request from `client` if it is allowed; a refused one is not counted."""
        now = self._now()
        times = self._seen.get(client)
        if times is None:
            times = deque()
            self._seen[client] = times
            self._forget_oldest()
        else:
            self._seen.move_to_end(client)
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.limit:
            wait = times[0] + self.window - now
            return Verdict(False, max(1, math.ceil(wait)))
        times.append(now)
        return Verdict(True, 0)

    def _forget_oldest(self) -> None:
        while len(self._seen) > self.max_clients:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
