"""Counting failed Slack Web API calls, for the `devicecare_slack_api_errors_total` metric.

Every Slack client DeviceCare builds (bot.slack.client) is this one, in the web process (Bolt's
handlers) and in the worker (outbox posts) alike; the count goes to the database with the
process's next heartbeat (bot.heartbeat), so /metrics shows the total of all processes.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot import heartbeat


def error_code(exc: BaseException) -> str:
    """Slack's error code ("channel_not_found"), or the kind of failure reaching Slack."""
    if isinstance(exc, SlackApiError):
        code = exc.response.get("error") if exc.response is not None else None
        return str(code or f"http_{getattr(exc.response, 'status_code', 'error')}")[:60]
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "connection_error"


class CountingWebClient(AsyncWebClient):
    async def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> AsyncSlackResponse:
        try:
            return await super().api_call(api_method, *args, **kwargs)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            heartbeat.count(heartbeat.slack_error_key(api_method[:60], error_code(exc)))
            raise
