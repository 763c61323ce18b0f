"""What every route does with a body from outside before trusting it: read it with a size limit
enforced while it streams in, decode it strictly, and parse JSON with a bound on nesting.

Each failure is an exception a route turns into a 4xx with one log line, never a 5xx.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import ClientDisconnect, Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Far deeper than anything Slack or Stripe sends (about ten levels), far shallower than the
# interpreter's recursion limit, which a deeper document would hit later in json or pydantic.
MAX_JSON_DEPTH = 64
_LENGTH_RE = re.compile(r"[0-9]{1,15}")


class BodyTooLarge(Exception):
    """The body is, or says it is, larger than the route takes."""


class MalformedBody(Exception):
    """The body can't be read as what the route expects (a short reason, safe to log)."""


async def read_limited(chunks: AsyncIterator[bytes], limit: int, declared: str | None) -> bytes:
    """The whole body, refused as soon as it (or its Content-Length) passes `limit` bytes, so a
    huge body costs at most `limit` bytes of memory and is never read to its end."""
    if declared is not None:
        if not _LENGTH_RE.fullmatch(declared):
            raise MalformedBody("Content-Length is not a number")
        if int(declared) > limit:
            raise BodyTooLarge(f"Content-Length {int(declared)} is over {limit} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"body is over {limit} bytes")
    return bytes(body)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, read with `read_limited`; a client that leaves before sending all of
    it is a MalformedBody too (answered into the void, not a traceback)."""
    try:
        return await read_limited(request.stream(), limit, request.headers.get("content-length"))
    except ClientDisconnect:
        raise MalformedBody("client left before sending the whole body") from None


def decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("body is not UTF-8") from None


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed document (without recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def loads_object(text: str | bytes) -> dict[str, Any]:
    """A JSON object, or MalformedBody for anything else: invalid JSON, a non-object at the top,
    or nesting deeper than MAX_JSON_DEPTH."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise MalformedBody("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError of bytes
        raise MalformedBody(f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise MalformedBody(f"JSON {type(value).__name__} where an object belongs")
    if _depth(value) > MAX_JSON_DEPTH:
        raise MalformedBody("JSON nested too deeply")
    return value


def contains_nul(value: Any) -> bool:
    """Whether a parsed document has a NUL character in any key or text. Nothing Slack or
    Stripe sends has one, and PostgreSQL can't store one: such a request is refused whole."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands an app the body already read, then defers to the real one (which
    reports the client's disconnect)."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


class StrictTransportSecurity:
    """Sends `Strict-Transport-Security` with every response, so a browser that has once
    reached the service over https never tries plain http for it again."""

    HEADER = (b"strict-transport-security", b"max-age=31536000")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == self.HEADER[0] for name, _ in headers):
                    headers.append(self.HEADER)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_header)


_FAMILY_TOKEN_PATH = re.compile(r"^/family/(?!link-request\b)[^/?#]+")


class RedactFamilyTokens(logging.Filter):
    """Writes `/family/<token>` as `/family/…` in access-log lines: a family link opens its
    family's page for anyone holding it, so it is never kept in logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _FAMILY_TOKEN_PATH.sub("/family/…", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


REDACT_FAMILY_TOKENS = RedactFamilyTokens()
