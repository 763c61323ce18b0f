"""The photo line on `/device` and on the incident card: a link per photo.

A photo from Slack links to the file in Slack (its permalink, which keeps working and shows
only to people who can see it there); any other (mail, imports) gets a signed link to
DeviceCare that works for a day (bot.photo_links).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.photo_links import signed_photo_url
from bot.runtime import Runtime
from bot.signing import Keys, signing_keys
from storage.photo_links import PhotoRef, photo_refs
from storage.uow import SqlUnitOfWork
from workflows.i18n import _, ngettext

MAX_PHOTO_LINKS = 10  # the newest ones; a line of links stays readable


def photo_urls(refs: Sequence[PhotoRef], base_url: str, now: datetime, keys: Keys) -> list[str]:
    return [ref.source_url or signed_photo_url(base_url, ref.id, now, keys) for ref in refs]


def photo_line(count: int, urls: Sequence[str]) -> str:
    """ ":camera: 3 photos: <url|1> <url|2> <url|3>", numbered newest first."""
    text = ":camera: " + ngettext("{n} photo", "{n} photos", count)
    if urls:
        links = " ".join(f"<{url}|{n}>" for n, url in enumerate(urls, start=1))
        text += f": {links}"
        if count > len(urls):
            text += " " + _("(the newest {count})", count=len(urls))
    return text


async def load_photo_urls(
    runtime: Runtime,
    store: SqlUnitOfWork,
    *,
    incident_id: int | None = None,
    device_id: int | None = None,
) -> list[str]:
    refs = await photo_refs(
        store, limit=MAX_PHOTO_LINKS, incident_id=incident_id, device_id=device_id
    )
    settings = runtime.settings
    return photo_urls(refs, settings.public_base_url, runtime.clock.now(), signing_keys(settings))
