"""A local stand-in for Google at its HTTP boundary: the OAuth 2.0 token endpoint for service
accounts (the JWT bearer grant) and the Admin SDK Directory API's ChromeOS device listing.

- `POST /token` takes `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`
  and checks the assertion as Google does: RS256, signed by a registered service account's
  key, `aud` this endpoint, `iat`/`exp` no more than an hour apart and not expired. A client
  not delegated the scope gets 401 `unauthorized_client`; a bad assertion 400 `invalid_grant`.
  It answers `{access_token, expires_in, token_type}`; tokens expire by `now`.
- `GET /admin/directory/v1/customer/{customerId}/devices/chromeos` needs a live token acting
  for an admin (`admins`); others get 403 "Not Authorized to access this resource/api", an
  expired token 401. It pages with `maxResults` (at most 300) and `nextPageToken`, filters
  by `orgUnitPath` (+ `includeChildOrgunits`) and understands the `sync:` date ranges of the
  search syntax (`YYYY-MM-DD`, `D..`, `..D`, `D1..D2`); other query terms answer 400.
- Faults for the next device requests, in order (`fail_next`): 429 with Retry-After, 503, a
  dropped connection, a malformed page, Google's 403 rate limit, and a token that expires
  under the listing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.sync_standins.serving import listen

CHROMEOS_READONLY = "https://www.googleapis.com/auth/admin.directory.device.chromeos.readonly"
CHROMEOS = "https://www.googleapis.com/auth/admin.directory.device.chromeos"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_RESULTS = 300
DEVICES_PATH = "/admin/directory/v1/customer/{customer}/devices/chromeos"

Fault = Literal["429", "503", "drop", "malformed", "rate_limit_403", "expire_token"]

_SYNC_TERM = re.compile(r"^sync:(\d{4}-\d{2}-\d{2})?(\.\.)?(\d{4}-\d{2}-\d{2})?$")


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_file_text(
    private_key: rsa.RSAPrivateKey,
    *,
    client_email: str,
    token_uri: str,
    client_id: str = "104857600000000000001",
    private_key_id: str = "0123456789abcdef0123456789abcdef01234567",
) -> str:
    """A service account's JSON key file, shaped as the Cloud console downloads it."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    project = client_email.split("@", 1)[1].split(".", 1)[0]
    return json.dumps(
        {
            "type": "service_account",
            "project_id": project,
            "private_key_id": private_key_id,
            "private_key": pem,
            "client_email": client_email,
            "client_id": client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{client_email}",
            "universe_domain": "googleapis.com",
        },
        indent=2,
    )


def device(
    serial: str,
    *,
    device_id: str | None = None,
    status: str = "ACTIVE",
    model: str | None = "HP Chromebook 11 G9 EE",
    asset_id: str | None = None,
    org_unit: str = "/Students",
    last_sync: datetime | None = None,
    recent_users: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A ChromeOsDevice as chromeosdevices.list returns it (the fields the sync reads and a
    few it doesn't)."""
    body: dict[str, Any] = {
        "kind": "admin#directory#chromeosdevice",
        "etag": f'"{secrets.token_hex(8)}"',
        "deviceId": device_id or f"dev-{serial.lower()}",
        "serialNumber": serial,
        "status": status,
        "lastSync": (last_sync or datetime(2026, 3, 1, 14, 0, tzinfo=UTC))
        .astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "orgUnitPath": org_unit,
        "osVersion": "126.0.6478.132",
        "bootMode": "Verified",
    }
    if model is not None:
        body["model"] = model
    if asset_id is not None:
        body["annotatedAssetId"] = asset_id
    if recent_users is not None:
        body["recentUsers"] = recent_users
    return body


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class ServiceAccount:
    client_email: str
    public_key: rsa.RSAPublicKey
    client_id: str
    delegated_scopes: set[str]


@dataclass
class IssuedToken:
    value: str
    client_email: str
    subject: str | None
    scopes: set[str]
    expires: datetime


@dataclass
class TokenRequest:
    """One POST /token as received: the assertion's header and claims, and the answer."""

    header: dict[str, Any]
    claims: dict[str, Any]
    status: int


@dataclass
class DeviceRequest:
    customer: str
    params: dict[str, str]
    authorization: str | None
    status: int = 200


@dataclass
class FakeGoogle:
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    token_lifetime: int = 3600
    customer: str = "my_customer"
    port: int = 0
    accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)
    devices: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    token_requests: list[TokenRequest] = field(default_factory=list)
    device_requests: list[DeviceRequest] = field(default_factory=list)
    retry_after: int = 2
    _faults: list[Fault] = field(default_factory=list)
    _faults_from: int = 0
    # The devices a listing matched, by its query: later pages read the listing's first answer.
    _listings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_get(DEVICES_PATH, self._list_devices)
        self._runner = web.AppRunner(app)
        self.port = await listen(self._runner, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    # --- test helpers ---------------------------------------------------------------------

    def register(
        self,
        client_email: str,
        public_key: rsa.RSAPublicKey,
        *,
        client_id: str = "104857600000000000001",
        delegated_scopes: set[str] | None = None,
    ) -> None:
        """A service account whose client ID the Admin console delegated `delegated_scopes`."""
        scopes = {CHROMEOS_READONLY} if delegated_scopes is None else delegated_scopes
        self.accounts[client_email] = ServiceAccount(client_email, public_key, client_id, scopes)

    def fail_next(self, *faults: Fault, after: int = 0) -> None:
        """The next device requests meet these faults, one each, in order; with `after`,
        once that many more device requests have been answered."""
        self._faults.extend(faults)
        self._faults_from = len(self.device_requests) + after

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (as if revoked, or its hour ran out)."""
        for token in self.tokens.values():
            token.expires = self.now() - timedelta(seconds=1)

    @property
    def issued(self) -> int:
        return sum(1 for r in self.token_requests if r.status == 200)

    # --- the token endpoint ---------------------------------------------------------------

    def _oauth_error(self, status: int, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        header: dict[str, Any] = {}
        claims: dict[str, Any] = {}

        def answer(response: web.Response) -> web.Response:
            self.token_requests.append(TokenRequest(header, claims, response.status))
            return response

        if form.get("grant_type") != JWT_BEARER:
            return answer(self._oauth_error(400, "unsupported_grant_type", "Invalid grant_type"))
        assertion = str(form.get("assertion") or "")
        parts = assertion.split(".")
        if len(parts) != 3:
            return answer(self._oauth_error(400, "invalid_request", "Invalid JWT"))
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except ValueError:
            return answer(self._oauth_error(400, "invalid_request", "Invalid JWT"))
        if header.get("alg") != "RS256":
            return answer(self._oauth_error(400, "invalid_grant", "Invalid JWT: alg"))
        account = self.accounts.get(str(claims.get("iss")))
        if account is None:
            return answer(self._oauth_error(400, "invalid_grant", "Invalid JWT Signature."))
        try:
            account.public_key.verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return answer(self._oauth_error(400, "invalid_grant", "Invalid JWT Signature."))
        if claims.get("aud") != self.token_url:
            return answer(self._oauth_error(400, "invalid_grant", "Invalid JWT: audience"))
        now = int(self.now().timestamp())
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return answer(self._oauth_error(400, "invalid_grant", "Invalid JWT: iat/exp"))
        if exp - iat > 3600 or exp <= iat:
            return answer(
                self._oauth_error(400, "invalid_grant", "Invalid JWT: exp too far after iat")
            )
        if iat > now + 60 or exp < now:
            return answer(
                self._oauth_error(
                    400,
                    "invalid_grant",
                    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                    "reasonable timeframe. Check your iat and exp values in the JWT claim.",
                )
            )
        scopes = set(str(claims.get("scope") or "").split())
        if not scopes:
            return answer(self._oauth_error(400, "invalid_scope", "Empty or missing scope"))
        subject = claims.get("sub")
        if subject is not None and not scopes <= account.delegated_scopes:
            return answer(
                self._oauth_error(
                    401,
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this method, or "
                    "client not authorized for any of the scopes requested.",
                )
            )
        value = f"ya29.{secrets.token_urlsafe(24)}"
        self.tokens[value] = IssuedToken(
            value,
            account.client_email,
            str(subject) if subject else None,
            scopes,
            self.now() + timedelta(seconds=self.token_lifetime),
        )
        return answer(
            web.json_response(
                {
                    "access_token": value,
                    "expires_in": self.token_lifetime,
                    "token_type": "Bearer",
                }
            )
        )

    # --- the device listing ---------------------------------------------------------------

    def _api_error(
        self, status: int, message: str, reason: str, *, domain: str = "global"
    ) -> web.Response:
        body = {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": domain, "reason": reason}],
            }
        }
        return web.json_response(body, status=status)

    @staticmethod
    def _listing_key(params: dict[str, str]) -> str:
        key = json.dumps({k: v for k, v in sorted(params.items()) if k != "pageToken"})
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def _page_token(self, offset: int, params: dict[str, str]) -> str:
        # The next page is only valid with the same query, as Google's tokens are.
        digest = self._listing_key(params)
        return base64.urlsafe_b64encode(f"{offset}:{digest}".encode()).decode()

    def _offset(self, token: str, params: dict[str, str]) -> int | None:
        try:
            offset, digest = base64.urlsafe_b64decode(token.encode()).decode().split(":")
            value = int(offset)
        except ValueError:
            return None
        return value if self._page_token(value, params) == token else None

    def _matches(self, item: dict[str, Any], params: dict[str, str]) -> bool | None:
        """Whether the device matches the filters; None when the query can't be read."""
        org = params.get("orgUnitPath")
        if org is not None:
            path = "/" + org.strip("/")
            own = str(item.get("orgUnitPath", "/"))
            children = params.get("includeChildOrgunits") == "true"
            if own != path and not (children and own.startswith(path.rstrip("/") + "/")):
                return False
        query = params.get("query", "").strip()
        for term in query.split():
            match = _SYNC_TERM.match(term)
            if not match or not (match.group(1) or match.group(3)):
                return None
            first, dots, last = match.groups()
            synced = _parse_time(str(item.get("lastSync"))).astimezone(UTC).date()
            low = date.fromisoformat(first) if first else None
            high = date.fromisoformat(last) if last else None
            if not dots:
                high = low
            if (low and synced < low) or (high and synced > high):
                return False
        return True

    async def _list_devices(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        record = DeviceRequest(
            request.match_info["customer"], params, request.headers.get("Authorization")
        )
        self.device_requests.append(record)

        def answer(response: web.Response) -> web.Response:
            record.status = response.status
            return response

        ready = self._faults and len(self.device_requests) > self._faults_from
        fault = self._faults.pop(0) if ready else None
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            record.status = 0
            return web.Response(status=500)
        if fault == "expire_token":
            self.expire_tokens()

        token = self.tokens.get(
            (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        )
        if token is None or token.expires <= self.now():
            return answer(
                self._api_error(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access "
                    "token, login cookie or other valid authentication credential.",
                    "authError",
                )
            )
        if fault == "429":
            return answer(
                web.json_response(
                    {"error": {"code": 429, "message": "Rate limit exceeded"}},
                    status=429,
                    headers={"Retry-After": str(self.retry_after)},
                )
            )
        if fault == "503":
            return answer(
                self._api_error(503, "The service is currently unavailable.", "backendError")
            )
        if fault == "rate_limit_403":
            return answer(
                self._api_error(
                    403,
                    "Quota exceeded for quota metric",
                    "userRateLimitExceeded",
                    domain="usageLimits",
                )
            )
        if fault == "malformed":
            return answer(
                web.Response(
                    status=200, text="<html>Temporary error</html>", content_type="text/html"
                )
            )
        if not (token.scopes & {CHROMEOS_READONLY, CHROMEOS}):
            return answer(
                self._api_error(403, "Request had insufficient authentication scopes.", "forbidden")
            )
        if token.subject is None or token.subject not in self.admins:
            return answer(
                self._api_error(403, "Not Authorized to access this resource/api", "forbidden")
            )
        if record.customer not in (self.customer, "my_customer"):
            return answer(self._api_error(404, "Resource Not Found: customer", "notFound"))
        try:
            size = int(params.get("maxResults", "100"))
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_RESULTS:
            return answer(self._api_error(400, "Invalid Input: maxResults", "invalid"))
        offset = 0
        if params.get("pageToken"):
            found = self._offset(params["pageToken"], params)
            if found is None:
                return answer(self._api_error(400, "Invalid Input: pageToken", "invalid"))
            offset = found
        listing = self._listing_key(params)
        matching = self._listings.get(listing) if offset else None
        if matching is None:
            matching = []
            for item in self.devices:
                verdict = self._matches(item, params)
                if verdict is None:
                    return answer(self._api_error(400, "Invalid Input: query", "invalid"))
                if verdict:
                    matching.append(item)
            self._listings[listing] = matching
        page = matching[offset : offset + size]
        body: dict[str, Any] = {"kind": "admin#directory#chromeosdevices", "etag": '"e"'}
        if page:
            body["chromeosdevices"] = page
        if offset + size < len(matching):
            body["nextPageToken"] = self._page_token(offset + size, params)
        return answer(web.json_response(body))
