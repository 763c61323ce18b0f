"""The Slack Web API client DeviceCare uses: base URL from settings, retries on 429 and 5xx."""

from __future__ import annotations

import aiohttp
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


async def close_web_client(client: AsyncWebClient) -> None:
    if client.session is not None and not client.session.closed:
        await client.session.close()
