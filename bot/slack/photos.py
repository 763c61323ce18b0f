"""Photos from Slack: files.info, a download with the bot token, a check by content, the blob
store, and `attach_photo` (which links each photo to the incident and, for life, its device).

Used for files uploaded in the incident modals (`file_input`) and for files dropped into an
incident card's thread. A Slack file is attached to an incident at most once: its file id is
the photo's `source_ref`, checked under the incident's lock, so a redelivered event or a
second submission never attaches it twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.cards import queue_incident_card, queue_thread_message
from bot.slack.client import DEFAULT_API_URL
from bot.slack.incident_blocks import build_photo_report_message, escape_mrkdwn
from storage.images import MAX_PHOTO_BYTES, CheckedImage, check_photo_async
from storage.photo_links import incident_has_photo
from workflows.errors import NotFound, ValidationError
from workflows.i18n import _
from workflows.incidents import StoredPhoto, attach_photo
from workflows.permissions import Actor, Permission, require
from workflows.ports import Context

log = logging.getLogger("devicecare.slack")

DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
_MB = 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class SlackFileRef:
    """A file as a Slack payload names it; everything else comes from files.info."""

    id: str
    name: str


@dataclass
class PhotoReport:
    incident_id: int
    attached: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # sentences naming the file and the reason
    already_attached: list[str] = field(default_factory=list)
    # New files whose picture (same content hash) the incident already has: not attached again.
    duplicates: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """What to tell the person; empty when there is nothing new to say (a redelivery)."""
        return build_photo_report_message(
            self.incident_id, self.attached, self.refused, self.duplicates
        )


def _file_refs(files: Iterable[Any]) -> list[SlackFileRef]:
    refs: list[SlackFileRef] = []
    for file in files:
        if not isinstance(file, Mapping) or not file.get("id"):
            continue
        file_id = str(file["id"])
        if any(r.id == file_id for r in refs):
            continue
        refs.append(SlackFileRef(file_id, str(file.get("name") or file.get("title") or file_id)))
    return refs


def files_from_event(event: Mapping[str, Any]) -> list[SlackFileRef]:
    """The files of a `message` event with the file_share subtype."""
    return _file_refs(event.get("files") or [])


def files_from_state(values: Mapping[str, Any], block_id: str) -> list[SlackFileRef]:
    """The files uploaded through a modal's file_input (block id and action id alike)."""
    state = (values.get(block_id) or {}).get(block_id) or {}
    return _file_refs(state.get("files") or [])


def too_large(name: str, size: int) -> ValidationError:
    size_mb = math.ceil(size * 10 / _MB) / 10  # round up: never "5.0 MB" when over
    return ValidationError(
        _(
            "{name} is {size} MB; photos can be at most {limit} MB.",
            name=name,
            size=f"{size_mb:.1f}",
            limit=MAX_PHOTO_BYTES // _MB,
        ),
        field="photo",
    )


# Slack's own hosts (commercial and GovSlack); the bot token is sent to no other.
SLACK_DOMAINS = ("slack.com", "slack-gov.com")
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _on_api_host(url: str, api_url: str | None) -> bool:
    target, api = urlsplit(url), urlsplit(api_url or DEFAULT_API_URL)
    return (target.scheme, target.hostname, target.port) == (api.scheme, api.hostname, api.port)


def _may_carry_token(url: str, api_url: str | None) -> bool:
    """The bot token goes only over https to Slack (slack.com, slack-gov.com and their
    subdomains), or to the API host the settings point at (a Slack stand-in, a proxy)."""
    target = urlsplit(url)
    host = (target.hostname or "").lower()
    if target.scheme == "https" and any(
        host == domain or host.endswith("." + domain) for domain in SLACK_DOMAINS
    ):
        return True
    return _on_api_host(url, api_url)


def _may_follow(url: str, api_url: str | None) -> bool:
    """A redirect is followed only over https (or to the configured API host): never a
    downgrade to plain http."""
    return urlsplit(url).scheme == "https" or _on_api_host(url, api_url)


async def download_slack_file(
    client: AsyncWebClient, file_id: str, *, api_url: str | None = None
) -> tuple[str, bytes]:
    """(name, bytes) of a Slack file; ValidationError with a sentence for the user otherwise."""
    fetched = await fetch_slack_file(client, file_id, api_url=api_url)
    return fetched.name, fetched.data


@dataclass(frozen=True)
class FetchedFile:
    name: str
    data: bytes
    permalink: str | None  # where staff open the file in Slack


def _permalink(file: Mapping[str, Any]) -> str | None:
    link = file.get("permalink")
    if isinstance(link, str) and urlsplit(link).scheme == "https" and len(link) <= 500:
        return link
    return None


async def fetch_slack_file(
    client: AsyncWebClient, file_id: str, *, api_url: str | None = None
) -> FetchedFile:
    """A Slack file's name, bytes and permalink; ValidationError with a sentence otherwise."""
    try:
        info = await client.files_info(file=file_id)
    except SlackApiError as exc:
        log.warning("files.info %s failed: %s", file_id, exc.response.get("error"))
        raise ValidationError(
            _("A file ({file_id}) couldn't be read from Slack.", file_id=file_id), field="photo"
        ) from exc
    file = info.get("file") or {}
    name = str(file.get("name") or file.get("title") or file_id)
    size = file.get("size")
    if isinstance(size, int) and size > MAX_PHOTO_BYTES:
        raise too_large(name, size)  # no need to fetch it
    url = file.get("url_private") or file.get("url_private_download")
    if not isinstance(url, str) or not _may_carry_token(url, api_url):
        # A remote or external file lives outside Slack: it is not fetched at all.
        log.warning("refusing to download %s from %r", file_id, url)
        raise ValidationError(
            _("{name} couldn't be downloaded from Slack.", name=name), field="photo"
        )
    claimed = str(file.get("mimetype") or "")
    download = _Download(str(client.token), api_url, name, claimed, size)
    try:
        if client.session is not None and not client.session.closed:
            data = await download.fetch(client.session, url)  # the client's connection pool
        else:
            async with aiohttp.ClientSession(timeout=DOWNLOAD_TIMEOUT) as http:
                data = await download.fetch(http, url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("downloading %s failed: %r", file_id, exc)
        raise ValidationError(
            _("{name} couldn't be downloaded from Slack just now; please add it again.", name=name),
            field="photo",
        ) from exc
    return FetchedFile(name, data, _permalink(file))


@dataclass(frozen=True)
class _Download:
    """One file's download: Slack's redirects are followed by hand, so that each hop decides
    for itself whether it may carry the token (a hop to another host goes without it)."""

    token: str
    api_url: str | None
    name: str
    claimed: str
    size: Any

    async def fetch(self, http: aiohttp.ClientSession, url: str) -> bytes:
        for _attempt in range(MAX_REDIRECTS + 1):
            headers = {"Authorization": f"Bearer {self.token}"}
            if not _may_carry_token(url, self.api_url):
                headers = {}
            async with http.get(
                url, headers=headers, allow_redirects=False, timeout=DOWNLOAD_TIMEOUT
            ) as response:
                if response.status in _REDIRECTS and "Location" in response.headers:
                    url = urljoin(str(response.url), response.headers["Location"])
                    if not _may_follow(url, self.api_url):
                        log.warning("refusing a redirect for %s to %r", self.name, url)
                        raise ValidationError(
                            _("{name} couldn't be downloaded from Slack.", name=self.name),
                            field="photo",
                        )
                    continue
                return await self._read(response)
        log.warning("too many redirects downloading %s", self.name)
        raise ValidationError(
            _("{name} couldn't be downloaded from Slack.", name=self.name), field="photo"
        )

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        name = self.name
        if response.status != 200:
            raise ValidationError(
                _(
                    "{name} couldn't be downloaded from Slack (HTTP {status}).",
                    name=name,
                    status=response.status,
                ),
                field="photo",
            )
        if response.content_type == "text/html" and "html" not in self.claimed:
            # Slack answers 200 with its sign-in page when the token isn't accepted.
            log.warning("url_private for %s returned a web page, not the file", name)
            raise ValidationError(
                _(
                    "{name} couldn't be downloaded: Slack sent a sign-in page instead of the "
                    "file. Ask an administrator to check the app's files:read scope.",
                    name=name,
                ),
                field="photo",
            )
        data = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            data += chunk
            if len(data) > MAX_PHOTO_BYTES:
                size = self.size if isinstance(self.size, int) else 0
                raise too_large(name, max(len(data), size))
        return bytes(data)


@dataclass(frozen=True)
class _Checked:
    ref: SlackFileRef
    name: str
    image: CheckedImage
    blob_key: str
    permalink: str | None


async def attach_slack_files(
    runtime: Runtime,
    client: AsyncWebClient,
    actor: Actor,
    incident_id: int,
    files: Sequence[SlackFileRef],
    *,
    note_in_thread: bool = False,
) -> PhotoReport:
    """Download, check, store and attach each file; refuse the bad ones with a reason.

    The card refresh (and, with `note_in_thread`, a line in the card's thread) is queued in
    the transaction that attaches the photos.
    """
    require(actor, Permission.MANAGE_INCIDENTS)  # before anything is downloaded
    report = PhotoReport(incident_id)
    async with runtime.stores() as store:
        if await store.incidents.get(incident_id) is None:
            raise NotFound(_("Incident #{number} doesn't exist.", number=incident_id))
        known = {
            f.id for f in files if await store.incidents.photo_by_source_ref(incident_id, f.id)
        }
        await store.commit()
    checked: list[_Checked] = []
    for ref in files:
        if ref.id in known:
            report.already_attached.append(ref.name)
            continue
        try:
            fetched = await fetch_slack_file(client, ref.id, api_url=runtime.settings.slack_api_url)
            image = await check_photo_async(fetched.data, filename=fetched.name)
        except ValidationError as exc:
            log.info("photo %s for incident #%s refused: %s", ref.id, incident_id, exc.message)
            report.refused.append(exc.message)
            continue
        key = await runtime.blobs.put(image.data, image.content_type)
        checked.append(_Checked(ref, fetched.name, image, key, fetched.permalink))
    if not checked:
        return report
    async with runtime.stores() as store:
        ctx = Context(store, runtime.clock, runtime.settings.tz)
        # The lock serialises a redelivered event behind the original, so the check below
        # sees what the original attached.
        await store.incidents.get(incident_id, lock=True)
        for item in checked:
            if await store.incidents.photo_by_source_ref(incident_id, item.ref.id) is not None:
                report.already_attached.append(item.name)
                continue
            # Checked photos are re-encoded the same way every time, so a re-posted picture
            # has the same hash (whatever its file id or name) and is told, not stored twice.
            if await incident_has_photo(store, incident_id, item.image.sha256):
                report.duplicates.append(item.name)
                continue
            await attach_photo(
                ctx,
                actor,
                incident_id,
                StoredPhoto(
                    blob_key=item.blob_key,
                    content_type=item.image.content_type,
                    size_bytes=len(item.image.data),
                    sha256=item.image.sha256,
                    width=item.image.width,
                    height=item.image.height,
                    original_filename=item.name,
                    source="slack",
                    source_ref=item.ref.id,
                    source_url=item.permalink,
                ),
            )
            report.attached.append(item.name)
        if report.attached:
            await queue_incident_card(store, incident_id)
            if note_in_thread:
                text = build_photo_report_message(incident_id, report.attached, ())
                text += " " + _("(from {name})", name=escape_mrkdwn(actor.name))
                await queue_thread_message(store, incident_id, text)
        await store.commit()
    return report
