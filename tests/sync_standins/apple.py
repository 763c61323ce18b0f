"""A local stand-in for the Apple School Manager API (and Apple Business's) at its HTTP boundary.

It speaks what Apple documents (see bot/sync/apple.py for the pages):

- `POST /auth/oauth2/token` takes the client-credentials form with a client assertion, checks
  the assertion as Apple does (ES256 signature against the registered public key, `kid`, `iss`
  and `sub` the client id, `aud` Apple's audience, `exp` in the future and at most 180 days after
  `iat`, a `jti`), checks the scope the account's kind needs, and answers `{access_token,
  token_type, expires_in}`, or 400 `{"error": "invalid_client"}` and the like.
- `GET /v1/orgDevices?limit=&cursor=` pages the devices (`limit` at most 1000, default 100) with
  `links.next` and `meta.paging.nextCursor`.
- `GET /v1/orgDevices/{id}/appleCareCoverage` lists a device's coverage.
- A missing, unknown or expired bearer token gets 401 with Apple's error body.

Devices come from a book: `ListedDevices` (given by a test) or `GeneratedDevices(n)`, which
builds device i from its index when asked, so 50,000 devices cost nothing until they are read.
Macs and iPads carry a Limited Warranty, every other one AppleCare+ as well; Apple TVs have none;
every 97th device has been released from the organization.

Faults are queued per kind of request (`token`, `devices`, `coverage`) with `fault()`: an HTTP
status (with Retry-After), `drop` (the connection closes without an answer), `malformed` (bad
JSON), `incomplete` (JSON without `data`) or `expire` (every token expires just before the
request). Time comes from `now` (Unix seconds), so a test's clock can expire tokens.

Run it on its own (the benchmark does) with
`python -m tests.sync_standins.apple --devices 50000 --public-key key.pub.pem`: it prints
`port <n>` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.sync_standins.serving import listen

CLIENT_ID = "SCHOOLAPI.5b0f7c52-1d7e-4c1a-9a53-0c3e9d2f6a11"
KEY_ID = "8c1e2f34-7a9b-4c5d-8e6f-1a2b3c4d5e6f"
AUDIENCE = "https://account.apple.com/auth/oauth2/v2/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 180 * 86_400
CLOCK_SKEW = 60  # seconds an assertion's iat may run ahead of this server's clock
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
SERIAL_PREFIX = "ASM"

# (deviceModel, productFamily, productType, partNumber, deviceCapacity, color)
MODELS = (
    ("iPad (10th generation)", "iPad", "iPad13,18", "MPQ03LL/A", "64GB", "BLUE"),
    ("MacBook Air (13-inch, M2, 2022)", "Mac", "Mac14,2", "MLY33LL/A", "256GB", "MIDNIGHT"),
    ("iPad (9th generation)", "iPad", "iPad12,1", "MK2K3LL/A", "64GB", "SPACE GRAY"),
    ("Apple TV 4K (3rd generation)", "AppleTV", "AppleTV14,1", "MN873LL/A", "64GB", "BLACK"),
    ("MacBook Air (13-inch, M3, 2024)", "Mac", "Mac15,12", "MRXN3LL/A", "256GB", "STARLIGHT"),
)
ORDERS_FROM = date(2023, 7, 1)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A key like the one Apple School Manager generates for an API account (P-256)."""
    return ec.generate_private_key(ec.SECP256R1())


def pem_of(key: ec.EllipticCurvePrivateKey) -> str:
    """The key as Apple's download holds it (PKCS#8 PEM)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _stamp(day: date, *, millis: bool = False) -> str:
    return f"{day.isoformat()}T00:00:00{'.000' if millis else ''}Z"


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- the organization's devices -----------------------------------------------------------


@dataclass
class Device:
    """One `orgDevices` resource and its `appleCareCoverage` resources (attributes each)."""

    id: str
    attributes: dict[str, Any]
    coverage: list[dict[str, Any]] = field(default_factory=list)


class DeviceBook(Protocol):
    def __len__(self) -> int: ...

    def at(self, index: int) -> Device: ...

    def get(self, device_id: str) -> Device | None: ...


class ListedDevices:
    """Devices a test spells out."""

    def __init__(self, devices: Sequence[Device]) -> None:
        self.devices = list(devices)
        self._by_id = {d.id: d for d in self.devices}

    def __len__(self) -> int:
        return len(self.devices)

    def at(self, index: int) -> Device:
        return self.devices[index]

    def get(self, device_id: str) -> Device | None:
        return self._by_id.get(device_id)


def device_attributes(
    serial: str,
    *,
    model: str = "iPad (10th generation)",
    family: str = "iPad",
    product_type: str = "iPad13,18",
    part_number: str = "MPQ03LL/A",
    capacity: str = "64GB",
    color: str = "BLUE",
    status: str = "ASSIGNED",
    ordered: date = ORDERS_FROM,
    released: date | None = None,
) -> dict[str, Any]:
    """An orgDevices resource's attributes, shaped like Apple's example."""
    return {
        "serialNumber": serial,
        "addedToOrgDateTime": _stamp(ordered + timedelta(days=3), millis=True),
        "releasedFromOrgDateTime": _stamp(released, millis=True) if released else None,
        "updatedDateTime": _stamp(released or ordered + timedelta(days=3), millis=True),
        "deviceModel": model,
        "productFamily": family,
        "productType": product_type,
        "deviceCapacity": capacity,
        "partNumber": part_number,
        "orderNumber": f"PO{ordered:%Y%m%d}",
        "color": color,
        "status": status,
        "orderDateTime": _stamp(ordered),
        "purchaseSourceId": "1A2B3C4",
        "purchaseSourceType": "RESELLER",
    }


def coverage_attributes(
    description: str,
    start: date,
    end: date,
    *,
    agreement: str | None = None,
    payment: str = "NONE",
    renewable: bool = False,
    cancelled: date | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """An appleCareCoverage resource's attributes, shaped like Apple's example."""
    active = cancelled is None and (today is None or start <= today <= end)
    return {
        "contractCancelDateTime": _stamp(cancelled) if cancelled else None,
        "startDateTime": _stamp(start),
        "isRenewable": renewable,
        "isCanceled": cancelled is not None,
        "description": description,
        "agreementNumber": agreement,
        "endDateTime": _stamp(end),
        "status": "ACTIVE" if active else "INACTIVE",
        "paymentType": payment,
    }


class GeneratedDevices:
    """`count` devices, each built from its index when it is read."""

    def __init__(self, count: int, *, today: date | None = None) -> None:
        self.count = count
        self.today = today

    def __len__(self) -> int:
        return self.count

    @staticmethod
    def serial(index: int) -> str:
        return f"{SERIAL_PREFIX}{index:09d}"

    def at(self, index: int) -> Device:
        if not 0 <= index < self.count:
            raise IndexError(index)
        model, family, product_type, part, capacity, color = MODELS[index % len(MODELS)]
        ordered = ORDERS_FROM + timedelta(days=index % 700)
        serial = self.serial(index)
        released = ordered + timedelta(days=400) if index % 97 == 96 else None
        attributes = device_attributes(
            serial,
            model=model,
            family=family,
            product_type=product_type,
            part_number=part,
            capacity=capacity,
            color=color,
            status="UNASSIGNED" if index % 5 == 4 else "ASSIGNED",
            ordered=ordered,
            released=released,
        )
        coverage: list[dict[str, Any]] = []
        if family in ("Mac", "iPad"):
            coverage.append(
                {
                    "id": serial,
                    "attributes": coverage_attributes(
                        "Limited Warranty",
                        ordered,
                        ordered + timedelta(days=364),
                        today=self.today,
                    ),
                }
            )
            if index % 2 == 0:
                agreement = f"{index + 1:010d}"
                coverage.append(
                    {
                        "id": agreement,
                        "attributes": coverage_attributes(
                            "AppleCare+ for Schools",
                            ordered,
                            ordered + timedelta(days=4 * 365 - 1),
                            agreement=agreement,
                            payment="PAID_UP_FRONT",
                            today=self.today,
                        ),
                    }
                )
        return Device(serial, attributes, coverage)

    def get(self, device_id: str) -> Device | None:
        digits = device_id.removeprefix(SERIAL_PREFIX)
        if device_id == digits or not digits.isdigit() or len(digits) != 9:
            return None
        index = int(digits)
        return self.at(index) if index < self.count else None


# --- the server ----------------------------------------------------------------------------


@dataclass
class Assertion:
    """A client assertion the token endpoint accepted: its header, claims and form."""

    header: dict[str, Any]
    claims: dict[str, Any]
    form: dict[str, str]
    raw: str


def _error(status: int, code: str, detail: str) -> web.Response:
    body = {
        "errors": [
            {
                "id": secrets.token_hex(8),
                "status": str(status),
                "code": code,
                "title": detail,
                "detail": detail,
            }
        ]
    }
    return web.json_response(body, status=status)


@dataclass
class FakeAppleSchoolManager:
    devices: DeviceBook = field(default_factory=lambda: ListedDevices([]))
    # client id -> key id -> public key; `register` adds one.
    keys: dict[str, dict[str, ec.EllipticCurvePublicKey]] = field(default_factory=dict)
    token_lifetime: int = 3600
    now: Callable[[], float] = time.time
    port: int = 0
    assertions: list[Assertion] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # why token requests were refused
    requests: Counter[str] = field(default_factory=Counter)  # by kind, faults included
    unauthorized: int = 0  # API requests refused for their token
    limits: list[int] = field(default_factory=list)  # the `limit` of each device page served
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    tokens_used: Counter[str] = field(default_factory=Counter)
    _faults: dict[str, list[Any]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/auth/oauth2/token", self._token)
        app.router.add_get("/v1/orgDevices", self._devices)
        app.router.add_get("/v1/orgDevices/{id}/appleCareCoverage", self._coverage)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        self.port = await listen(self._runner, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[FakeAppleSchoolManager]:
        """Run the server on its own event loop in a background thread."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="fake-apple", daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Apple School Manager stand-in didn't start")
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/oauth2/token"

    # --- test helpers ---------------------------------------------------------------------

    def register(
        self,
        public_key: ec.EllipticCurvePublicKey,
        client_id: str = CLIENT_ID,
        key_id: str = KEY_ID,
    ) -> None:
        """An API account's public key, as Apple keeps it when the account is created."""
        self.keys.setdefault(client_id, {})[key_id] = public_key

    def fault(
        self,
        kind: str,
        action: int | str,
        *,
        times: int = 1,
        after: int = 0,
        retry_after: str | None = None,
    ) -> None:
        """The next `times` requests of `kind`, once `after` more have been served, fail with
        `action`: an HTTP status, "drop", "malformed", "incomplete" or "expire"."""
        if kind not in ("token", "devices", "coverage"):
            raise ValueError(kind)
        queue = self._faults.setdefault(kind, [])
        queue.extend([None] * after)
        queue.extend([(action, retry_after)] * times)

    def expire_tokens(self) -> None:
        now = self.now()
        self.tokens = {token: min(expiry, now) for token, expiry in self.tokens.items()}

    def _next_fault(self, kind: str) -> tuple[int | str, str | None] | None:
        queue = self._faults.get(kind)
        return queue.pop(0) if queue else None

    def _faulty(self, kind: str, request: web.Request) -> web.Response | None:
        """The response a queued fault gives instead of the real one; None to go on."""
        self.requests[kind] += 1
        fault = self._next_fault(kind)
        if fault is None:
            return None
        action, retry_after = fault
        if action == "expire":
            self.expire_tokens()
            return None
        if action == "drop":
            assert request.transport is not None
            request.transport.close()
            raise web.HTTPInternalServerError()  # never reaches the client: it is gone
        if action == "malformed":
            return web.Response(
                status=200,
                text='{"data": [{"type": "orgDevices", "id": ',
                content_type="application/json",
            )
        if action == "incomplete":
            return web.json_response({"links": {"self": str(request.url)}})
        assert isinstance(action, int)
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        if kind == "token":
            return web.json_response({"error": "server_error"}, status=action, headers=headers)
        response = _error(action, "FAULT", "A fault this stand-in was told to answer.")
        if headers:
            response.headers.update(headers)
        return response

    # --- sign-in --------------------------------------------------------------------------

    def _refuse(self, error: str, why: str) -> web.Response:
        self.refusals.append(why)
        return web.json_response({"error": error}, status=400)

    async def _token(self, request: web.Request) -> web.Response:
        faulty = self._faulty("token", request)
        if faulty is not None:
            return faulty
        if not request.content_type == "application/x-www-form-urlencoded":
            return self._refuse("invalid_request", f"content type {request.content_type}")
        form = {k: str(v) for k, v in (await request.post()).items()}
        if form.get("grant_type") != "client_credentials":
            return self._refuse("unsupported_grant_type", f"grant_type {form.get('grant_type')}")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return self._refuse("invalid_request", "client_assertion_type")
        client_id = form.get("client_id", "")
        if client_id not in self.keys:
            return self._refuse("invalid_client", f"unknown client {client_id}")
        checked = self._check_assertion(form.get("client_assertion", ""), client_id)
        if isinstance(checked, str):
            return self._refuse("invalid_client", checked)
        header, claims = checked
        wanted = "business.api" if client_id.startswith("BUSINESSAPI.") else "school.api"
        if form.get("scope") != wanted:
            return self._refuse("invalid_scope", f"scope {form.get('scope')}")
        self.assertions.append(
            Assertion(
                header,
                claims,
                {k: v for k, v in form.items() if k != "client_assertion"},
                form["client_assertion"],
            )
        )
        token = secrets.token_urlsafe(32)
        self.tokens[token] = self.now() + self.token_lifetime
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}
        )

    def _check_assertion(
        self, assertion: str, client_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | str:
        """The assertion's header and claims, or why it is refused."""
        parts = assertion.split(".")
        if len(parts) != 3:
            return "not a JWS compact serialization"
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, binascii.Error):
            return "undecodable JWT"
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return "header or claims not an object"
        if header.get("alg") != "ES256":
            return f"alg {header.get('alg')}"
        public_key = self.keys[client_id].get(str(header.get("kid")))
        if public_key is None:
            return f"unknown kid {header.get('kid')}"
        if len(signature) != 64:
            return "signature is not a raw 64-byte r||s"
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public_key.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "bad signature"
        now = self.now()
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return "iss and sub must be the client id"
        if claims.get("aud") != AUDIENCE:
            return f"aud {claims.get('aud')}"
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return "iat and exp must be integers"
        if iat > now + CLOCK_SKEW:
            return "iat in the future"
        if exp <= now:
            return "expired assertion"
        if exp - iat > MAX_ASSERTION_LIFETIME:
            return "assertion lives longer than 180 days"
        if not claims.get("jti"):
            return "no jti"
        return header, claims

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self.tokens.get(token) if scheme == "Bearer" else None
        if expiry is None or expiry <= self.now():
            self.unauthorized += 1
            return False
        self.tokens_used[token] += 1
        return True

    # --- devices and coverage -------------------------------------------------------------

    async def _devices(self, request: web.Request) -> web.Response:
        faulty = self._faulty("devices", request)
        if faulty is not None:
            return faulty
        if not self._authorized(request):
            return _error(401, "NOT_AUTHORIZED", "The access token is missing, invalid or expired.")
        try:
            limit = int(request.query.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return _error(400, "PARAMETER_ERROR.INVALID", "limit must be an integer")
        if not 1 <= limit <= MAX_LIMIT:
            return _error(400, "PARAMETER_ERROR.INVALID", f"limit must be 1 to {MAX_LIMIT}")
        offset = 0
        if "cursor" in request.query:
            try:
                kind, _, number = _unb64(request.query["cursor"]).decode().partition(":")
                offset = int(number)
                if kind != "o" or offset < 0:
                    raise ValueError
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return _error(400, "PARAMETER_ERROR.INVALID", "cursor is not valid")
        self.limits.append(limit)
        end = min(offset + limit, len(self.devices))
        base = f"{self.base_url}/v1/orgDevices"
        data = [self._device_resource(self.devices.at(i)) for i in range(offset, end)]
        body: dict[str, Any] = {"data": data, "links": {"self": str(request.url)}}
        paging: dict[str, Any] = {"limit": limit}
        if end < len(self.devices):
            cursor = base64.urlsafe_b64encode(f"o:{end}".encode()).decode().rstrip("=")
            body["links"]["next"] = f"{base}?cursor={cursor}"
            paging["nextCursor"] = cursor
        body["meta"] = {"paging": paging}
        return web.json_response(body)

    def _device_resource(self, device: Device) -> dict[str, Any]:
        url = f"{self.base_url}/v1/orgDevices/{device.id}"
        return {
            "type": "orgDevices",
            "id": device.id,
            "attributes": device.attributes,
            "relationships": {
                "assignedServer": {
                    "links": {
                        "self": f"{url}/relationships/assignedServer",
                        "related": f"{url}/assignedServer",
                    }
                },
                "appleCareCoverage": {"links": {"related": f"{url}/appleCareCoverage"}},
            },
            "links": {"self": url},
        }

    async def _coverage(self, request: web.Request) -> web.Response:
        faulty = self._faulty("coverage", request)
        if faulty is not None:
            return faulty
        if not self._authorized(request):
            return _error(401, "NOT_AUTHORIZED", "The access token is missing, invalid or expired.")
        device = self.devices.get(request.match_info["id"])
        if device is None:
            return _error(404, "NOT_FOUND", "There is no resource with that id.")
        data = [
            {"type": "appleCareCoverage", "id": plan["id"], "attributes": plan["attributes"]}
            for plan in device.coverage
        ]
        return web.json_response(
            {"data": data, "links": {"self": str(request.url)}, "meta": {"paging": {"limit": 100}}}
        )


# --- on its own ----------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    public_key = serialization.load_pem_public_key(Path(args.public_key).read_bytes())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    today = datetime.now(UTC).date()
    server = FakeAppleSchoolManager(
        devices=GeneratedDevices(args.devices, today=today),
        token_lifetime=args.token_lifetime,
        port=args.port,
    )
    server.register(public_key, args.client_id, args.key_id)
    await server.start()
    print(f"port {server.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--public-key", required=True, help="the API account's public key (PEM)")
    parser.add_argument("--client-id", default=CLIENT_ID)
    parser.add_argument("--key-id", default=KEY_ID)
    parser.add_argument("--token-lifetime", type=int, default=3600)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(_serve(args))
    except ImportError:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
