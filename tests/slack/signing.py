"""Requests to /slack/events, signed exactly as Slack signs them (v0 HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

SIGNING_SECRET = "test-signing-secret"


def slack_signature(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackSender:
    """Builds and sends the request shapes Slack sends; timestamps are made at send time."""

    def __init__(self, http: httpx.AsyncClient, secret: str = SIGNING_SECRET) -> None:
        self.http = http
        self.secret = secret

    async def send(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        all_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or slack_signature(self.secret, ts, body),
            **(headers or {}),
        }
        return await self.http.post("/slack/events", content=body.encode(), headers=all_headers)

    async def command(
        self,
        command: str,
        text: str = "",
        *,
        user: str = "U_TECH",
        channel: str = "C_HELP",
        **extra: str,
    ) -> httpx.Response:
        form = {
            "token": "unused",
            "team_id": "T_DISTRICT",
            "team_domain": "district",
            "channel_id": channel,
            "channel_name": "help",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A_DEVICECARE",
            "response_url": "https://hooks.slack.test/commands/1",
            "trigger_id": f"trigger.{uuid.uuid4().hex[:12]}",
            **extra,
        }
        return await self.send(urlencode(form), "application/x-www-form-urlencoded")

    async def interaction(self, payload: dict[str, Any], **kwargs: Any) -> httpx.Response:
        """block_actions, view_submission, shortcut, message_action, block_suggestion."""
        payload = {"team": {"id": "T_DISTRICT"}, "api_app_id": "A_DEVICECARE", **payload}
        body = urlencode({"payload": json.dumps(payload)})
        return await self.send(body, "application/x-www-form-urlencoded", **kwargs)

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> httpx.Response:
        envelope = {
            "token": "unused",
            "team_id": "T_DISTRICT",
            "api_app_id": "A_DEVICECARE",
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10]}",
            "event_time": int(time.time()),
            "event": event,
            "authorizations": [{"team_id": "T_DISTRICT", "user_id": "U_BOT", "is_bot": True}],
        }
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.send(json.dumps(envelope), "application/json", headers=headers)
