"""Checking uploaded photos by what they contain, never by their name or claimed type.

`check_photo` decodes the whole first frame, so a truncated or corrupt file is refused before
it reaches the blob store. It also refuses files over `MAX_PHOTO_BYTES` and images whose pixel
count would make decoding them exhaust memory (decompression bombs).

Photos of students' devices are often taken on phones and iPads that record where they were
taken. When a photo carries EXIF, XMP or IPTC metadata it is re-encoded without it (after
applying the EXIF orientation, so the picture still stands the right way up); otherwise the
original bytes are kept untouched.
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

from PIL import Image, ImageFile, ImageOps, ImageSequence

from storage.blobs import sha256_hex
from workflows.errors import ValidationError

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
JPEG_QUALITY = 92

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
    _TYPES["HEIF"] = ("image/heic", "heic")

# Only these decoders are ever tried, whatever else Pillow could open.
_FORMATS = tuple(f for f in _TYPES if f != "MPO")  # the JPEG decoder yields MPO by itself
_SAVE_FORMAT = {"MPO": "JPEG"}

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
    """A photo that decoded cleanly; `data` is what to store (metadata already removed)."""

    data: bytes
    content_type: str
    width: int
    height: int
    sha256: str
    extension: str  # without the dot: "jpg", "png", "gif", "webp", "heic"


def supported_formats_text() -> str:
    names = ["JPEG", "PNG", "GIF", "WebP"] + (["HEIC"] if HEIC_SUPPORTED else [])
    return ", ".join(names[:-1]) + " or " + names[-1]


def check_photo(data: bytes, *, filename: str | None = None) -> CheckedImage:
    """Accept `data` if it is a readable JPEG, PNG, GIF, WebP (or HEIC) photo of sane size.

    `filename` is used only to name the file in error messages. Raises ValidationError (field
    "photo") for files over 5 MB, anything that isn't a complete image in a supported format,
    and images with more than MAX_PIXELS pixels. CPU-heavy: from async code use
    `check_photo_async`.
    """
    data = bytes(data)
    name = _display_name(filename)
    if len(data) > MAX_PHOTO_BYTES:
        size_mb = math.ceil(len(data) * 10 / _MB) / 10  # round up: never "5.0 MB" when over
        raise ValidationError(
            f"{name or 'This photo'} is {size_mb:.1f} MB; "
            f"photos can be at most {MAX_PHOTO_BYTES // _MB} MB.",
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
                image.load()
                fmt = image.format or ""
                content_type, extension = _content_type(image, fmt)
                if _has_metadata(image):
                    data, (width, height) = _reencoded(image, _SAVE_FORMAT.get(fmt, fmt), name)
                else:
                    width, height = image.size
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


def _content_type(image: Image.Image, fmt: str) -> tuple[str, str]:
    content_type, extension = _TYPES[fmt]
    if (
        fmt == "HEIF"
        and isinstance(image, ImageFile.ImageFile)
        and image.get_format_mimetype() == "image/heif"
    ):
        content_type, extension = "image/heif", "heif"
    return content_type, extension


def _has_metadata(image: Image.Image) -> bool:
    if any(image.info.get(key) for key in _METADATA_KEYS):
        return True
    if any(str(key).startswith("Raw profile type") for key in image.info):
        return True  # EXIF/IPTC/XMP that ImageMagick writes into PNG text chunks
    return len(image.getexif()) > 0


def _clean_copy(frame: Image.Image) -> Image.Image:
    """A copy of the frame's pixels with only the harmless info kept.

    `copy()` builds a new Image, so no EXIF parsed and cached on `frame` travels with it.
    """
    clean = frame.copy()
    clean.info = {k: v for k, v in frame.info.items() if k in _KEPT_KEYS}
    return clean


def _save_options(fmt: str, image: Image.Image) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if fmt in ("JPEG", "WEBP", "HEIF"):
        options["quality"] = JPEG_QUALITY
    if fmt in ("JPEG", "WEBP") and image.info.get("icc_profile"):
        options["icc_profile"] = image.info["icc_profile"]
    return options


def _reencoded(image: Image.Image, fmt: str, name: str) -> tuple[bytes, tuple[int, int]]:
    """The picture saved again in `fmt` with no metadata, and its (width, height)."""
    out = io.BytesIO()
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        # Every frame is decoded to the full canvas; bound the total, not just one frame.
        if frames * image.width * image.height > MAX_PIXELS:
            raise _too_many_pixels(name, image.size)
        clean_frames = []
        durations = []
        for frame in ImageSequence.Iterator(image):
            clean_frames.append(_clean_copy(frame))  # loads the frame, which sets its duration
            durations.append(frame.info.get("duration", 100))
        first, *rest = clean_frames
        first.save(
            out,
            format=fmt,
            save_all=True,
            append_images=rest,
            duration=durations,
            loop=image.info.get("loop", 0),
            **_save_options(fmt, first),
        )
        return out.getvalue(), first.size
    upright = ImageOps.exif_transpose(image)
    clean = _clean_copy(upright)
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
        f"{name or 'This file'} isn't a photo DeviceCare can read ({supported_formats_text()}).",
        field="photo",
    )


def _too_many_pixels(name: str, size: tuple[int, int] | None) -> ValidationError:
    dims = f" ({size[0]:,} × {size[1]:,} pixels)" if size else ""
    return ValidationError(
        f"{name or 'This photo'} is too large in pixels{dims}; photos can be at most "
        f"{MAX_PIXELS // 1_000_000} megapixels.",
        field="photo",
    )
