"""`/photos/<token>`: a stored photo for staff, behind a signed short-lived link.

The bytes served are the ones stored: every photo was checked and re-encoded on the way in
(storage.images), so nothing a sender put in the file reaches a browser. A bad link gets a
short page saying what happened and what to do, never a traceback.
"""

from __future__ import annotations

import logging
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from bot.photo_links import PhotoLinkProblem, read_photo_token
from bot.runtime import Runtime
from bot.signing import signing_keys
from storage.lookups import get_photo
from workflows.i18n import N_, _, staff_language

log = logging.getLogger("devicecare.web")

_HEADERS = {
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; frame-ancestors 'none'",
}

_PROBLEMS = {
    "expired": (
        403,
        N_("This photo link has expired"),
        N_(
            "Photo links work for a day. Open the incident card or run /device again in Slack "
            "for a fresh link."
        ),
    ),
    "invalid": (
        404,
        N_("This photo link doesn't work"),
        N_(
            "The link is incomplete or was changed. Open the incident card or run /device again "
            "in Slack for a working link."
        ),
    ),
    "missing": (
        404,
        N_("This photo isn't here any more"),
        N_("It may have been removed, for example when a family's data was erased."),
    ),
}


def problem_page(kind: str) -> HTMLResponse:
    # A staff page: in the staff language.
    status, title, detail = _PROBLEMS[kind]
    title, detail = _(title), _(detail)
    html = (
        f'<!doctype html><html lang="{staff_language()}"><head><meta charset="utf-8">'
        f"<title>{escape(title, quote=False)}</title></head><body>"
        f"<h1>{escape(title, quote=False)}</h1><p>{escape(detail, quote=False)}</p></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def routes(runtime: Runtime) -> list[BaseRoute]:
    async def photo_file(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            link = read_photo_token(token, signing_keys(runtime.settings), runtime.clock.now())
        except PhotoLinkProblem as problem:
            return problem_page(problem.kind)
        async with runtime.reads() as store:
            photo = await get_photo(store, link.photo_id)
        if photo is None or not photo.content_type.startswith("image/"):
            return problem_page("missing")
        try:
            data = await runtime.blobs.get(photo.blob_key)
        except (FileNotFoundError, ValueError):
            log.warning("photo #%s has no readable blob", photo.id)
            return problem_page("missing")
        return Response(data, media_type=photo.content_type, headers=_HEADERS)

    return [Route("/photos/{token}", photo_file, methods=["GET"])]
