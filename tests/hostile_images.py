"""A corpus of hostile and awkward image files, built deterministically with Pillow.

Each entry says what photo intake must do with it: refuse it with a message naming the file
(and store nothing), or store it clean (re-encoded, nothing after its end marker, no metadata,
orientation applied). The unit tests run it through `check_photo`; the Slack tests run it
through a real upload in an incident card's thread.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from storage.images import HEIC_SUPPORTED, MAX_PHOTO_BYTES

GPS_IFD = 0x8825
ORIENTATION = 0x0112

# What no stored file may contain: the payloads hidden in the corpus, and GPS/maker metadata.
PAYLOAD_MARKERS = (b"PK\x03\x04", b"<html", b"<script", b"<svg", b"Apple")


@dataclass(frozen=True)
class Hostile:
    filename: str
    data: bytes
    refused_with: str | None = None  # a fragment of the refusal; None: stored clean
    stored_type: str | None = None  # the content type it must be stored as
    stored_size: tuple[int, int] | None = None  # (width, height) after orientation
    frames: int = 1
    why: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def noise(width: int, height: int, seed: int = 7) -> Image.Image:
    return Image.frombytes(
        "RGB", (width, height), random.Random(seed).randbytes(width * height * 3)
    )


def gps_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2] = "N", (41.0, 52.0, 30.0)
    gps[3], gps[4] = "W", (87.0, 37.0, 12.0)
    return exif


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade_png(width: int, height: int, depth: int, colour: int, row: bytes) -> bytes:
    """A PNG whose every row is `row`, built by hand so no huge image is held in memory."""
    packer = zlib.compressobj(9)
    line = b"\x00" + row  # filter type 0
    pixels = b"".join(packer.compress(line) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size, a few kilobytes on disk."""
    return handmade_png(width, height, 1, 0, b"\x00" * ((width + 7) // 8))


def animation(fmt: str, count: int, size: tuple[int, int], **options: object) -> bytes:
    """`count` frames on a flat canvas, each moving one small square: a few kilobytes on disk
    (encoders store only what changed), but every frame decodes to the whole canvas."""
    frames = []
    for i in range(count):
        if fmt == "GIF":  # palette frames made directly: quantizing 1 MP frames is slow
            frame = Image.new("P", size, 0)
            frame.putpalette([255, 0, 0, 0, 0, 255])
            square: int | str = 1
        else:
            frame, square = Image.new("RGB", size, "red"), "blue"
        x, y = (i * 8) % (size[0] - 8), (i * 8 // (size[0] - 8) * 8) % (size[1] - 8)
        frame.paste(square, (x, y, x + 8, y + 8))
        frames.append(frame)
    return encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, **options
    )


def most_frames_in_five_mb() -> bytes:
    """A 1×1 GIF whose one image block is repeated to fill 5 MB: about 300,000 frames."""
    single = encode(Image.new("P", (1, 1), 0), "GIF")
    start = single.index(b",")  # the image descriptor; what comes before is the header
    header, block = single[:start], single[start:-1]  # the last byte is the trailer ";"
    count = (MAX_PHOTO_BYTES - len(header) - 1) // len(block)
    return header + block * count + b";"


def a_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("index.html", "<html><script>alert(document.cookie)</script></html>")
    return out.getvalue()


HTML = b"<html><body><script>fetch('/slack/events')</script></body></html>\n"


def photo(fmt: str = "JPEG", size: tuple[int, int] = (320, 240), **options: object) -> bytes:
    return encode(noise(*size), fmt, **options)


def sideways_jpeg() -> bytes:
    # Red on the left, blue on the right; orientation 6 says "turn 90° clockwise to view".
    image = Image.new("RGB", (300, 200), "blue")
    image.paste("red", (0, 0, 150, 200))
    return encode(image, "JPEG", quality=95, exif=gps_exif(orientation=6))


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (240, 200), (0, 200, 200, 0)), "JPEG", quality=90)


def png_16bit_rgb(width: int = 64, height: int = 48) -> bytes:
    return handmade_png(width, height, 16, 2, b"\xff\x00\x80\x00\x10\x00" * width)


def png_16bit_gray() -> bytes:
    return encode(Image.new("I;16", (64, 48), 40_000), "PNG")


def truncated(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def svg() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="400" '
        b'height="300"><script>alert(1)</script><rect width="400" height="300" fill="red"/>'
        b"</svg>\n"
    )


def heic_with_gps() -> bytes:
    return encode(noise(256, 192), "HEIF", quality=80, exif=gps_exif())


UNREADABLE = "isn't a photo DeviceCare can read"
TOO_MANY_PIXELS = "too large in pixels"


@functools.cache
def corpus() -> list[Hostile]:
    """Every hostile file, each with a unique file name; the same bytes on every run."""
    jpeg = photo("JPEG")
    png = photo("PNG", (200, 150))
    gif = encode(noise(200, 150).convert("P"), "GIF")
    builders: list[Callable[[], Hostile]] = [
        # --- decompression bombs ---
        lambda: Hostile(
            "bomb.png",
            bilevel_png(10_000, 10_000),
            TOO_MANY_PIXELS,
            why="100 MP in a few kilobytes",
        ),
        lambda: Hostile(
            "huge-bomb.png",
            bilevel_png(20_000, 20_000),
            TOO_MANY_PIXELS,
            why="past Pillow's own hard limit",
        ),
        lambda: Hostile(
            "frames.gif",
            animation("GIF", 60, (1000, 1000)),
            TOO_MANY_PIXELS,
            why="60 frames of 1 MP: 60 MP once decoded, each frame under the limit",
        ),
        lambda: Hostile(
            "frames.png",
            animation("PNG", 45, (1000, 1000)),
            TOO_MANY_PIXELS,
            why="an APNG of 45 frames of 1 MP",
        ),
        lambda: Hostile(
            "frames.webp",
            animation("WEBP", 45, (1000, 1000)),
            TOO_MANY_PIXELS,
            why="an animated WebP of 45 frames of 1 MP",
        ),
        lambda: Hostile(
            "flicker.gif",
            animation("GIF", 400, (32, 32)),
            "at most 300 frames",
            why="hundreds of tiny frames",
        ),
        lambda: Hostile(
            "stutter.gif",
            most_frames_in_five_mb(),
            "at most 300 frames",
            why="300,000 frames of 1 pixel, counted without decoding them",
        ),
        # --- polyglots: a valid picture with something else in the same file ---
        lambda: Hostile(
            "receipt.jpg",
            jpeg + a_zip(),
            stored_type="image/jpeg",
            stored_size=(320, 240),
            why="JPEG+ZIP",
        ),
        lambda: Hostile(
            "screen.jpg",
            jpeg + HTML,
            stored_type="image/jpeg",
            stored_size=(320, 240),
            why="JPEG+HTML after the end marker",
        ),
        lambda: Hostile(
            "comment.jpg",
            photo("JPEG", comment=HTML),
            stored_type="image/jpeg",
            stored_size=(320, 240),
            why="HTML in a JPEG comment segment",
        ),
        lambda: Hostile(
            "hinge.png",
            png + a_zip(),
            stored_type="image/png",
            stored_size=(200, 150),
            why="PNG+ZIP",
        ),
        lambda: Hostile(
            "keys.gif",
            gif + HTML,
            stored_type="image/gif",
            stored_size=(200, 150),
            why="GIF+HTML after the trailer",
        ),
        # --- truncated ---
        lambda: Hostile("cut.jpg", truncated(jpeg, 0.6), UNREADABLE, why="a JPEG cut short"),
        lambda: Hostile("cut.png", truncated(png, 0.6), UNREADABLE, why="a PNG cut short"),
        lambda: Hostile(
            "cut.gif",
            truncated(animation("GIF", 3, (64, 64)), 0.7),
            UNREADABLE,
            why="an animated GIF cut in its last frame",
        ),
        lambda: Hostile("header-only.jpg", jpeg[:200], UNREADABLE, why="only the headers"),
        # --- not a photo, whatever the name says ---
        lambda: Hostile("drawing.svg", svg(), UNREADABLE, why="SVG can carry script"),
        lambda: Hostile("vector.jpg", svg(), UNREADABLE, why="SVG named .jpg"),
        lambda: Hostile("page.png", HTML, UNREADABLE, why="HTML named .png"),
        lambda: Hostile(
            "scan.bmp",
            encode(Image.new("RGB", (64, 64)), "BMP"),
            UNREADABLE,
            why="a format we don't take",
        ),
        lambda: Hostile(
            "scan.tif",
            encode(Image.new("RGB", (64, 64)), "TIFF"),
            UNREADABLE,
            why="a format we don't take",
        ),
        lambda: Hostile("zero.png", handmade_png(0, 10, 8, 0, b""), UNREADABLE, why="zero width"),
        lambda: Hostile("empty.jpg", b"", UNREADABLE, why="an empty file"),
        # --- awkward but genuine ---
        lambda: Hostile(
            "really-a-png.jpg",
            png,
            stored_type="image/png",
            stored_size=(200, 150),
            why="wrong extension: the content decides",
        ),
        lambda: Hostile(
            "really-a-jpeg.gif",
            jpeg,
            stored_type="image/jpeg",
            stored_size=(320, 240),
            why="wrong extension: the content decides",
        ),
        lambda: Hostile(
            "cmyk.jpg",
            cmyk_jpeg(),
            stored_type="image/jpeg",
            stored_size=(240, 200),
            why="CMYK, stored as RGB",
        ),
        lambda: Hostile(
            "deep.png",
            png_16bit_rgb(),
            stored_type="image/png",
            stored_size=(64, 48),
            why="16-bit RGB PNG",
        ),
        lambda: Hostile(
            "deep-gray.png",
            png_16bit_gray(),
            stored_type="image/png",
            stored_size=(64, 48),
            why="16-bit grayscale PNG",
        ),
        lambda: Hostile(
            "sideways.jpg",
            sideways_jpeg(),
            stored_type="image/jpeg",
            stored_size=(200, 300),
            why="EXIF orientation and GPS",
        ),
        lambda: Hostile(
            "small-anim.gif",
            animation("GIF", 3, (120, 90)),
            stored_type="image/gif",
            stored_size=(120, 90),
            frames=3,
            why="a sane animation keeps its frames",
        ),
        lambda: Hostile(
            "small-anim.webp",
            animation("WEBP", 3, (120, 90)),
            stored_type="image/webp",
            stored_size=(120, 90),
            frames=3,
            why="a sane animated WebP keeps its frames",
        ),
    ]
    if HEIC_SUPPORTED:
        builders.append(
            lambda: Hostile(
                "IMG_0042.heic",
                heic_with_gps(),
                stored_type="image/jpeg",
                stored_size=(256, 192),
                why="HEIC with GPS, stored as JPEG",
            )
        )
    entries = [build() for build in builders]
    assert len({e.filename for e in entries}) == len(entries)
    return entries


def ends_at_end_marker(data: bytes, content_type: str) -> bool:
    """Whether the file stops where its format says it ends: nothing trails the picture."""
    if content_type == "image/jpeg":
        return data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")
    if content_type == "image/png":
        return data.endswith(png_chunk(b"IEND", b""))
    if content_type == "image/gif":
        return data.endswith(b";")
    if content_type == "image/webp":
        return data[:4] == b"RIFF" and struct.unpack("<I", data[4:8])[0] + 8 == len(data)
    return False


def assert_stored_clean(data: bytes, content_type: str, entry: Hostile) -> None:
    """Re-encoded: nothing after the end marker, no payload, no metadata, the right shape."""
    assert ends_at_end_marker(data, content_type), entry.why
    assert not [m for m in PAYLOAD_MARKERS if m in data], entry.why
    stored = Image.open(io.BytesIO(data))
    stored.load()
    assert len(stored.getexif()) == 0 and not stored.info.get("exif"), entry.why
    assert not stored.info.get("xmp") and not stored.info.get("comment"), entry.why
    assert stored.size == entry.stored_size, entry.why
    assert getattr(stored, "n_frames", 1) == entry.frames, entry.why
    if content_type == "image/jpeg":
        assert stored.mode in ("L", "RGB"), "stored JPEGs are grayscale or RGB, never CMYK"
