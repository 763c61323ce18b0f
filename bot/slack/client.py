"""The Slack Web API client DeviceCare uses: base URL from settings, retries on 429 and 5xx."""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack.api_errors import CountingWebClient

DEFAULT_API_URL = "https://slack.com/api/"


def build_web_client(settings: Settings) -> AsyncWebClient:
    """A client with one HTTP connection pool, so calls reuse connections to Slack.

    Call it inside the running event loop; `close_web_client` releases the pool.
    """
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base_url = settings.slack_api_url or DEFAULT_API_URL
    if not base_url.endswith("/"):
        base_url += "/"
    return CountingWebClient(
        token=token,
        logger=_sdk_logger(),
        base_url=base_url,
        timeout=15,
        session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)),
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            # Honours Retry-After; the outbox retries again later if Slack is still busy.
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def _sdk_logger() -> logging.Logger:
    """The SDK's logger with its level set to what it would inherit. The SDK builds its debug
    line for each call (the whole request, a modal included) whenever the logger's own level
    is unset, logged or not; that was a measurable share of a burst. Set once the process's
    logging is configured (the client is built after), and left alone when configured."""
    logger = logging.getLogger("slack_sdk.web.async_base_client")
    if logger.level == logging.NOTSET:
        logger.setLevel(logger.getEffectiveLevel())
    return logger


async def close_web_client(client: AsyncWebClient) -> None:
    if client.session is not None and not client.session.closed:
        await client.session.close()


class PooledWebClient(CountingWebClient):
    """A request's client whose copies share its connection pool (and count Slack's errors).

    Bolt deep-copies a request's context (its client too) for each lazy listener, and an
    aiohttp session can't be copied; nor should it be: the copy uses the same pool.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> PooledWebClient:
        return copy.copy(self)

    @classmethod
    def like(cls, client: AsyncWebClient) -> PooledWebClient:
        return cls(
            token=client.token,
            base_url=client.base_url,
            timeout=client.timeout,
            ssl=client.ssl,
            proxy=client.proxy,
            session=client.session,
            trust_env_in_session=client.trust_env_in_session,
            headers=client.headers,
            team_id=client.default_params.get("team_id"),
            logger=client.logger,
            retry_handlers=list(client.retry_handlers),
        )


class PooledClientMiddleware(AsyncMiddleware):
    """Gives each request a `PooledWebClient`, so its lazy listeners can be started.

    A middleware class rather than a function, which bolt would build arguments for on every
    request."""

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        context = req.context
        client = context.client
        if client is not None and not isinstance(client, PooledWebClient):
            context["client"] = PooledWebClient.like(client)
            for made_with_the_old_client in ("say", "complete", "fail"):
                context.pop(made_with_the_old_client, None)  # made again on first use
        return await next()


pooled_client_middleware = PooledClientMiddleware()
