"""Checking uploaded photos by what they contain, never by their name or claimed type.

`check_photo` decodes the whole picture (every frame of an animation), so a truncated or
corrupt file is refused before it reaches the blob store. It also refuses files over
`MAX_PHOTO_BYTES` and images whose pixel count would make decoding them exhaust memory
(decompression bombs).

Every accepted photo is re-encoded from its decoded pixels, never stored as it came: a file
can carry more than its picture (location metadata from phones and iPads, HTML or a ZIP
appended after the end marker or hidden in a comment, a second image), and only the pixels
survive a re-encode. The EXIF orientation is applied first, so the picture still stands the
right way up. HEIC/HEIF photos are stored as JPEG: encoding HEIC took 7.5 s of CPU for a 3 MP
photo (tens of seconds for 12 MP) against 0.2 s for JPEG, and few browsers or mail readers
show HEIC. CMYK JPEGs are stored as RGB.

An animated GIF, PNG (APNG) or WebP is decoded frame by frame to its full canvas, so the
pixel limit applies to frames × width × height, checked before any frame is decoded.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
import unicodedata
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from PIL import Image, ImageOps, ImageSequence

from storage.blobs import sha256_hex
from workflows.errors import ValidationError
from workflows.i18n import _

try:
    import pillow_heif
except ImportError:  # pragma: no cover - pillow-heif is a dependency; this keeps HEIC optional
    HEIC_SUPPORTED = False
else:
    pillow_heif.register_heif_opener()
    HEIC_SUPPORTED = True

MAX_PHOTO_BYTES = 5 * 1024 * 1024
# 40 megapixels is well above any phone or tablet camera (12-48 MP sensors save 12 MP photos
# by default) and bounds decoding to roughly 160 MB of memory for an RGBA image.
MAX_PIXELS = 40_000_000
# An animation's frames together: the same memory bound as one still photo. The frame cap
# bounds the per-frame overhead of a file with thousands of tiny frames.
MAX_ANIMATION_PIXELS = MAX_PIXELS
MAX_FRAMES = 300
# 92 keeps a phone photo's detail (they are saved at 85-95) at about its original size.
JPEG_QUALITY = 92
# zlib level 3: a 12 MP screenshot in about 0.35 s, against 0.5 s for Pillow's default 6 and
# about 1.6 times the size; a worst-case (noisy) 12 MP PNG takes 2.7 s instead of 9 s.
PNG_COMPRESS_LEVEL = 3

_MB = 1024 * 1024

# Pillow format name -> (content type, file extension without the dot).
_TYPES: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),  # camera JPEGs with an extra (e.g. depth) picture
    "PNG": ("image/png", "png"),
    "GIF": ("image/gif", "gif"),
    "WEBP": ("image/webp", "webp"),
}
if HEIC_SUPPORTED:
    _TYPES["HEIF"] = ("image/heic", "heic")  # decoded; stored as JPEG (see _SAVE_FORMAT)

# Only these decoders are ever tried, whatever else Pillow could open.
_FORMATS = tuple(f for f in _TYPES if f != "MPO")  # the JPEG decoder yields MPO by itself
# What each decoded format is stored as. An MPO's extra picture (depth map, second view) and
# a HEIF container's other images are dropped: the primary picture is the photo.
_SAVE_FORMAT = {"MPO": "JPEG", "HEIF": "JPEG"}
# Formats whose frames are an animation, kept with every frame.
_ANIMATED = ("GIF", "PNG", "WEBP")

# Image.info keys that carry metadata worth stripping (location, names, serial numbers...).
_METADATA_KEYS = ("exif", "xmp", "XML:com.adobe.xmp", "photoshop", "iptc")
# Image.info keys kept when re-encoding: they change how the picture looks, not who took it.
_KEPT_KEYS = ("icc_profile", "transparency", "background", "loop", "duration", "dpi")

# warnings.catch_warnings() swaps the process-wide filter list while it is active, and two
# threads entering and leaving it out of order could leave its filter installed for good.
# Holding this lock around every use keeps our own checks from interleaving that way.
_PILLOW_LOCK = threading.Lock()


@dataclass(frozen=True)
class CheckedImage:
    """A photo that decoded cleanly; `data` is what to store: re-encoded, metadata removed."""

    data: bytes
    content_type: str
    width: int
    height: int
    sha256: str
    extension: str  # without the dot: "jpg", "png", "gif", "webp"


def supported_formats_text() -> str:
    names = ["JPEG", "PNG", "GIF", "WebP"] + (["HEIC"] if HEIC_SUPPORTED else [])
    return ", ".join(names[:-1]) + _(" or ") + names[-1]


def check_photo(data: bytes, *, filename: str | None = None) -> CheckedImage:
    """Accept `data` if it is a readable JPEG, PNG, GIF, WebP (or HEIC) photo of sane size.

    `filename` is used only to name the file in error messages. Raises ValidationError (field
    "photo") for files over 5 MB, anything that isn't a complete image in a supported format,
    images with more than MAX_PIXELS pixels, and animations with more than MAX_FRAMES frames
    or MAX_ANIMATION_PIXELS pixels in all. CPU-heavy: from async code use `check_photo_async`.
    """
    data = bytes(data)
    name = _display_name(filename)
    if len(data) > MAX_PHOTO_BYTES:
        size_mb = math.ceil(len(data) * 10 / _MB) / 10  # round up: never "5.0 MB" when over
        raise ValidationError(
            _(
                "{name} is {size} MB; photos can be at most {limit} MB.",
                name=name or _("This photo"),
                size=f"{size_mb:.1f}",
                limit=MAX_PHOTO_BYTES // _MB,
            ),
            field="photo",
        )
    if not data:
        raise _unreadable(name)
    with _pillow_guard():
        try:
            with Image.open(io.BytesIO(data), formats=_FORMATS) as probe:
                _check_pixels(probe.size, name)
                probe.verify()
            # verify() leaves the image unusable; decode it again, fully, from the start.
            with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
                fmt = image.format or ""
                animated = fmt in _ANIMATED and _frames(image, name) > 1
                image.load()
                save_format = _SAVE_FORMAT.get(fmt, fmt)
                content_type, extension = _TYPES[save_format]
                data, (width, height) = _reencoded(image, save_format, animated)
        except ValidationError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_many_pixels(name, None) from exc
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "not readable"
            raise _unreadable(name) from exc
    return CheckedImage(
        data=data,
        content_type=content_type,
        width=width,
        height=height,
        sha256=sha256_hex(data),
        extension=extension,
    )


async def check_photo_async(data: bytes, *, filename: str | None = None) -> CheckedImage:
    """`check_photo` in a worker thread, so decoding doesn't stall the event loop."""
    return await asyncio.to_thread(check_photo, data, filename=filename)


# --- helpers ----------------------------------------------------------------------------------


@contextmanager
def _pillow_guard() -> Iterator[None]:
    """Turn Pillow's decompression-bomb warning into an error, for this block only."""
    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _check_pixels(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise _unreadable(name)
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(name, size)


def _frames(image: Image.Image, name: str) -> int:
    """How many frames an animation has, refused before any of them is decoded if too many."""
    frames = getattr(image, "n_frames", 1)  # GIF: walks the blocks without decoding them
    if frames > MAX_FRAMES:
        raise ValidationError(
            _(
                "{name} has {frames} frames; animations can have at most {limit} frames.",
                name=name or _("This image"),
                frames=f"{frames:,}",
                limit=MAX_FRAMES,
            ),
            field="photo",
        )
    if frames * image.width * image.height > MAX_ANIMATION_PIXELS:
        raise ValidationError(
            _(
                "{name} is too large in pixels ({frames} frames of {width} × {height}); an "
                "animation can have at most {limit} megapixels in all its frames together.",
                name=name or _("This image"),
                frames=frames,
                width=f"{image.width:,}",
                height=f"{image.height:,}",
                limit=MAX_ANIMATION_PIXELS // 1_000_000,
            ),
            field="photo",
        )
    return frames


def _clean_copy(frame: Image.Image) -> Image.Image:
    """A copy of the frame's pixels with only the harmless info kept.

    `copy()` builds a new Image, so no EXIF parsed and cached on `frame` travels with it.
    """
    clean = frame.copy()
    clean.info = {k: v for k, v in frame.info.items() if k in _KEPT_KEYS}
    return clean


def _save_options(fmt: str, image: Image.Image) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = JPEG_QUALITY
        if image.info.get("icc_profile"):
            options["icc_profile"] = image.info["icc_profile"]
    if fmt == "PNG":
        options["compress_level"] = PNG_COMPRESS_LEVEL
    return options


def _for_jpeg(image: Image.Image) -> Image.Image:
    """The picture in a mode every viewer shows as a JPEG: grayscale or RGB."""
    if image.mode in ("L", "RGB"):
        return image
    info = image.info
    if image.mode in ("RGBA", "LA", "PA", "P") or "A" in image.getbands():
        # HEIF can carry transparency, which JPEG can't: lay the picture on white.
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
    else:
        flat = image.convert("RGB")
    # A CMYK (or grayscale) colour profile doesn't describe the RGB pixels.
    keep_icc = image.mode in ("RGBA", "RGBX", "P", "PA")
    flat.info = {k: v for k, v in info.items() if k != "icc_profile" or keep_icc}
    return flat


def _reencoded(image: Image.Image, fmt: str, animated: bool) -> tuple[bytes, tuple[int, int]]:
    """The picture saved again in `fmt` with no metadata, and its (width, height).

    Only decoded pixels are written, so nothing else in the file (metadata, comments, bytes
    after the end marker, a hidden second file) reaches the store.
    """
    out = io.BytesIO()
    if animated:
        clean_frames = []
        durations = []
        for frame in ImageSequence.Iterator(image):
            clean_frames.append(_clean_copy(frame))  # loads the frame, which sets its duration
            durations.append(frame.info.get("duration", 100))
        first, *rest = clean_frames
        options = _save_options(fmt, first)
        if "loop" in image.info:  # a GIF without a loop count plays once; keep it that way
            options["loop"] = image.info["loop"]
        first.save(
            out, format=fmt, save_all=True, append_images=rest, duration=durations, **options
        )
        return out.getvalue(), first.size
    clean = _clean_copy(ImageOps.exif_transpose(image))
    if fmt == "JPEG":
        clean = _for_jpeg(clean)
    clean.save(out, format=fmt, **_save_options(fmt, clean))
    return out.getvalue(), clean.size


def _display_name(filename: str | None) -> str:
    """The file's base name, made safe to quote back in a message ("" when there is none)."""
    if not filename:
        return ""
    base = PureWindowsPath(PurePosixPath(filename).name).name
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return base if len(base) <= 80 else base[:77] + "..."


def _unreadable(name: str) -> ValidationError:
    return ValidationError(
        _(
            "{name} isn't a photo DeviceCare can read ({formats}).",
            name=name or _("This file"),
            formats=supported_formats_text(),
        ),
        field="photo",
    )


def _too_many_pixels(name: str, size: tuple[int, int] | None) -> ValidationError:
    shown = name or _("This photo")
    limit = MAX_PIXELS // 1_000_000
    if size is None:
        text = _(
            "{name} is too large in pixels; photos can be at most {limit} megapixels.",
            name=shown,
            limit=limit,
        )
    else:
        text = _(
            "{name} is too large in pixels ({width} × {height} pixels); photos can be at most "
            "{limit} megapixels.",
            name=shown,
            width=f"{size[0]:,}",
            height=f"{size[1]:,}",
            limit=limit,
        )
    return ValidationError(text, field="photo")
