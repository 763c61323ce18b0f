"""The gate in front of `/slack/events`: nothing reaches the Slack app unless it is small, signed
by Slack, readable, shaped as Slack shapes it, and from this app's own workspace.

In order, each step refusing with one log line and nothing changed:
1. the body is read up to MAX_BODY_BYTES while it streams in (413 past it);
2. the signature (v0 HMAC-SHA256 with SLACK_SIGNING_SECRET over the raw bytes, timestamp within
   five minutes) is checked before a byte of the body is parsed (401);
3. the body is decoded and parsed as the Slack app will parse it, strictly (400);
4. the fields the Slack app reads before any feature sees the request have Slack's types (400);
5. the workspace (`team_id`) and app (`api_app_id`) are this installation's, configured or
   learned from `auth.test` (403).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from bot.web.http_edge import (
    MAX_JSON_DEPTH,
    ASGIApp,
    BodyTooLarge,
    MalformedBody,
    Receive,
    Scope,
    Send,
    contains_nul,
    decode_utf8,
    loads_object,
    read_body,
    replay,
)

log = logging.getLogger("devicecare.slack.gate")

MAX_BODY_BYTES = 1024 * 1024  # Slack's own payloads stay far below this
MAX_AGE_SECONDS = 5 * 60  # Slack's advice, and what the Slack SDK checks
MAX_FORM_FIELDS = 100  # a slash command sends about a dozen
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_SIGNATURE_RE = re.compile(r"v0=[0-9a-f]{64}")
_ANY_WORKSPACE = frozenset({"url_verification"})  # answered by the Slack app; changes nothing


def _for_any_workspace(payload: dict[str, Any]) -> bool:
    # `type` is judged later; here it may still be a list or an object, which a set can't hold.
    kind = payload.get("type")
    return isinstance(kind, str) and kind in _ANY_WORKSPACE


def _refuse(status: int, reason: str, text: str) -> PlainTextResponse:
    # %r keeps newlines and control characters from outside out of the log's lines.
    log.warning("slack request refused (%s): %r", status, reason[:200])
    return PlainTextResponse(text, status_code=status)


# --- signature --------------------------------------------------------------------------------


def signature_problem(
    headers: Mapping[str, str], body: bytes, secret: str, now: float
) -> str | None:
    """Why Slack did not sign this request (just now), or None when it did."""
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        return "no numeric X-Slack-Request-Timestamp"
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        return "timestamp outside five minutes"
    if not _SIGNATURE_RE.fullmatch(signature):
        return "no v0 X-Slack-Signature"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "signature mismatch"
    return None


# --- parsing and shape ------------------------------------------------------------------------


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The request as the Slack app reads it (bolt's parse_body, made strict): JSON when sent
    as JSON or starting with `{`, else a form whose `payload` field, if any, is JSON."""
    text = decode_utf8(body)
    if not text:
        raise MalformedBody("empty body")
    # Exactly bolt's choice between JSON and form, so the request judged here is the one the
    # Slack app acts on.
    if (content_type or "").split(";")[0] == "application/json" or text.startswith("{"):
        return _without_nul(loads_object(text))
    try:
        fields = parse_qsl(
            text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS
        )
    except UnicodeDecodeError:
        raise MalformedBody("form value is not UTF-8") from None
    except ValueError:
        raise MalformedBody("too many form fields") from None
    form = dict(fields)
    if "payload" in form:  # interactivity: the form carries one JSON field
        payload = loads_object(form["payload"])
    else:
        # A slash command whose text says "payload" is judged on its own fields; the Slack
        # app (which looks for the word in the raw body) reads it as empty and does nothing.
        payload = form
    return _without_nul(payload)


def _without_nul(payload: dict[str, Any]) -> dict[str, Any]:
    if contains_nul(payload):
        raise MalformedBody("a NUL character in the body")
    return payload


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _id(value: Any) -> bool:
    # Slack never sends an empty id; an empty one names no one, and the Slack app would pass
    # the request on to listeners without a person behind it.
    return _is_str(value) and value != ""


def _object_with_id(value: Any) -> bool:
    return isinstance(value, dict) and _id(value.get("id"))


_TEXT_OR_NONE = (
    "value",
    "selected_date",
    "selected_time",
    "selected_user",
    "selected_channel",
    "selected_conversation",
)
_TEXT_LISTS = ("selected_users", "selected_channels", "selected_conversations")


def _element_problem(element: dict[str, Any]) -> str | None:
    """Why an action or a state value has a field of the wrong type (our listeners read these
    as Slack types them), or None."""
    for name in _TEXT_OR_NONE:
        if element.get(name) is not None and not _is_str(element[name]):
            return f"{name} is not a string"
    for name in _TEXT_LISTS:
        if name in element and not (
            isinstance(element[name], list) and all(_is_str(v) for v in element[name])
        ):
            return f"{name} is not a list of strings"
    option = element.get("selected_option")
    if option is not None and not (isinstance(option, dict) and _is_str(option.get("value"))):
        return "selected_option without a value"
    if "selected_options" in element:
        options = element["selected_options"]
        if not isinstance(options, list) or not all(
            isinstance(o, dict) and _is_str(o.get("value")) for o in options
        ):
            return "selected_options is not a list of options"
    if "files" in element and not (
        isinstance(element["files"], list) and all(isinstance(f, dict) for f in element["files"])
    ):
        return "files is not a list of objects"
    return None


def _view_problem(view: Any) -> str | None:
    if not isinstance(view, dict):
        return "view is not an object"
    if not _is_str(view.get("type")):
        return "view without a type"
    for name in ("id", "callback_id", "private_metadata", "hash"):
        if name in view and not _is_str(view[name]):
            return f"view {name} is not a string"
    if "state" in view:
        state = view["state"]
        values = state.get("values") if isinstance(state, dict) else None
        if not isinstance(values, dict) or not all(
            isinstance(block, dict) and all(isinstance(v, dict) for v in block.values())
            for block in values.values()
        ):
            return "view state is not blocks of objects"
        for block in values.values():
            for element in block.values():
                if problem := _element_problem(element):
                    return f"view state: {problem}"
    return None


# Where the Slack app looks for the user, channel, team and workspace of any request (bolt's
# context extraction, before any listener or middleware of ours runs): the payload, its first
# authorization, and these objects within the payload or its event.
_CARRIERS = ("event", "message", "previous_message", "item", "assistant_thread")
_NAMED = ("user", "channel", "team", "enterprise")


def _carrier_problem(carrier: dict[str, Any], where: str, depth: int = 0) -> str | None:
    for name in _NAMED:
        value = carrier.get(name)
        if value is not None and not isinstance(value, str | dict):
            return f"{where}{name} is neither text nor an object"
    if depth < 2:
        for name in _CARRIERS:
            inner = carrier.get(name)
            if isinstance(inner, dict):
                if problem := _carrier_problem(inner, f"{where}{name}.", depth + 1):
                    return problem
    return None


def _authorizations_problem(carrier: dict[str, Any], where: str) -> str | None:
    """The Slack app reads the first authorization as it reads the payload, and its first
    authorization in turn: each along the way must be a list of objects."""
    for _ in range(MAX_JSON_DEPTH):
        authorizations = carrier.get("authorizations")
        if authorizations is None:
            return None
        if not (
            isinstance(authorizations, list) and all(isinstance(a, dict) for a in authorizations)
        ):
            return f"{where}authorizations is not a list of objects"
        if not authorizations:
            return None
        carrier, where = authorizations[0], f"{where}authorization "
        if problem := _carrier_problem(carrier, where):
            return problem
    return "authorizations nested too deeply"


def _context_problem(payload: dict[str, Any]) -> str | None:
    """Why the Slack app would fail to read the request's context (user, channel, team), or
    None. It reads these for every request, whatever its type."""
    if problem := _authorizations_problem(payload, ""):
        return problem
    # Our modals never ask for response URLs; Slack then sends none, or an empty list.
    response_urls = payload.get("response_urls")
    if "response_urls" in payload and not (
        isinstance(response_urls, list)
        and len(response_urls) <= 1
        and all(isinstance(r, dict) for r in response_urls)
    ):
        return "response_urls is not a list of at most one object"
    return _carrier_problem(payload, "")


def shape_problem(payload: dict[str, Any]) -> str | None:
    """Why the payload can't be a request from Slack, judged on the fields the Slack app and
    our listeners read before checking them; None when it can."""
    for name in ("type", "team_id", "api_app_id", "trigger_id", "response_url", "command"):
        if name in payload and not _is_str(payload[name]):
            return f"{name} is not a string"
    for name in ("team", "channel", "enterprise", "container", "message"):
        if payload.get(name) is not None and not isinstance(payload[name], dict):
            return f"{name} is not an object"
    # The Slack app reads these from any request, whatever its type (to skip its own events,
    # and to log one no listener takes), expecting an object whenever the key is there.
    for name in ("event", "view"):
        if name in payload and not isinstance(payload[name], dict):
            return f"{name} is not an object"
    if problem := _context_problem(payload):
        return problem
    kind = payload.get("type")
    if "command" in payload:  # a slash command's form
        if not payload["command"].startswith("/") or not _id(payload.get("user_id")):
            return "command without a user"
        return None
    if kind is None:
        return "no type"
    if kind in (
        "block_actions",
        "view_submission",
        "view_closed",
        "block_suggestion",
        "shortcut",
        "message_action",
        "interactive_message",
    ):
        if not _object_with_id(payload.get("user")):
            return f"{kind} without a user"
        if "view" in payload and (kind != "block_actions" or payload["view"] is not None):
            if problem := _view_problem(payload["view"]):
                return problem
    if kind == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions:
            return "block_actions without actions"
        if not all(isinstance(a, dict) and _is_str(a.get("action_id")) for a in actions):
            return "an action without an action_id"
        for action in actions:
            if problem := _element_problem(action):
                return f"action: {problem}"
    elif kind in ("view_submission", "view_closed"):
        if "view" not in payload:
            return f"{kind} without a view"
    elif kind == "block_suggestion":
        for name in ("action_id", "block_id", "value"):
            if not _is_str(payload.get(name)):
                return f"block_suggestion {name} is not a string"
    elif kind in ("shortcut", "message_action"):
        if not _is_str(payload.get("callback_id")):
            return f"{kind} without a callback_id"
    elif kind == "event_callback":
        event = payload.get("event")
        if not isinstance(event, dict) or not _is_str(event.get("type")):
            return "event without a type"
        authorizations = payload.get("authorizations", [])
        if not isinstance(authorizations, list) or not all(
            isinstance(a, dict) for a in authorizations
        ):
            return "authorizations is not a list of objects"
    elif kind == "url_verification":
        if not _is_str(payload.get("challenge")):
            return "url_verification without a challenge"
    return None


# --- workspace --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Installation:
    """The one workspace, and the one Slack app in it, that this service serves."""

    team_id: str
    app_id: str | None  # None only when neither configured nor told by Slack (then logged)


class WorkspaceIdentity:
    """SLACK_TEAM_ID and SLACK_APP_ID when configured; what Slack's `auth.test` (and, for the
    app, `bots.info`) says the bot token belongs to otherwise, asked once."""

    def __init__(self, client: AsyncWebClient, team_id: str | None, app_id: str | None) -> None:
        self._client = client
        self._team_id = team_id
        self._app_id = app_id
        self._known = Installation(team_id, app_id) if team_id and app_id else None
        self._lock = asyncio.Lock()

    async def installation(self) -> Installation | None:
        """Who we serve; None while Slack can't be asked (tried again next time)."""
        if self._known is not None:
            return self._known
        async with self._lock:
            if self._known is None:
                self._known = await self._learn()
        return self._known

    async def _learn(self) -> Installation | None:
        try:
            answer = await self._client.auth_test()
            team_id = self._team_id or answer.get("team_id")
            app_id = self._app_id or answer.get("app_id")
            bot_id = answer.get("bot_id")
            if not app_id and isinstance(bot_id, str):
                bot = (await self._client.bots_info(bot=bot_id)).get("bot")
                app_id = bot.get("app_id") if isinstance(bot, dict) else None
        except (SlackApiError, OSError, TimeoutError, ValueError) as exc:
            log.warning("couldn't ask Slack which workspace this is: %s", type(exc).__name__)
            return None
        if not isinstance(team_id, str) or not team_id:
            log.warning("Slack's auth.test named no team; set SLACK_TEAM_ID")
            return None
        if not isinstance(app_id, str) or not app_id:
            log.warning("Slack named no app for the bot token; set SLACK_APP_ID to check it")
            app_id = None
        log.info("serving Slack workspace %s, app %s", team_id, app_id or "(unchecked)")
        return Installation(team_id, app_id)


def workspace_problem(payload: dict[str, Any], ours: Installation) -> str | None:
    """Why the request isn't for this installation, or None when it is."""
    team = payload.get("team_id")
    if team is None and isinstance(payload.get("team"), dict):
        team = payload["team"].get("id")
    if team != ours.team_id:
        return f"workspace {team!r} is not {ours.team_id}"
    app = payload.get("api_app_id")
    if ours.app_id is not None and app != ours.app_id:
        return f"app {app!r} is not {ours.app_id}"
    return None


def socket_mode_middleware(
    identity: WorkspaceIdentity,
) -> Callable[..., Awaitable[BoltResponse | None]]:
    """The workspace check for Socket Mode, where requests arrive over Slack's socket rather
    than through the gate (which checks the rest over HTTP). Put first, before anyone is
    looked up."""

    async def only_this_workspace(
        body: dict[str, Any], next_: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        if _for_any_workspace(body):
            await next_()
            return None
        ours = await identity.installation()
        problem = "workspace unknown" if ours is None else workspace_problem(body, ours)
        if problem is None:
            await next_()
            return None
        log.warning("slack request refused (socket mode): %r", problem[:200])
        return BoltResponse(status=403, body="")

    return only_this_workspace


# --- the gate ---------------------------------------------------------------------------------


class SlackGate:
    """An ASGI app that passes a request to `app` (the Slack app's handler) only when every
    check above holds; the body it read is handed on unchanged."""

    def __init__(self, app: ASGIApp, signing_secret: str, identity: WorkspaceIdentity) -> None:
        self.app = app
        self.secret = signing_secret
        self.identity = identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            body = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge as exc:
            await _refuse(413, str(exc), "Request too large")(scope, receive, send)
            return
        except MalformedBody as exc:
            await _refuse(400, str(exc), "Bad request")(scope, receive, send)
            return
        # Slack's timestamps are wall-clock time, so they are judged against it.
        problem = signature_problem(request.headers, body, self.secret, time.time())
        if problem is not None:
            await _refuse(401, problem, "Invalid request")(scope, receive, send)
            return
        if len(request.headers.getlist("content-type")) > 1:
            await _refuse(400, "more than one Content-Type", "Bad request")(scope, receive, send)
            return
        try:
            payload = parse_body(body, request.headers.get("content-type"))
        except MalformedBody as exc:
            await _refuse(400, str(exc), "Bad request")(scope, receive, send)
            return
        # Slack's certificate check (signed like the rest) is answered by the Slack app alone.
        answered_alone = payload.get("ssl_check") == "1" or _for_any_workspace(payload)
        problem = None if payload.get("ssl_check") == "1" else shape_problem(payload)
        if problem is not None:
            await _refuse(400, problem, "Bad request")(scope, receive, send)
            return
        if not answered_alone:
            ours = await self.identity.installation()
            if ours is None:
                response = _refuse(503, "workspace unknown", "Try again shortly")
                response.headers["Retry-After"] = "30"
                await response(scope, receive, send)
                return
            problem = workspace_problem(payload, ours)
            if problem is not None:
                text = "DeviceCare serves only its own Slack workspace; nothing was changed."
                await _refuse(403, problem, text)(scope, receive, send)
                return
        await self.app(scope, replay(body, receive), send)
