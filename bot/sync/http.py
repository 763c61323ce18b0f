"""HTTP to a district's source systems: bearer tokens cached until they expire, and requests
retried with backoff through outages, 429s and expired tokens.

What still fails after the retries raises SourceUnavailable, which stops the whole run before
anything is applied: a sync never applies half of what it read.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from workflows.clock import Clock, SystemClock

log = logging.getLogger("devicecare.sync")

# A token is renewed this long before the source says it expires (clock skew, slow requests).
TOKEN_MARGIN = timedelta(seconds=60)
MAX_ERROR_BODY = 200


class SourceUnavailable(Exception):
    """A source that stays down, refuses the credentials, or answers what can't be read.
    `response` is the refusing answer, when there was one, for a client to explain it."""

    def __init__(self, message: str, *, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


@dataclass(frozen=True)
class Backoff:
    """How often and how long to wait between attempts; `sleep` is injectable for tests."""

    attempts: int = 6
    first_wait: float = 1.0
    longest_wait: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.longest_wait)
        # Full jitter: many districts' nightly syncs don't retry in step.
        return random.uniform(0, min(self.longest_wait, self.first_wait * 2 ** (attempt - 1)))


TokenFetch = Callable[[httpx.AsyncClient], Awaitable[tuple[str, float]]]


class CachedToken:
    """An access token kept until shortly before it expires. `fetch` returns the token and its
    lifetime in seconds (OAuth's `expires_in`)."""

    def __init__(self, fetch: TokenFetch, clock: Clock | None = None) -> None:
        self._fetch = fetch
        self._clock = clock or SystemClock()
        self._token: str | None = None
        self._expires: datetime | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self, client: httpx.AsyncClient) -> str:
        async with self._lock:
            now = self._clock.now()
            if self._token is None or self._expires is None or now >= self._expires:
                token, lifetime = await self._fetch(client)
                self.fetches += 1
                self._token = token
                self._expires = now + timedelta(seconds=float(lifetime)) - TOKEN_MARGIN
            return self._token

    def invalidate(self) -> None:
        """The source refused the token before its time (revoked, or a clock off): renew it."""
        self._token = None


def retry_after_seconds(response: httpx.Response, now: datetime) -> float | None:
    """Retry-After as seconds or an HTTP date; None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return (when - now).total_seconds() if when.tzinfo else None


def _short(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:MAX_ERROR_BODY] + ("…" if len(text) > MAX_ERROR_BODY else "")


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    source: str,
    token: CachedToken | None = None,
    backoff: Backoff | None = None,
    clock: Clock | None = None,
    retryable: Callable[[httpx.Response], bool] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request, retried on connection errors, 5xx, 429 and a refused token.

    Any other 4xx is an answer, not an outage: it raises SourceUnavailable at once, unless
    `retryable` says it is the source's own sign of a passing limit (Google's 403
    userRateLimitExceeded).
    """
    backoff = backoff or Backoff()
    clock = clock or SystemClock()
    problem = ""
    for attempt in range(1, backoff.attempts + 1):
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {await token.get(client)}"
        kwargs["headers"] = headers
        retry_after: float | None = None
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__} reaching {source}"
        else:
            status = response.status_code
            if status < 400:
                return response
            problem = f"{source} answered {status}: {_short(response)}"
            if status == 401 and token is not None:
                token.invalidate()
                if attempt == 1:
                    continue  # a token that expired early: one immediate retry with a new one
            elif status == 429 or status >= 500 or (retryable and retryable(response)):
                retry_after = retry_after_seconds(response, clock.now())
            else:
                raise SourceUnavailable(problem, response=response)
        if attempt < backoff.attempts:
            wait = backoff.wait(attempt, retry_after)
            log.info("sync: %s; retrying in %.1f s (attempt %s)", problem, wait, attempt)
            await backoff.sleep(wait)
    raise SourceUnavailable(f"{problem} (gave up after {backoff.attempts} attempts)")


class TokenClient(ABC):
    """A source read with a bearer token from its own token endpoint: its retry pacing, its
    clock and the cached token, and the two kinds of request made with them."""

    def __init__(self, backoff: Backoff | None, clock: Clock | None) -> None:
        self.backoff = backoff or Backoff()
        self.clock = clock or SystemClock()
        self.token = CachedToken(self._fetch_token, self.clock)

    @abstractmethod
    async def _fetch_token(self, client: httpx.AsyncClient) -> tuple[str, float]:
        """The token and its lifetime in seconds, from the source's token endpoint."""

    async def token_request(
        self, client: httpx.AsyncClient, url: str, *, source: str, **kwargs: Any
    ) -> httpx.Response:
        """The POST that asks the token endpoint for a token."""
        return await request(
            client, "POST", url, source=source, backoff=self.backoff, clock=self.clock, **kwargs
        )

    async def get_with_token(
        self, client: httpx.AsyncClient, url: str, *, source: str, **kwargs: Any
    ) -> httpx.Response:
        """A GET carrying the token."""
        return await request(
            client,
            "GET",
            url,
            source=source,
            token=self.token,
            backoff=self.backoff,
            clock=self.clock,
            **kwargs,
        )
