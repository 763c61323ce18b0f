"""A local stand-in for Slack's Web API: records every call, serves files, can fail on demand.

Bound to a free port; `base_url` ends in /api/ as slack_sdk expects. It accepts JSON bodies,
form bodies and query strings, because slack_sdk uses all three.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_TOKEN = "xoxb-test-token"
SIGN_IN_PAGE = "<html><body>Sign in to Slack</body></html>"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeFile:
    id: str
    name: str
    content: bytes
    mimetype: str = "image/jpeg"
    user: str = "U_TECH"
    url_private: str | None = None  # where files.info says it is; the stand-in's own by default


@dataclass
class Upload:
    """A file shared through files_upload_v2 (getUploadURLExternal, POST, complete)."""

    id: str
    filename: str
    length: int
    content: bytes = b""
    title: str | None = None
    channel: str | None = None
    initial_comment: str | None = None
    thread_ts: str | None = None
    completed: bool = False


@dataclass
class FileRequest:
    """A request to the stand-in's file host: which host name it was sent to, and its token."""

    host: str
    path: str
    authorization: str | None


@dataclass
class FakeSlack:
    calls: list[Call] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, FakeFile] = field(default_factory=dict)
    downloads: list[tuple[str, str | None]] = field(default_factory=list)
    uploads: dict[str, Upload] = field(default_factory=dict)
    _failures: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    # Slack error codes to answer with (ok: false, HTTP 200), per method, in order.
    _errors: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    file_requests: list[FileRequest] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)  # /hop/{key} -> Location
    tls_port: int = 0
    _ts: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    port: int = 0

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        """Serve on a free port; with `tls`, also over https on `tls_port` (for host names a
        test resolves to 127.0.0.1, such as files.slack-gov.com)."""
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/files/{file_id}/{name}", self._download)
        app.router.add_get("/public/{file_id}/{name}", self._public_download)
        app.router.add_get("/hop/{key}", self._hop)
        app.router.add_post("/upload/{file_id}", self._upload)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if tls is not None:
            secure = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=tls)
            await secure.start()
            self.tls_port = secure._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # --- test helpers ---------------------------------------------------------------------

    def add_user(self, user_id: str, email: str, name: str = "Staff Member") -> None:
        self.users[user_id] = {
            "id": user_id,
            "name": name,
            "profile": {"email": email, "real_name": name},
        }

    def add_file(self, file: FakeFile) -> None:
        self.files[file.id] = file

    def fail_next(
        self, method: str, status: int = 429, *, times: int = 1, retry_after: int = 1
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if status == 429 else {}
        self._failures.setdefault(method, []).extend([(status, headers)] * times)

    def answer_error(
        self, method: str, error: str, *, times: int = 1, channel: str | None = None
    ) -> None:
        """The next `times` calls to `method` (to `channel`, when given) answer with Slack's
        error code, as Slack does: HTTP 200 with ok false."""
        self._errors.setdefault(method, []).extend([(error, channel)] * times)

    def shared_files(self, channel: str | None = None) -> list[Upload]:
        """Completed uploads (in order), optionally only those shared to `channel`."""
        return [
            u
            for u in self.uploads.values()
            if u.completed and (channel is None or u.channel == channel)
        ]

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(
        self,
        method: str,
        where: Callable[[Call], bool] = lambda c: True,
        *,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[Call]:
        """Bolt answers at ack() and keeps working: poll until the calls arrive."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [c for c in self.calls_to(method) if where(c)]
            if len(found) >= count:
                return found
            if asyncio.get_running_loop().time() > deadline:
                seen = [c.method for c in self.calls]
                raise AssertionError(f"no {count} x {method} within {timeout}s; saw {seen}")
            await asyncio.sleep(0.02)

    # --- handlers -------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        self.calls.append(Call(method, args, dict(request.headers)))
        failures = self._failures.get(method)
        if failures:
            status, headers = failures.pop(0)
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=status, headers=headers
            )
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        errors = self._errors.get(method) or []
        for i, (error, channel) in enumerate(errors):
            if channel is None or channel == args.get("channel"):
                del errors[i]
                return web.json_response({"ok": False, "error": error})
        return web.json_response(self._answer(method, args))

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        ts = f"1700000000.{next(self._ts):06d}"
        if method == "auth.test":
            return {
                "ok": True,
                "user_id": "U_BOT",
                "bot_id": "B_BOT",
                "app_id": "A_DEVICECARE",
                "team_id": "T_DISTRICT",
                "team": "District",
                "url": "https://district.slack.com/",
            }
        if method == "chat.postMessage":
            return {
                "ok": True,
                "channel": args.get("channel"),
                "ts": ts,
                "message": {"text": args.get("text"), "ts": ts},
            }
        if method == "chat.update":
            return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": ts}
        if method == "chat.getPermalink":
            channel, message = args.get("channel"), str(args.get("message_ts", "")).replace(".", "")
            return {
                "ok": True,
                "permalink": f"https://district.slack.com/archives/{channel}/p{message}",
            }
        if method in ("views.open", "views.push", "views.update", "views.publish"):
            view = args.get("view")
            view = json.loads(view) if isinstance(view, str) else (view or {})
            return {"ok": True, "view": {**view, "id": f"V{next(self._ts):05d}"}}
        if method == "users.info":
            user = self.users.get(str(args.get("user")))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):08d}"
            self.uploads[file_id] = Upload(
                file_id, str(args.get("filename") or ""), int(args.get("length") or 0)
            )
            return {
                "ok": True,
                "file_id": file_id,
                "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}",
            }
        if method == "files.completeUploadExternal":
            listed = args.get("files")
            listed = json.loads(listed) if isinstance(listed, str) else (listed or [])
            done = []
            for item in listed:
                upload = self.uploads.get(str(item.get("id")))
                if upload is None or len(upload.content) != upload.length:
                    return {"ok": False, "error": "file_not_found"}
                upload.title = item.get("title") or upload.filename
                upload.channel = args.get("channel_id") or args.get("channels")
                upload.initial_comment = args.get("initial_comment")
                upload.thread_ts = args.get("thread_ts")
                upload.completed = True
                done.append(
                    {
                        "id": upload.id,
                        "name": upload.filename,
                        "title": upload.title,
                        "size": len(upload.content),
                    }
                )
            return {"ok": True, "files": done}
        if method == "files.info":
            file = self.files.get(str(args.get("file")))
            if file is None:
                return {"ok": False, "error": "file_not_found"}
            return {
                "ok": True,
                "file": {
                    "id": file.id,
                    "name": file.name,
                    "mimetype": file.mimetype,
                    "size": len(file.content),
                    "user": file.user,
                    "permalink": f"https://district.slack.com/files/{file.user}/{file.id}/{file.name}",
                    "url_private": file.url_private
                    or f"http://127.0.0.1:{self.port}/files/{file.id}/{file.name}",
                    "url_private_download": f"http://127.0.0.1:{self.port}/files/{file.id}/{file.name}?download=1",
                },
            }
        return {"ok": True}

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload_url: Slack takes the bytes (no token needed) and answers in plain text."""
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="not found")
        upload.content = await request.read()
        return web.Response(text=f"OK - {len(upload.content)}")

    def _seen(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization")
        self.file_requests.append(FileRequest(request.host.rsplit(":", 1)[0], request.path, auth))
        return auth

    async def _hop(self, request: web.Request) -> web.Response:
        """A redirect, as Slack's file host may answer (302 with a Location)."""
        self._seen(request)
        location = self.redirects.get(request.match_info["key"])
        if location is None:
            return web.Response(status=404)
        return web.Response(status=302, headers={"Location": location})

    async def _public_download(self, request: web.Request) -> web.Response:
        """A pre-signed address (a CDN's): the file itself, no token needed."""
        self._seen(request)
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            return web.Response(status=404)
        return web.Response(body=file.content, content_type=file.mimetype)

    async def _download(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        auth = self._seen(request)
        self.downloads.append((request.match_info["file_id"], auth))
        if file is None:
            return web.Response(status=404)
        if auth != f"Bearer {BOT_TOKEN}":
            # What Slack really does without the token: a 200 with its sign-in page.
            return web.Response(text=SIGN_IN_PAGE, content_type="text/html")
        return web.Response(body=file.content, content_type=file.mimetype)
