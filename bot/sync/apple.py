"""Apple School Manager (and Apple Business) as a device source: every device the organization
holds, with its AppleCare coverage, read through the Apple School and Business Manager API.

What Apple documents, and what this client relies on:

- Sign-in (https://developer.apple.com/documentation/apple-school-and-business-manager-api/
  implementing-oauth-for-the-apple-school-manager-and-apple-business-api): a client assertion,
  a JWT signed with the API account's P-256 key (header `alg` ES256, `kid` the key id; claims
  `sub` and `iss` the client id, `aud` https://account.apple.com/auth/oauth2/v2/token, `iat`,
  `exp` at most 180 days later, `jti`), is POSTed as a form to
  https://account.apple.com/auth/oauth2/token with `grant_type=client_credentials`, `client_id`,
  `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
  `client_assertion` and `scope` (`school.api`, or `business.api` for Apple Business). The answer
  is `{access_token, token_type: Bearer, expires_in}`; the token is kept until it expires.
- Devices (https://developer.apple.com/documentation/appleschoolmanagerapi/get-org-devices):
  `GET /v1/orgDevices?limit=` (at most 1000) answers `data[]` of `{type: orgDevices, id,
  attributes: {serialNumber, deviceModel, productFamily, partNumber, status,
  releasedFromOrgDateTime, ...}}` with `links.next` and `meta.paging.nextCursor` while more
  pages follow (https://developer.apple.com/documentation/appleschoolmanagerapi/paginginformation/
  paging-data.dictionary); the next page is the same request with `cursor=`.
- Coverage (https://developer.apple.com/documentation/appleschoolmanagerapi/
  get-all-applecare-coverage-for-an-orgdevice): `GET /v1/orgDevices/{id}/appleCareCoverage`
  answers `data[]` of `{type: appleCareCoverage, id, attributes: {description, startDateTime,
  endDateTime, status ACTIVE|INACTIVE, agreementNumber, isCanceled, contractCancelDateTime,
  paymentType, isRenewable}}` (https://developer.apple.com/documentation/appleschoolmanagerapi/
  applecarecoverage/attributes-data.dictionary).

How it maps: a device released from the organization (`releasedFromOrgDateTime` set) is
retired, any other is in service (`status` ASSIGNED/UNASSIGNED is about the MDM server, not the
device's use). Every coverage, warranty included, becomes an "Apple" plan named by its
description, from its start day to its end day, or to the day it was cancelled; expired
(INACTIVE) plans are kept, since an incident is judged on the day it happened.

A run reads everything or nothing: a page that stays unreadable, a source that stays down or
credentials Apple refuses raise SourceUnavailable, and nothing read is applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bot.sync.credentials import CredentialError, credential
from bot.sync.http import Backoff, SourceUnavailable, TokenClient
from bot.sync.jwt import signed_jwt
from workflows.clock import Clock
from workflows.sync import (
    SOURCE_LABELS,
    DeviceSnapshot,
    SourceCoverage,
    SourceDevice,
    SourceName,
    SyncCursor,
)

log = logging.getLogger("devicecare.sync.apple")

SCHOOL_API_URL = "https://api-school.apple.com"
BUSINESS_API_URL = "https://api-business.apple.com"
TOKEN_URL = "https://account.apple.com/auth/oauth2/token"
# The assertion's audience is Apple's fixed value, not the URL it is posted to.
AUDIENCE = "https://account.apple.com/auth/oauth2/v2/token"
SCHOOL_SCOPE = "school.api"
BUSINESS_SCOPE = "business.api"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Apple accepts up to 180 days; a fresh assertion per token keeps a leaked one short-lived.
ASSERTION_LIFETIME = timedelta(hours=1)
MAX_PAGE_SIZE = 1000
COVERAGE_CONCURRENCY = 8
# Every device's coverage is read again at least this often (APPLE_COVERAGE_REFRESH_DAYS).
COVERAGE_REFRESH = timedelta(days=7)
# Between full reads, a device changed since shortly before the last read has its coverage read.
CHANGE_OVERLAP = timedelta(days=1)
PROVIDER = "Apple"
MAX_PLAN = 200  # storage.models.DeviceCoverage.plan
LABEL = SOURCE_LABELS["apple"]

T = TypeVar("T")


class Unreadable(ValueError):
    """An answer that isn't what Apple documents (bad JSON, a missing or mistyped field)."""


# --- the client assertion ------------------------------------------------------------------


def load_private_key(pem: str, *, setting: str = "APPLE_PRIVATE_KEY") -> ec.EllipticCurvePrivateKey:
    """The API account's key from its PEM text (the .pem file Apple downloads).

    Raises CredentialError naming `setting`, never quoting the key, for anything but a P-256
    elliptic-curve private key.
    """
    # An environment variable often carries the PEM's line breaks as literal "\n".
    text = pem.strip().replace("\\n", "\n")
    problem = f"{setting} is not a P-256 EC private key in PEM (the .pem file Apple downloads)"
    try:
        key = serialization.load_pem_private_key(text.encode("utf-8"), password=None)
    except TypeError:
        raise CredentialError(f"{problem}: it is encrypted; use the key as Apple gave it") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CredentialError(problem) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CredentialError(problem) from None
    return key


def client_assertion(
    key: ec.EllipticCurvePrivateKey,
    *,
    client_id: str,
    key_id: str,
    now: datetime,
    audience: str = AUDIENCE,
    lifetime: timedelta = ASSERTION_LIFETIME,
    jti: str | None = None,
) -> str:
    """The ES256-signed JWT that stands for the API account when asking for a token."""
    header = {"alg": "ES256", "kid": key_id}
    issued = int(now.timestamp())
    claims = {
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + int(lifetime.total_seconds()),
        "jti": jti or str(uuid.uuid4()),
        "iss": client_id,
    }

    def sign(signing_input: bytes) -> bytes:
        der = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        # JWS wants the raw r||s pair (RFC 7518 §3.4), not the DER sequence cryptography returns.
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return signed_jwt(header, claims, sign)


def default_scope(client_id: str) -> str:
    """Apple Business accounts' client ids start BUSINESSAPI., Apple School Manager's SCHOOLAPI."""
    return BUSINESS_SCOPE if client_id.upper().startswith("BUSINESSAPI.") else SCHOOL_SCOPE


# --- reading answers -----------------------------------------------------------------------


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Unreadable(f"{what} is not an object")
    return value


def _text(attributes: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = attributes.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Unreadable(f"no {name}")
        return None
    if not isinstance(value, str):
        raise Unreadable(f"{name} is not text")
    return value.strip()


def _day(attributes: dict[str, Any], name: str) -> date | None:
    """The calendar day of an ISO date-time as Apple writes it.

    Apple states contract days as midnight UTC (`2025-02-02T00:00:00Z`); that day is the
    district's day too. Converting to the district's zone would move it to the evening before.
    """
    text = _text(attributes, name)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise Unreadable(f"{name} {text[:40]!r} is not an ISO date-time") from None


def next_cursor(body: dict[str, Any]) -> str | None:
    """Where the next page starts: `meta.paging.nextCursor`, else the `cursor` of `links.next`."""
    meta = body.get("meta")
    if meta is not None:
        paging = _object(meta, "meta").get("paging")
        if paging is not None:
            cursor = _object(paging, "meta.paging").get("nextCursor")
            if cursor is not None:
                if not isinstance(cursor, str) or not cursor:
                    raise Unreadable("meta.paging.nextCursor is not text")
                return cursor
    links = body.get("links")
    following = None if links is None else _object(links, "links").get("next")
    if not following:
        return None
    if not isinstance(following, str):
        raise Unreadable("links.next is not text")
    cursors = parse_qs(urlsplit(following).query).get("cursor")
    if not cursors:
        raise Unreadable("links.next has no cursor")
    return cursors[0]


def _resources(body: Any, kind: str) -> tuple[list[dict[str, Any]], str | None]:
    page = _object(body, "the answer")
    data = page.get("data")
    if not isinstance(data, list):
        raise Unreadable("no data list")
    items = []
    for n, raw in enumerate(data, 1):
        item = _object(raw, f"item {n}")
        if item.get("type", kind) != kind:
            raise Unreadable(f"item {n} is a {str(item.get('type'))[:40]!r}, not {kind}")
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise Unreadable(f"item {n} has no id")
        if not isinstance(item.get("attributes"), dict):
            raise Unreadable(f"item {n} has no attributes")
        items.append(item)
    return items, next_cursor(page)


@dataclass(frozen=True)
class OrgDevice:
    """One `orgDevices` resource, checked and read."""

    id: str
    serial: str
    model: str | None
    part_number: str | None
    product_family: str | None
    released: bool
    # The latest of when it was added, updated or released; None when Apple states none.
    changed: datetime | None = None


def _instant(attributes: dict[str, Any], name: str) -> datetime | None:
    """A timestamp used only to choose which coverage to read again: one that can't be read
    counts as unknown (so the coverage is read), not as a broken page."""
    value = attributes.get(name)
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def read_device(item: dict[str, Any]) -> OrgDevice:
    attributes = item["attributes"]
    stamps = [
        _instant(attributes, name)
        for name in ("addedToOrgDateTime", "updatedDateTime", "releasedFromOrgDateTime")
    ]
    known = [stamp for stamp in stamps if stamp is not None]
    try:
        return OrgDevice(
            id=item["id"],
            serial=_text(attributes, "serialNumber", required=True) or "",
            model=_text(attributes, "deviceModel"),
            part_number=_text(attributes, "partNumber"),
            product_family=_text(attributes, "productFamily"),
            released=attributes.get("releasedFromOrgDateTime") is not None,
            changed=max(known) if known else None,
        )
    except Unreadable as exc:
        raise Unreadable(f"device {item['id'][:40]!r}: {exc}") from None


def read_coverage(item: dict[str, Any]) -> SourceCoverage | None:
    """A coverage resource as DeviceCare keeps it; None for one that was never in force (cancelled
    before it started) or that states no dates."""
    attributes = item["attributes"]
    try:
        plan = _text(attributes, "description") or "AppleCare"
        start = _day(attributes, "startDateTime")
        end = _day(attributes, "endDateTime")
        cancelled = _day(attributes, "contractCancelDateTime")
        agreement = _text(attributes, "agreementNumber")
        is_cancelled = attributes.get("isCanceled")
        if is_cancelled is not None and not isinstance(is_cancelled, bool):
            raise Unreadable("isCanceled is not true or false")
    except Unreadable as exc:
        raise Unreadable(f"coverage {item['id'][:40]!r}: {exc}") from None
    if start is None or end is None:
        return None
    if cancelled is not None and (is_cancelled or is_cancelled is None):
        end = min(end, cancelled)
    if end < start:
        return None
    return SourceCoverage(PROVIDER, plan[:MAX_PLAN], start, end, agreement)


def source_device(device: OrgDevice, coverages: tuple[SourceCoverage, ...] | None) -> SourceDevice:
    return SourceDevice(
        external_id=device.id,
        serial=device.serial,
        model=device.model,
        part_number=device.part_number,
        status="retired" if device.released else "in_service",
        coverages=coverages,
    )


def _device_page(body: Any) -> tuple[list[OrgDevice], str | None]:
    items, cursor = _resources(body, "orgDevices")
    return [read_device(item) for item in items], cursor


def _coverage_page(body: Any) -> tuple[list[SourceCoverage], str | None]:
    items, cursor = _resources(body, "appleCareCoverage")
    found = (read_coverage(item) for item in items)
    return [c for c in found if c is not None], cursor


# --- the client ----------------------------------------------------------------------------


@dataclass
class ReadStats:
    """What the last fetch did, for the run's report and the benchmark."""

    pages: int = 0
    devices: int = 0
    coverage_requests: int = 0
    token_requests: int = 0
    full_coverage: bool = True  # every device's coverage was read, not only changed ones
    seconds: float = 0.0


class AppleSchoolManager(TokenClient):
    """A DeviceSource: the organization's devices, listed in full each run (the API has no
    changes-since listing), and their AppleCare coverage.

    Coverage takes one request per device, so it is read for every device on the first run and
    whenever the last such read is older than `coverage_refresh` (a week by default; zero reads
    it every run). The runs between read it only for devices Apple shows as added, updated or
    released since a day before the previous run; the rest say nothing about coverage (None),
    which keeps what is stored. The cursor carries the two times; the runner keeps the cursor of
    the last run that applied.
    """

    name: SourceName = "apple"

    def __init__(
        self,
        *,
        client_id: str,
        key_id: str,
        private_key: ec.EllipticCurvePrivateKey,
        api_url: str = SCHOOL_API_URL,
        token_url: str = TOKEN_URL,
        scope: str | None = None,
        audience: str = AUDIENCE,
        with_coverage: bool = True,
        coverage_refresh: timedelta = COVERAGE_REFRESH,
        page_size: int = MAX_PAGE_SIZE,
        concurrency: int = COVERAGE_CONCURRENCY,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}")
        self.client_id = client_id
        self.key_id = key_id
        self._key = private_key
        self.api_url = api_url.rstrip("/")
        self.token_url = token_url
        self.scope = scope or default_scope(client_id)
        self.audience = audience
        self.with_coverage = with_coverage
        self.coverage_refresh = coverage_refresh
        self.page_size = page_size
        self.concurrency = max(1, concurrency)
        super().__init__(backoff, clock)
        self._http = http
        self._timeout = timeout
        self.stats = ReadStats()

    def __repr__(self) -> str:  # the key stays out of reprs and tracebacks
        return f"AppleSchoolManager(client_id={self.client_id!r}, api_url={self.api_url!r})"

    # --- sign-in ---------------------------------------------------------------------------

    async def _fetch_token(self, client: httpx.AsyncClient) -> tuple[str, float]:
        self.stats.token_requests += 1
        assertion = client_assertion(
            self._key,
            client_id=self.client_id,
            key_id=self.key_id,
            now=self.clock.now(),
            audience=self.audience,
        )
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": self.scope,
        }
        try:
            response = await self.token_request(
                client,
                self.token_url,
                source=f"{LABEL} sign-in",
                data=form,
                headers={"Accept": "application/json"},
            )
        except SourceUnavailable as exc:
            raise SourceUnavailable(
                f"no access token from {LABEL}: {exc}. If Apple refused the account, check "
                "APPLE_CLIENT_ID, APPLE_KEY_ID and the private key (APPLE_PRIVATE_KEY), and that "
                "the API account is still active"
            ) from None
        # The answer holds the token: its text never goes into a message.
        try:
            answer = _object(response.json(), "the token answer")
            token = answer.get("access_token")
            lifetime = answer.get("expires_in")
            token_type = answer.get("token_type", "Bearer")
            if not isinstance(token, str) or not token:
                raise Unreadable("no access_token")
            if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
                raise Unreadable("no expires_in")
            if not isinstance(token_type, str) or token_type.lower() != "bearer":
                raise Unreadable("token_type is not Bearer")
        except (ValueError, Unreadable) as exc:
            raise SourceUnavailable(
                f"{LABEL} sign-in answered what can't be read ({exc})"
            ) from None
        return token, float(lifetime)

    # --- reading ---------------------------------------------------------------------------

    async def _read(
        self,
        client: httpx.AsyncClient,
        url: str,
        params: dict[str, Any],
        parse: Callable[[Any], T],
        what: str,
    ) -> T:
        """One page, read again (with backoff) while its answer can't be read."""
        problem = ""
        for attempt in range(1, self.backoff.attempts + 1):
            response = await self.get_with_token(
                client,
                url,
                source=LABEL,
                params=params,
            )
            try:
                return parse(response.json())
            except (ValueError, Unreadable) as exc:  # json's JSONDecodeError is a ValueError
                problem = f"{LABEL}: {what} can't be read ({str(exc)[:200]})"
            if attempt < self.backoff.attempts:
                wait = self.backoff.wait(attempt)
                log.info(
                    "sync: %s; reading it again in %.1f s (attempt %s)", problem, wait, attempt
                )
                await self.backoff.sleep(wait)
        raise SourceUnavailable(f"{problem} (gave up after {self.backoff.attempts} attempts)")

    async def _pages(
        self,
        client: httpx.AsyncClient,
        path: str,
        parse: Callable[[Any], tuple[list[T], str | None]],
        what: str,
        *,
        limit: int | None,
        on_page: Callable[[list[T]], Awaitable[None]] | None = None,
    ) -> list[T]:
        found: list[T] = []
        cursor: str | None = None
        seen: set[str] = set()
        page = 0
        while True:
            page += 1
            params: dict[str, Any] = {} if limit is None else {"limit": limit}
            if cursor is not None:
                params["cursor"] = cursor
            items, cursor = await self._read(
                client, f"{self.api_url}{path}", params, parse, f"{what} page {page}"
            )
            found.extend(items)
            if on_page is not None:
                await on_page(items)
            if cursor is None:
                return found
            if cursor in seen:  # a source that pages in a circle would never finish
                raise SourceUnavailable(
                    f"{LABEL}: {what} page {page} leads back to an earlier page"
                )
            seen.add(cursor)

    async def coverage(
        self, client: httpx.AsyncClient, device_id: str
    ) -> tuple[SourceCoverage, ...]:
        """A device's coverage plans, in the order they start."""
        self.stats.coverage_requests += 1
        plans = await self._pages(
            client,
            f"/v1/orgDevices/{quote(device_id, safe='')}/appleCareCoverage",
            _coverage_page,
            f"the coverage of device {device_id[:40]!r}",
            limit=None,
        )
        return tuple(sorted(set(plans), key=lambda c: (c.start, c.end, c.plan, c.agreement or "")))

    async def fetch(self, cursor: str | None = None) -> DeviceSnapshot:
        """Every device, with coverage as the class says. The listing is always complete."""
        started = time.perf_counter()
        began = self.clock.now()
        self.stats = ReadStats()
        previous = SyncCursor.decode(cursor)
        if cursor and previous is None:
            log.info("sync: apple: the stored cursor can't be read; reading all coverage")
        full = previous is None or began - previous.full >= self.coverage_refresh
        since = None if full or previous is None else previous.read - CHANGE_OVERLAP
        self.stats.full_coverage = full
        if self._http is not None:
            devices = await self._fetch(self._http, since)
        else:
            limits = httpx.Limits(
                max_connections=self.concurrency + 2, max_keepalive_connections=self.concurrency + 2
            )
            async with httpx.AsyncClient(
                timeout=self._timeout,
                limits=limits,
                headers={"Accept": "application/json", "User-Agent": "DeviceCare"},
            ) as client:
                devices = await self._fetch(client, since)
        self.stats.devices = len(devices)
        self.stats.seconds = time.perf_counter() - started
        log.info(
            "sync: %s listed %s devices in %s pages, %s coverage reads, %.1f s",
            LABEL,
            len(devices),
            self.stats.pages,
            self.stats.coverage_requests,
            self.stats.seconds,
        )
        if not self.with_coverage:
            return DeviceSnapshot(source="apple", devices=devices, complete=True, cursor=cursor)
        kept = SyncCursor(full=began if full or previous is None else previous.full, read=began)
        return DeviceSnapshot(source="apple", devices=devices, complete=True, cursor=kept.encode())

    async def _device_list(
        self, client: httpx.AsyncClient, on_page: Callable[[list[OrgDevice]], Awaitable[None]]
    ) -> list[OrgDevice]:
        """The organization's devices, `on_page` told of each page as it comes."""
        return await self._pages(
            client,
            "/v1/orgDevices",
            _device_page,
            "the device list",
            limit=self.page_size,
            on_page=on_page,
        )

    async def _fetch(self, client: httpx.AsyncClient, since: datetime | None) -> list[SourceDevice]:
        if not self.with_coverage:

            async def count(page: list[OrgDevice]) -> None:
                self.stats.pages += 1

            listed = await self._device_list(client, on_page=count)
            return [source_device(d, None) for d in listed]

        # Coverage is read while the listing goes on: a bounded queue feeds a few workers, so a
        # 50,000-device organization is read at the pace of its coverage calls alone.
        queue: asyncio.Queue[tuple[int, OrgDevice] | None] = asyncio.Queue(self.page_size * 2)
        plans: dict[int, tuple[SourceCoverage, ...]] = {}
        listed_count = 0

        async def enqueue(page: list[OrgDevice]) -> None:
            nonlocal listed_count
            self.stats.pages += 1
            for device in page:
                if since is None or device.changed is None or device.changed >= since:
                    await queue.put((listed_count, device))
                listed_count += 1

        async def lister() -> list[OrgDevice]:
            listed = await self._device_list(client, on_page=enqueue)
            # Done: each worker stops at its None. (On a failure the TaskGroup cancels them.)
            for _ in range(self.concurrency):
                await queue.put(None)
            return listed

        async def worker() -> None:
            while (job := await queue.get()) is not None:
                index, device = job
                plans[index] = await self.coverage(client, device.id)

        try:
            async with asyncio.TaskGroup() as group:
                listing = group.create_task(lister())
                for _ in range(self.concurrency):
                    group.create_task(worker())
        except BaseExceptionGroup as failed:
            # The first failure stops the run; TaskGroup has cancelled the rest.
            first = next(iter(_leaves(failed)))
            raise first from None
        return [source_device(d, plans.get(i)) for i, d in enumerate(listing.result())]


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    # A source that can't be read says why; a cancelled sibling says nothing.
    unavailable: list[BaseException] = [e for e in found if isinstance(e, SourceUnavailable)]
    return unavailable or found


# --- wiring --------------------------------------------------------------------------------


def apple_source(settings: Any, *, clock: Clock | None = None) -> AppleSchoolManager | None:
    """The Apple School Manager source the settings describe; None when APPLE_CLIENT_ID is unset.

    Raises CredentialError (one line naming the setting) for a missing key id or a key that is
    missing, unreadable or not a P-256 EC private key.
    """
    if not settings.apple_enabled:
        return None
    key_id = (settings.apple_key_id or "").strip()
    if not key_id:
        raise CredentialError("APPLE_KEY_ID is not set (the key id shown with the API account)")
    pem = credential(
        settings.apple_private_key, settings.apple_private_key_file, setting="APPLE_PRIVATE_KEY"
    )
    assert pem is not None  # required=True raises instead
    return AppleSchoolManager(
        client_id=settings.apple_client_id.strip(),
        key_id=key_id,
        private_key=load_private_key(pem),
        api_url=settings.apple_api_url,
        token_url=settings.apple_token_url,
        scope=settings.apple_scope,
        coverage_refresh=timedelta(days=settings.apple_coverage_refresh_days),
        clock=clock,
    )
