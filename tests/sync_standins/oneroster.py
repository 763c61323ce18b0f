"""A local stand-in for a OneRoster 1.1 provider at its HTTP boundary (a SIS or a rostering
service), as the IMS specification describes it.

- `POST /token`: OAuth 2 client credentials. The client authenticates with HTTP Basic (id and
  secret form-encoded first, RFC 6749 2.3.1) and sends `grant_type=client_credentials` and a
  `scope` of OneRoster 1.1 scopes; the answer is `{"access_token", "token_type": "bearer",
  "expires_in", "scope"}`; the token is refused (401) once `token_lifetime` seconds have passed
  on the stand-in's `clock`. Wrong credentials get 401 `invalid_client`, an unknown scope 400
  `invalid_scope`.
- `GET /ims/oneroster/v1p1/orgs` and `/users`: `{"orgs": [...]}` / `{"users": [...]}` paged by
  `limit` (default 100, capped at `max_limit`) and `offset`, with `X-Total-Count` and a `Link`
  header (first, prev, next, last), and `filter=dateLastModified>'<time>'` (also `>=`). A
  missing or expired token gets 401, a token without a rostering scope 403.
- Faults on demand: `fail(collection, kind, offset=..., times=...)` with kind "429" (with
  Retry-After), "500", "drop" (the connection closes without an answer), "malformed" (200 with
  a body that isn't JSON), "expire" (every token issued so far expires, so this request gets
  401 and the client must fetch a new one).

Records are served as the test stores them, so a test can put an invalid record in the list.
"""

from __future__ import annotations

import base64
import itertools
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus, urlencode

from aiohttp import web

from tests.sync_standins.serving import listen

CLIENT_ID = "devicecare-client"
CLIENT_SECRET = "s3cr3t+/=value"  # characters that must be form-encoded in Basic auth
ROOT = "/ims/oneroster/v1p1"
SCOPES = frozenset(
    "https://purl.imsglobal.org/spec/or/v1p1/scope/" + name
    for name in ("roster-core.readonly", "roster.readonly", "roster-demographics.readonly")
)
ROSTER_SCOPES = frozenset(s for s in SCOPES if "demographics" not in s)
COLLECTIONS = ("orgs", "users")
DEFAULT_LIMIT = 100
_FILTER = re.compile(r"^\s*dateLastModified\s*(>=|>)\s*'([^']*)'\s*$")


@dataclass
class Hit:
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    status: int = 0


@dataclass
class Fault:
    collection: str
    kind: str
    offset: int | None
    times: int


@dataclass
class OneRosterStandIn:
    orgs: list[Any] = field(default_factory=list)
    users: list[Any] = field(default_factory=list)
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_lifetime: int = 3600
    max_limit: int = 1000
    send_total: bool = True
    send_links: bool = True
    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # token -> (scope, when it expires by `clock`)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    # The stand-in's own clock, in seconds; a test moves it to let tokens expire.
    clock: Callable[[], float] = time.monotonic
    # Called after each page is served (a test changes the roster while it is being read).
    on_page: Callable[[str, int], None] | None = None
    _counter: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_get(ROOT + "/{collection}", self._collection)
        self._runner = web.AppRunner(app)
        self.port = await listen(self._runner, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{ROOT}"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    # --- test helpers ---------------------------------------------------------------------

    def fail(
        self, collection: str, kind: str, *, offset: int | None = None, times: int = 1
    ) -> None:
        """The next `times` reads of `collection` (at `offset`, when given) meet `kind`."""
        if kind not in ("429", "500", "drop", "malformed", "expire"):
            raise ValueError(kind)
        self.faults.append(Fault(collection, kind, offset, times))

    def expire_tokens(self) -> None:
        self.tokens = {token: (scope, -math.inf) for token, (scope, _) in self.tokens.items()}

    def reads(self, collection: str) -> list[Hit]:
        return [h for h in self.hits if h.path == f"{ROOT}/{collection}"]

    @property
    def token_requests(self) -> list[Hit]:
        return [h for h in self.hits if h.path == "/token"]

    # --- token endpoint -------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        hit = self._record(request)
        form = await request.post()
        if request.content_type != "application/x-www-form-urlencoded":
            return self._oauth_error(hit, 400, "invalid_request")
        if form.get("grant_type") != "client_credentials":
            return self._oauth_error(hit, 400, "unsupported_grant_type")
        if self._basic(request) != (self.client_id, self.client_secret):
            return self._oauth_error(hit, 401, "invalid_client")
        requested = str(form.get("scope", "")).split()
        if not requested or not set(requested) <= SCOPES:
            return self._oauth_error(hit, 400, "invalid_scope")
        token = f"tok-{next(self._counter)}-{secrets.token_hex(8)}"
        scope = " ".join(requested)
        self.tokens[token] = (scope, self.clock() + self.token_lifetime)
        hit.status = 200
        return web.json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.token_lifetime,
                "scope": scope,
            },
            headers={"Cache-Control": "no-store"},
        )

    @staticmethod
    def _basic(request: web.Request) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return unquote_plus(user), unquote_plus(password)

    @staticmethod
    def _oauth_error(hit: Hit, status: int, error: str) -> web.Response:
        hit.status = status
        headers = {"WWW-Authenticate": 'Basic realm="oneroster"'} if status == 401 else {}
        return web.json_response({"error": error}, status=status, headers=headers)

    # --- collections ----------------------------------------------------------------------

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        hit = self._record(request)
        collection = request.match_info["collection"]
        if collection not in COLLECTIONS:
            return self._status(hit, 404, "unknownobject", f"no collection {collection}")
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", str(DEFAULT_LIMIT)))
        except ValueError:
            return self._status(hit, 400, "invalid_selection_field", "limit and offset")
        if offset < 0 or limit < 1:
            return self._status(hit, 400, "invalid_selection_field", "limit and offset")
        fault = self._take_fault(collection, offset)
        if fault == "expire":
            self.expire_tokens()
        refused = self._check_token(request)
        if refused:
            hit.status = refused.status
            return refused
        if fault == "429":
            hit.status = 429
            return web.json_response(
                _status_info("Too Many Requests"), status=429, headers={"Retry-After": "1"}
            )
        if fault == "500":
            return self._status(hit, 500, "server_busy", "try later")
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()  # no answer at all: the client sees the connection go
            hit.status = -1
            return web.Response()
        if fault == "malformed":
            hit.status = 200
            return web.Response(text='{"users": [', content_type="application/json")

        records: list[Any] = getattr(self, collection)
        flt = request.query.get("filter")
        if flt is not None:
            match = _FILTER.match(flt)
            if match is None:
                return self._status(hit, 400, "invalid_filter_field", flt)
            since = _parse_time(match.group(2))
            if since is None:
                return self._status(hit, 400, "invalid_filter_field", flt)
            strict = match.group(1) == ">"
            records = [r for r in records if _modified_after(r, since, strict)]
        limit = min(limit, self.max_limit)
        page = records[offset : offset + limit]
        headers = {}
        if self.send_total:
            headers["X-Total-Count"] = str(len(records))
        if self.send_links:
            headers["Link"] = self._links(request, collection, offset, limit, len(records))
        hit.status = 200
        if self.on_page is not None:
            self.on_page(collection, offset)
        return web.json_response({collection: page}, headers=headers)

    def _take_fault(self, collection: str, offset: int) -> str | None:
        for fault in self.faults:
            if fault.collection == collection and fault.offset in (None, offset) and fault.times:
                fault.times -= 1
                return fault.kind
        return None

    def _check_token(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scope, expires = self.tokens.get(header.removeprefix("Bearer "), ("", -math.inf))
        if not header.startswith("Bearer ") or self.clock() >= expires:
            return web.json_response(
                _status_info("unauthorized"),
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if not set(scope.split()) & ROSTER_SCOPES:
            return web.json_response(_status_info("forbidden"), status=403)
        return None

    def _links(
        self, request: web.Request, collection: str, offset: int, limit: int, total: int
    ) -> str:
        base = f"http://127.0.0.1:{self.port}{ROOT}/{collection}"
        query = {k: v for k, v in request.query.items() if k not in ("limit", "offset")}

        def url(at: int) -> str:
            return base + "?" + urlencode({**query, "limit": limit, "offset": at})

        last = max(total - 1, 0) // limit * limit
        links = [f'<{url(0)}>; rel="first"', f'<{url(last)}>; rel="last"']
        if offset > 0:
            links.append(f'<{url(max(offset - limit, 0))}>; rel="prev"')
        if offset + limit < total:
            links.append(f'<{url(offset + limit)}>; rel="next"')
        return ", ".join(links)

    def _record(self, request: web.Request) -> Hit:
        hit = Hit(
            request.method,
            request.path,
            dict(request.query),
            request.headers.get("Authorization"),
        )
        self.hits.append(hit)
        return hit

    @staticmethod
    def _status(hit: Hit, status: int, code: str, description: str) -> web.Response:
        hit.status = status
        return web.json_response(_status_info(description, code), status=status)


def _status_info(description: str, code: str = "") -> dict[str, Any]:
    """The body of a OneRoster error: an imsx_StatusInfo."""
    return {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [
                {
                    "imsx_codeMinorFieldName": "TargetEndSystem",
                    "imsx_codeMinorFieldValue": code or "unknown",
                }
            ]
        },
    }


def _parse_time(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _modified_after(record: Any, since: datetime, strict: bool) -> bool:
    value = record.get("dateLastModified") if isinstance(record, dict) else None
    when = _parse_time(value) if isinstance(value, str) else None
    if when is None:
        return True  # a record the stand-in can't date is always "changed"
    return when > since if strict else when >= since


# --- records shaped as the JSON binding shapes them ------------------------------------------


def guid_ref(sourced_id: str, kind: str) -> dict[str, str]:
    return {"href": f"{ROOT}/{kind}s/{sourced_id}", "sourcedId": sourced_id, "type": kind}


def org_record(row: dict[str, str]) -> dict[str, Any]:
    """An org as `GET /orgs` serves it, from an orgs.csv row (column names as in the file)."""
    parent = row.get("parentSourcedId", "")
    return {
        "sourcedId": row["sourcedId"],
        "status": row.get("status") or "active",
        "dateLastModified": row.get("dateLastModified") or "2025-08-01T00:00:00Z",
        "metadata": None,
        "name": row["name"],
        "type": row["type"],
        "identifier": row.get("identifier", ""),
        "parent": guid_ref(parent, "org") if parent else None,
        "children": [],
    }


def user_record(row: dict[str, str]) -> dict[str, Any]:
    """A user as `GET /users` serves it, from a users.csv row (column names as in the file)."""

    def split(value: str) -> list[str]:
        return [part.strip() for part in value.split(",") if part.strip()]

    return {
        "sourcedId": row["sourcedId"],
        "status": row.get("status") or "active",
        "dateLastModified": row.get("dateLastModified") or "2025-08-01T00:00:00Z",
        "metadata": None,
        "username": row.get("username", ""),
        "userIds": [],
        "enabledUser": row.get("enabledUser") or "true",
        "givenName": row.get("givenName", ""),
        "familyName": row.get("familyName", ""),
        "middleName": row.get("middleName", ""),
        "role": row.get("role", ""),
        "identifier": row.get("identifier", ""),
        "email": row.get("email", ""),
        "sms": row.get("sms", ""),
        "phone": row.get("phone", ""),
        "agents": [guid_ref(a, "user") for a in split(row.get("agentSourcedIds", ""))],
        "orgs": [guid_ref(o, "org") for o in split(row.get("orgSourcedIds", ""))],
        "grades": split(row.get("grades", "")),
    }
