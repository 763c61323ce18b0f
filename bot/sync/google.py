"""Google Admin: the district's ChromeOS devices, read through the Admin SDK Directory API with
a service account that acts for an admin (domain-wide delegation).

Auth (Using OAuth 2.0 for Server to Server Applications, "HTTP/REST"):
https://developers.google.com/identity/protocols/oauth2/service-account
- A JWT signed RS256 with the key file's `private_key`: `iss` the key's `client_email`, `sub`
  the admin it acts for, `scope` the read-only Chrome devices scope, `aud` the key's
  `token_uri`, `iat`, and `exp` at most an hour later; POSTed to `token_uri` as
  `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`. The answer is
  `{access_token, expires_in, token_type}`; a key not delegated the scope in the Admin console
  gets `unauthorized_client`.

Devices (chromeosdevices.list):
https://developers.google.com/admin-sdk/directory/reference/rest/v1/chromeosdevices/list
- `GET {api}/admin/directory/v1/customer/{customerId}/devices/chromeos` with `maxResults`
  (at most 300), `pageToken`, `projection`, `orgUnitPath` (without its leading /),
  `includeChildOrgunits` and `query`; the answer is `{kind, etag, chromeosdevices[],
  nextPageToken}`. `fields` (a partial response, any Google API:
  https://developers.google.com/admin-sdk/directory/v1/guides/performance) keeps a
  page to the fields read here.
- The device (https://developers.google.com/admin-sdk/directory/reference/rest/v1/chromeosdevices):
  `deviceId`, `serialNumber`, `annotatedAssetId`, `model` (absent when unknown),
  `orgUnitPath`, `status`, `lastSync`, and `recentUsers[{type, email}]`, "in descending
  order, by last login time"; `type` is USER_TYPE_MANAGED (a district account, with its
  email) or USER_TYPE_UNMANAGED (no email).
- Status: deprovisioning takes a device out of management (retired, replaced, resold);
  disabling locks a lost or stolen device that the district still manages
  (chromeosdevices.action: .../rest/v1/chromeosdevices/action).
- Query `sync:YYYY-MM-DD..` lists the devices that synced policy on or after a date
  (search fields: https://support.google.com/chrome/a/answer/1698333, and
  https://developers.google.com/admin-sdk/directory/v1/list-query-operators).
- Limits (https://developers.google.com/admin-sdk/directory/v1/limits): 429
  rateLimitExceeded and 403 userRateLimitExceeded / quotaExceeded are retried with backoff.

Incremental reads. The query can only ask for devices by their last policy sync, by date. A
device an admin edits (asset id, OU) or deprovisions (which stops its syncing) may not sync
again, so only a full listing sees every change: `fetch` lists everything when it has no
cursor, when its cursor can't be read, or when the last full listing is older than
`full_every` (GOOGLE_FULL_SYNC_DAYS, a week by default); otherwise it lists the devices
synced since two days before the previous read (dates have no zone and search results lag)
and says the listing is not complete. The cursor is opaque to the runner; it should store it
only once the run that read it has applied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bot.sync.credentials import CredentialError, credential
from bot.sync.http import Backoff, SourceUnavailable, TokenClient
from bot.sync.jwt import signed_jwt
from workflows.clock import Clock
from workflows.sync import DeviceSnapshot, SourceDevice, SourceName, SyncCursor

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger("devicecare.sync.google")

SOURCE = "Google Admin"
SCOPE = "https://www.googleapis.com/auth/admin.directory.device.chromeos.readonly"
API_URL = "https://admin.googleapis.com"
TOKEN_URL = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = timedelta(hours=1)  # Google's longest
PAGE_SIZE = 300  # the API's largest page
FULL_EVERY = timedelta(days=7)
# The sync: search takes dates (no zone) and its index may trail the devices by a day or so.
SYNC_OVERLAP = timedelta(days=2)
FIELDS = (
    "nextPageToken,chromeosdevices(deviceId,serialNumber,annotatedAssetId,model,orgUnitPath,"
    "status,lastSync,recentUsers)"
)
RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "quotaExceeded", "rateLimitExceeded"})
RETIRED = frozenset({"DEPROVISIONED"})
MANAGED_USER = "USER_TYPE_MANAGED"


# --- the key and its assertion ----------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAccountKey:
    """The parts of a service account's JSON key file that sign in. Never printed whole."""

    client_email: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    token_uri: str = TOKEN_URL
    private_key_id: str | None = None
    client_id: str | None = None

    @classmethod
    def from_json(cls, text: str, *, setting: str) -> ServiceAccountKey:
        """The key from the file's text; CredentialError, one line naming `setting`, when it
        isn't a service account key. No part of the text goes into the message."""

        def bad(why: str) -> CredentialError:
            return CredentialError(f"{setting}: not a Google service account key ({why})")

        try:
            data = json.loads(text)
        except ValueError:
            raise bad("not JSON") from None
        if not isinstance(data, dict):
            raise bad("not a JSON object")
        if data.get("type", "service_account") != "service_account":
            raise bad("its type is not service_account")
        email, pem = data.get("client_email"), data.get("private_key")
        if not isinstance(email, str) or "@" not in email:
            raise bad("client_email is missing")
        if not isinstance(pem, str) or not pem.strip():
            raise bad("private_key is missing")
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise bad("private_key is not a PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise bad("private_key is not an RSA key")
        token_uri = data.get("token_uri") or TOKEN_URL
        if not isinstance(token_uri, str) or not token_uri.startswith(("https://", "http://")):
            raise bad("token_uri is not a URL")
        key_id, client_id = data.get("private_key_id"), data.get("client_id")
        return cls(
            client_email=email,
            private_key=key,
            token_uri=token_uri,
            private_key_id=key_id if isinstance(key_id, str) else None,
            client_id=str(client_id) if client_id else None,
        )


def sign_assertion(
    key: ServiceAccountKey,
    *,
    subject: str,
    audience: str,
    now: datetime,
    scope: str = SCOPE,
    lifetime: timedelta = ASSERTION_LIFETIME,
) -> str:
    """The RS256 JWT that asks Google for a token acting as `subject`."""
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if key.private_key_id:
        header["kid"] = key.private_key_id
    issued = int(now.timestamp())
    claims = {
        "iss": key.client_email,
        "sub": subject,
        "scope": scope,
        "aud": audience,
        "iat": issued,
        "exp": issued + int(min(lifetime, ASSERTION_LIFETIME).total_seconds()),
    }
    return signed_jwt(
        header,
        claims,
        lambda signing_input: key.private_key.sign(
            signing_input, padding.PKCS1v15(), hashes.SHA256()
        ),
    )


# --- what a device says -------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def last_user_email(device: Mapping[str, Any]) -> str | None:
    """The district account that signed in last: recentUsers is newest first, and an
    unmanaged (personal) sign-in has no email and says nothing about who holds the device."""
    users = device.get("recentUsers")
    if not isinstance(users, list):
        return None
    for user in users:
        if isinstance(user, dict) and user.get("type") == MANAGED_USER:
            email = _text(user.get("email"))
            if email:
                return email.lower()
    return None


def map_device(device: Mapping[str, Any]) -> SourceDevice | None:
    """One ChromeOS device as DeviceCare keeps it; None without a serial or an id."""
    device_id, serial = _text(device.get("deviceId")), _text(device.get("serialNumber"))
    if not device_id or not serial:
        return None
    status = (_text(device.get("status")) or "").upper() or None
    return SourceDevice(
        external_id=device_id,
        serial=serial,
        model=_text(device.get("model")),
        asset_tag=_text(device.get("annotatedAssetId")),
        # Disabled (lost or stolen, locked) is still the district's device: it stays in
        # service and DeviceCare shows Google's word for it.
        status=None if status is None else "retired" if status in RETIRED else "in_service",
        source_status=status,
        org_unit=_text(device.get("orgUnitPath")),
        last_user_email=last_user_email(device),
        coverages=None,  # Google keeps no warranty or coverage
    )


# --- the client ---------------------------------------------------------------------------


def _error_reasons(response: httpx.Response) -> set[str]:
    try:
        body = response.json()
    except ValueError:
        return set()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return set()
    return {
        str(item.get("reason"))
        for item in error.get("errors") or []
        if isinstance(item, dict) and item.get("reason")
    }


def _rate_limited(response: httpx.Response) -> bool:
    """Google's 403 that means "slow down", not "not allowed"."""
    return response.status_code == 403 and bool(_error_reasons(response) & RATE_LIMIT_REASONS)


def _token_error(response: httpx.Response | None) -> str | None:
    if response is None:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body.get("error")) if isinstance(body, dict) and body.get("error") else None


class SignInFailed(SourceUnavailable):
    """Google's token endpoint refused the service account or could not be reached."""


class GoogleAdminDevices(TokenClient):
    """The district's ChromeOS devices from Google Admin (a workflows.sync.DeviceSource)."""

    name: SourceName = "google"

    def __init__(
        self,
        key: ServiceAccountKey,
        *,
        subject: str,
        customer_id: str = "my_customer",
        org_unit: str | None = None,
        api_url: str = API_URL,
        token_url: str | None = None,
        full_every: timedelta = FULL_EVERY,
        page_size: int = PAGE_SIZE,
        http: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.key = key
        self.subject = subject
        self.customer_id = customer_id
        self.org_unit = org_unit.strip().strip("/") if org_unit else None
        self.api_url = api_url.rstrip("/")
        self.token_url = token_url or key.token_uri
        self.full_every = full_every
        self.page_size = max(1, min(page_size, PAGE_SIZE))
        self._http = http
        super().__init__(backoff, clock)
        self.pages_read = 0

    # --- auth -----------------------------------------------------------------------------

    async def _fetch_token(self, client: httpx.AsyncClient) -> tuple[str, float]:
        assertion = sign_assertion(
            self.key, subject=self.subject, audience=self.token_url, now=self.clock.now()
        )
        try:
            response = await self.token_request(
                client,
                self.token_url,
                source=f"{SOURCE} sign-in",
                data={"grant_type": JWT_BEARER, "assertion": assertion},
            )
        except SourceUnavailable as exc:
            raise self._explain_sign_in(exc) from None
        try:
            body = response.json()
            token, lifetime = body["access_token"], float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise SignInFailed(f"{SOURCE} sign-in answered without an access token") from None
        if not isinstance(token, str) or not token:
            raise SignInFailed(f"{SOURCE} sign-in answered without an access token")
        return token, lifetime

    def _explain_sign_in(self, exc: SourceUnavailable) -> SignInFailed:
        error = _token_error(exc.response)
        if error == "unauthorized_client":
            client = f"client ID {self.key.client_id}" if self.key.client_id else "its client ID"
            return SignInFailed(
                f"{SOURCE} refused the service account {self.key.client_email}: domain-wide "
                f"delegation is not set up. In the Admin console (Security > Access and data "
                f"control > API controls > Domain-wide delegation) authorize {client} for "
                f"the scope {SCOPE}",
                response=exc.response,
            )
        if error == "invalid_grant":
            return SignInFailed(
                f"{SOURCE} refused the sign-in (invalid_grant): check that GOOGLE_ADMIN_SUBJECT "
                f"({self.subject}) is an existing user of the domain, the key is not deleted, "
                f"and this machine's clock is right",
                response=exc.response,
            )
        return SignInFailed(str(exc), response=exc.response)

    # --- listing --------------------------------------------------------------------------

    def _explain_listing(self, exc: SourceUnavailable) -> SourceUnavailable:
        response = exc.response
        if isinstance(exc, SignInFailed):
            return exc  # explained already; its answer came from the token endpoint
        if response is not None and response.status_code == 403:
            return SourceUnavailable(
                f"{SOURCE} refused to list ChromeOS devices for {self.subject} (403). "
                f"GOOGLE_ADMIN_SUBJECT must be an admin allowed to read Chrome devices, and "
                f"the service account needs domain-wide delegation for {SCOPE}",
                response=response,
            )
        if response is not None and response.status_code == 404:
            return SourceUnavailable(
                f"{SOURCE} doesn't know the customer {self.customer_id!r} or the org unit "
                f"{self.org_unit!r} (404): check GOOGLE_CUSTOMER_ID and GOOGLE_ORG_UNIT",
                response=response,
            )
        return exc

    async def _pages(
        self, client: httpx.AsyncClient, query: str | None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        url = f"{self.api_url}/admin/directory/v1/customer/{self.customer_id}/devices/chromeos"
        params: dict[str, str] = {
            "maxResults": str(self.page_size),
            "projection": "FULL",
            "fields": FIELDS,
        }
        if self.org_unit:
            params["orgUnitPath"] = self.org_unit
            params["includeChildOrgunits"] = "true"
        if query:
            params["query"] = query
        page_token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            page_params = dict(params, pageToken=page_token) if page_token else params
            try:
                response = await self.get_with_token(
                    client,
                    url,
                    source=SOURCE,
                    retryable=_rate_limited,
                    params=page_params,
                )
            except SourceUnavailable as exc:
                raise self._explain_listing(exc) from None
            self.pages_read += 1
            devices, page_token = self._read_page(response)
            yield devices
            if not page_token:
                return
            if page_token in seen_tokens:
                raise SourceUnavailable(f"{SOURCE} repeated a page token; the listing loops")
            seen_tokens.add(page_token)

    def _read_page(self, response: httpx.Response) -> tuple[list[dict[str, Any]], str | None]:
        where = f"page {self.pages_read} of the ChromeOS devices"
        try:
            body = response.json()
        except ValueError:
            raise SourceUnavailable(f"{SOURCE} answered {where} with something not JSON") from None
        if not isinstance(body, dict):
            raise SourceUnavailable(f"{SOURCE} answered {where} with something not an object")
        devices = body.get("chromeosdevices", [])  # absent on an empty listing
        token = body.get("nextPageToken")
        if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
            raise SourceUnavailable(f"{SOURCE} answered {where} without a list of devices")
        if token is not None and not isinstance(token, str):
            raise SourceUnavailable(f"{SOURCE} answered {where} with an unreadable page token")
        return devices, token or None

    async def fetch(self, cursor: str | None = None) -> DeviceSnapshot:
        """Every device (complete) or those synced since the cursor's read (not complete).
        Raises SourceUnavailable, having returned nothing, when any page can't be read."""
        started = self.clock.now()
        previous = SyncCursor.decode(cursor)
        if cursor and previous is None:
            log.info("sync: google: the stored cursor can't be read; listing every device")
        full = previous is None or started - previous.full >= self.full_every
        query = None
        if not full and previous is not None:
            query = f"sync:{(previous.read - SYNC_OVERLAP).date().isoformat()}.."
        by_id: dict[str, SourceDevice] = {}
        skipped = 0
        client = self._http or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        try:
            async for page in self._pages(client, query):
                for raw in page:
                    device = map_device(raw)
                    if device is None:
                        skipped += 1
                    else:
                        by_id[device.external_id] = device  # a device listed twice: the last
        finally:
            if self._http is None:
                await client.aclose()
        if skipped:
            log.info("sync: google: %s devices without a serial number were left out", skipped)
        new_cursor = SyncCursor(
            full=started if full or previous is None else previous.full, read=started
        )
        return DeviceSnapshot(
            source="google",
            devices=list(by_id.values()),
            complete=full,
            cursor=new_cursor.encode(),
        )


# --- from the settings --------------------------------------------------------------------


def service_account_key(settings: Settings) -> ServiceAccountKey | None:
    """The key from GOOGLE_SERVICE_ACCOUNT_JSON or the file GOOGLE_SERVICE_ACCOUNT_FILE names;
    None when neither is set. CredentialError (one line naming the setting) when it can't be
    used."""
    value, path = settings.google_service_account_json, settings.google_service_account_file
    if value is not None and path is not None:
        raise CredentialError(
            "set GOOGLE_SERVICE_ACCOUNT_JSON or GOOGLE_SERVICE_ACCOUNT_FILE, not both"
        )
    if path is not None:
        # credential() names the file setting <setting>_FILE: GOOGLE_SERVICE_ACCOUNT_FILE.
        text = credential(None, path, setting="GOOGLE_SERVICE_ACCOUNT")
        setting = "GOOGLE_SERVICE_ACCOUNT_FILE"
    else:
        text = credential(value, None, setting="GOOGLE_SERVICE_ACCOUNT_JSON", required=False)
        setting = "GOOGLE_SERVICE_ACCOUNT_JSON"
    return None if text is None else ServiceAccountKey.from_json(text, setting=setting)


def google_source(
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    backoff: Backoff | None = None,
    clock: Clock | None = None,
) -> GoogleAdminDevices | None:
    """The Google Admin source the settings describe; None when it isn't configured.
    CredentialError (one line naming the setting) when it is configured wrongly."""
    if not settings.google_enabled:
        return None
    key = service_account_key(settings)
    if key is None:
        return None
    if not settings.google_admin_subject:
        raise CredentialError("GOOGLE_ADMIN_SUBJECT is not set (the admin the sync acts for)")
    return GoogleAdminDevices(
        key,
        subject=settings.google_admin_subject,
        customer_id=settings.google_customer_id,
        org_unit=settings.google_org_unit,
        api_url=settings.google_api_url or API_URL,
        token_url=settings.google_token_url,
        full_every=timedelta(days=settings.google_full_sync_days),
        http=http,
        backoff=backoff,
        clock=clock,
    )
