"""A OneRoster 1.1 REST client: a district's schools, students and guardians from its SIS or
rostering service, read as the CSV import reads orgs.csv and users.csv.

What it relies on, from the IMS OneRoster 1.1 specification
(https://www.imsglobal.org/oneroster-v11-final-specification) and the IMS Security Framework
it points to for OAuth 2 (https://www.imsglobal.org/spec/security/v1p0/):

- The API root is `<server>/ims/oneroster/v1p1`; ONEROSTER_BASE_URL is that root.
  `GET /orgs` answers `{"orgs": [...]}` and `GET /users` answers `{"users": [...]}`.
- Collections page with `limit` and `offset` (a server picks its own default, 100
  in the spec, and may cap `limit`). The total comes in the `X-Total-Count` header and the
  pages in a `Link` header with `rel="next"` (and first, prev, last). Offsets here advance by
  what a page held, so a server that caps `limit` loses nothing.
- `filter=dateLastModified>'<ISO 8601 time>'` selects what changed since then.
- Access tokens come from OAuth 2 client credentials: a POST of
  `grant_type=client_credentials&scope=...` to the token URL with the client id and secret in
  HTTP Basic auth, each form-encoded first (RFC 6749 2.3.1 and 4.4); the answer has
  `access_token`, `token_type` `bearer` and `expires_in`. Reading orgs and users needs the
  scope `https://purl.imsglobal.org/spec/or/v1p1/scope/roster-core.readonly`.
- Records carry `sourcedId`, `status` (`active` / `tobedeleted`), `dateLastModified`; orgs
  `name`, `type`; users `username`, `enabledUser`, `givenName`, `familyName`, `role`,
  `email`, `sms`, `phone`, `grades` (a list), and `orgs` / `agents` as lists of GUID
  references `{"href", "sourcedId", "type"}`.

The CSV import reads only orgs.csv and users.csv, so only orgs and users are read here:
classes, courses and enrollments have no place in DeviceCare. Each record becomes the row a
CSV line with the same values would be (`storage.roster_files.orgs_from` / `users_from` do the
checking for both), so a record is accepted or refused exactly as its CSV line would be.

Failures: a page that can't be had after the retries of `bot.sync.http.request` (outages, 5xx,
429 with Retry-After, an expired token) or can't be read (not JSON, no collection) raises
SourceUnavailable, and so does a listing that changes length while it is paged: a run never
sees half a roster. A single record that is wrong becomes a Problem and the rest goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from bot.sync.http import Backoff, SourceUnavailable, TokenClient
from storage.roster_files import Problem, RosterRows, orgs_from, users_from
from workflows.clock import Clock

log = logging.getLogger("devicecare.sync.oneroster")

SOURCE = "OneRoster"
SCOPE_PREFIX = "https://purl.imsglobal.org/spec/or/v1p1/scope/"
DEFAULT_SCOPE = SCOPE_PREFIX + "roster-core.readonly"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A listing longer than this many pages is a server that ignores `offset`, not a district.
MAX_PAGES = 100_000
# A listing whose X-Total-Count moves while it is paged is read again, this many times in all.
LISTING_ATTEMPTS = 2
DEFAULT_TOKEN_LIFETIME = 3600.0  # expires_in is only RECOMMENDED (RFC 6749 5.1)

# The fields the CSV readers use, each becoming the column of the same name (users.csv and
# orgs.csv name them as the JSON binding does). Fields they ignore are ignored here too, so a
# record is never refused for one of those.
ORG_TEXT = ("sourcedId", "name", "type")
USER_TEXT = (
    "sourcedId",
    "status",
    "role",
    "username",
    "givenName",
    "familyName",
    "email",
    "sms",
    "phone",
)
# GUID reference lists packed into one comma field, as the CSV binding packs them.
USER_REFS = {"orgs": "orgSourcedIds", "agents": "agentSourcedIds"}
USER_LISTS = {"grades": "grades"}


@dataclass
class RosterSnapshot:
    """One read: the rows, whether the listing was whole (so a student missing from it has
    left the district) and where an incremental read would resume (the latest
    dateLastModified seen)."""

    rows: RosterRows
    complete: bool
    cursor: str | None = None
    # The sourcedId at each position of a listing, to name a problem's record.
    sourced_ids: dict[str, list[str]] = field(default_factory=dict)

    def where(self, problem: Problem) -> str:
        ids = self.sourced_ids.get(problem.file, [])
        sourced_id = ids[problem.line - 1] if 0 < problem.line <= len(ids) else ""
        return f"{problem.file} #{problem.line}" + (f" ({sourced_id})" if sourced_id else "")


class OneRosterClient(TokenClient):
    """Reads a OneRoster 1.1 provider's orgs and users. Give it an httpx client (tests point
    one at a stand-in) or let it make its own; `aclose()` closes only its own."""

    def __init__(
        self,
        base_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str = DEFAULT_SCOPE,
        page_size: int = DEFAULT_PAGE_SIZE,
        http: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be 1 to {MAX_PAGE_SIZE}")
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url
        self.scope = scope
        self.page_size = page_size
        self._client_id = client_id
        self._client_secret = client_secret
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout)
        super().__init__(backoff, clock)

    def __repr__(self) -> str:  # the secret stays out of tracebacks and debug output
        return f"OneRosterClient({self.base_url!r}, client_id={self._client_id!r})"

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # --- auth -------------------------------------------------------------------------------

    async def _fetch_token(self, http: httpx.AsyncClient) -> tuple[str, float]:
        # RFC 6749 2.3.1: id and secret are form-encoded before they go into Basic auth.
        auth = httpx.BasicAuth(quote(self._client_id, safe=""), quote(self._client_secret, safe=""))
        response = await self.token_request(
            http,
            self.token_url,
            source=f"{SOURCE} token endpoint",
            data={"grant_type": "client_credentials", "scope": self.scope},
            headers={"Accept": "application/json"},
            auth=auth,
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        kind = body.get("token_type", "bearer") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or str(kind).lower() != "bearer":
            raise SourceUnavailable(f"{SOURCE} token endpoint answered without a bearer token")
        lifetime = body.get("expires_in", DEFAULT_TOKEN_LIFETIME)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        return token, float(lifetime)

    # --- collections ------------------------------------------------------------------------

    async def listing(self, collection: str, *, since: str | None = None) -> list[Any]:
        """Every record of `collection` ("orgs", "users"), page by page; with `since` only
        those modified after it. SourceUnavailable when any page can't be had or read."""
        for attempt in range(1, LISTING_ATTEMPTS + 1):
            try:
                return await self._pages(collection, since)
            except _ListingMoved as exc:
                if attempt == LISTING_ATTEMPTS:
                    raise SourceUnavailable(str(exc)) from None
                log.info("sync: %s; reading it again", exc)
        raise AssertionError("unreachable")

    async def _pages(self, collection: str, since: str | None) -> list[Any]:
        url = f"{self.base_url}/{collection}"
        records: list[Any] = []
        total: int | None = None
        previous_first: Any = None
        for _ in range(MAX_PAGES):
            offset = len(records)
            params: dict[str, str | int] = {"limit": self.page_size, "offset": offset}
            if since:
                params["filter"] = f"dateLastModified>'{since}'"
            response = await self.get_with_token(
                self.http,
                url,
                source=SOURCE,
                params=params,
                headers={"Accept": "application/json"},
            )
            page = _page_records(response, collection, offset)
            page_total = _total_count(response, collection)
            if page_total is not None:
                if total is not None and page_total != total:
                    raise _ListingMoved(
                        f"{SOURCE} {collection} went from {total} to {page_total} records "
                        "while it was read"
                    )
                total = page_total
            if page and offset and page[0] == previous_first:
                raise SourceUnavailable(
                    f"{SOURCE} answered the same {collection} page for offset {offset}"
                )
            previous_first = page[0] if page else None
            records.extend(page)
            if total is not None:
                if len(records) >= total:
                    if len(records) > total:
                        raise _ListingMoved(
                            f"{SOURCE} {collection} held {len(records)} records, not the "
                            f"{total} it announced"
                        )
                    return records
                if not page:
                    raise SourceUnavailable(
                        f"{SOURCE} {collection} ended after {len(records)} of {total} records"
                    )
                continue
            if not page:
                return records
            if "link" in response.headers and "next" not in response.links:
                return records
            # Neither a total nor links: read on until an empty page.
        raise SourceUnavailable(f"{SOURCE} {collection} has more than {MAX_PAGES} pages")

    # --- the roster -------------------------------------------------------------------------

    async def read_roster(self, since: str | None = None) -> RosterSnapshot:
        """Orgs (always all of them: few, and a student's orgs must all be known) and users
        (all, or those modified after `since`), as checked rows."""
        orgs = await self.listing("orgs")
        users = await self.listing("users", since=since)
        snapshot = roster_rows(orgs, users)
        snapshot.complete = since is None
        snapshot.cursor = _latest_modified(users) or since
        return snapshot


class _ListingMoved(Exception):
    """The collection changed length while it was paged; a second read usually doesn't."""


def _page_records(response: httpx.Response, collection: str, offset: int) -> list[Any]:
    try:
        body = response.json()
    except ValueError:
        raise SourceUnavailable(
            f"{SOURCE} {collection} page at offset {offset} is not JSON"
        ) from None
    records = body.get(collection) if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise SourceUnavailable(
            f"{SOURCE} {collection} page at offset {offset} has no {collection!r} list"
        )
    return records


def _total_count(response: httpx.Response, collection: str) -> int | None:
    value = response.headers.get("x-total-count")
    if value is None:
        return None
    try:
        total = int(value.strip())
    except ValueError:
        raise SourceUnavailable(
            f"{SOURCE} {collection}: X-Total-Count {value[:40]!r} is not a number"
        ) from None
    if total < 0:
        raise SourceUnavailable(f"{SOURCE} {collection}: X-Total-Count {total} is negative")
    return total


# --- records -> rows ------------------------------------------------------------------------


def roster_rows(orgs: list[Any], users: list[Any]) -> RosterSnapshot:
    """Org and user records as the rows the CSV readers would make of the same values."""
    problems: list[Problem] = []
    org_rows, org_rejected = orgs_from(
        _as_csv(orgs, "orgs", _org_fields, problems), "orgs", problems
    )
    failed: list[tuple[str, str]] = []  # (sourcedId, role) of user records that couldn't be read
    user_file = users_from(
        _as_csv(users, "users", _user_fields, problems, failed), "users", problems
    )
    for sourced_id, role in failed:
        # The record is listed even if unreadable: its student has not left the district.
        if sourced_id:
            user_file.seen.add(sourced_id)
        user_file.reject(role)
    org_rejected = len(orgs) - len(org_rows)  # unreadable records as well
    rows = RosterRows(org_rows, org_rejected, user_file, problems)
    ids = {"orgs": [_sourced_id(r) for r in orgs], "users": [_sourced_id(r) for r in users]}
    return RosterSnapshot(rows, complete=True, sourced_ids=ids)


def _as_csv(
    records: list[Any],
    file: str,
    convert: Callable[[Any], dict[str, str]],
    problems: list[Problem],
    failed: list[tuple[str, str]] | None = None,
) -> Iterator[tuple[int, dict[str, str]]]:
    for line, record in enumerate(records, start=1):
        try:
            yield line, convert(record)
        except ValueError as exc:
            problems.append(Problem(file, line, str(exc)))
            if failed is not None:
                role = record.get("role") if isinstance(record, dict) else None
                failed.append((_sourced_id(record), role.lower() if isinstance(role, str) else ""))


def _org_fields(record: Any) -> dict[str, str]:
    return _text_fields(record, ORG_TEXT)


def _user_fields(record: Any) -> dict[str, str]:
    fields = _text_fields(record, USER_TEXT)
    for name, column in USER_REFS.items():
        fields[column.lower()] = ",".join(_ref(ref, name) for ref in _list(record, name))
    for name, column in USER_LISTS.items():
        fields[column.lower()] = ",".join(_text(value, name) for value in _list(record, name))
    return fields


def _text_fields(record: Any, names: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
    return {name.lower(): _text(record.get(name), name) for name in names}


def _text(value: Any, name: str) -> str:
    """A field as its CSV cell would hold it: text stripped, booleans and numbers spelled out."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"{name} is not text")


def _list(record: dict[str, Any], name: str) -> list[Any]:
    value = record.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{name} is not a list")
    return value


def _ref(value: Any, name: str) -> str:
    """The sourcedId of a GUID reference; a comma inside it would split the CSV field."""
    sourced_id = value.get("sourcedId") if isinstance(value, dict) else None
    if not isinstance(sourced_id, str) or not sourced_id.strip():
        raise ValueError(f"{name} holds a reference without a sourcedId")
    if "," in sourced_id:
        raise ValueError(f"{name} reference {sourced_id.strip()!r} has a comma in its sourcedId")
    return sourced_id.strip()


def _sourced_id(record: Any) -> str:
    value = record.get("sourcedId") if isinstance(record, dict) else None
    return value.strip() if isinstance(value, str) else ""


def _latest_modified(records: list[Any]) -> str | None:
    """The latest dateLastModified among the records, as the source wrote it."""
    latest: tuple[datetime, str] | None = None
    for record in records:
        value = record.get("dateLastModified") if isinstance(record, dict) else None
        if not isinstance(value, str):
            continue
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            continue
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        if latest is None or when > latest[0]:
            latest = (when, value.strip())
    return latest[1] if latest else None
