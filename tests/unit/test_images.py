"""Photo checks: judged by content, size and pixel limits, and location metadata removed."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zlib

import pytest
from PIL import Image, ImageSequence

from storage.images import (
    HEIC_SUPPORTED,
    MAX_ANIMATION_PIXELS,
    MAX_PHOTO_BYTES,
    MAX_PIXELS,
    check_photo,
    check_photo_async,
)
from tests.hostile_images import Hostile, assert_stored_clean, corpus
from workflows.errors import ValidationError

GPS_IFD = 0x8825
ORIENTATION = 0x0112
needs_heic = pytest.mark.skipif(not HEIC_SUPPORTED, reason="pillow-heif isn't installed")

FORMATS = [
    ("JPEG", "image/jpeg", "jpg"),
    ("PNG", "image/png", "png"),
    ("GIF", "image/gif", "gif"),
    ("WEBP", "image/webp", "webp"),
    # HEIC is stored as JPEG: encoding HEIC is far too slow, and few viewers show it.
    pytest.param("HEIF", "image/jpeg", "jpg", marks=needs_heic),
]
STORED_AS = {"HEIF": "JPEG"}


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def noise(width: int, height: int) -> Image.Image:
    return Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))


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


def bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG, built by hand so no huge image is ever held in memory."""
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def assert_refused(data: bytes, filename: str | None, *fragments: str) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        check_photo(data, filename=filename)
    assert err.value.field == "photo"
    for fragment in fragments:
        assert fragment in err.value.message
    return err.value


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "content_type", "extension"), FORMATS)
def test_supported_formats_are_accepted_and_re_encoded(
    fmt: str, content_type: str, extension: str
) -> None:
    data = encode(Image.new("RGB", (64, 48), "orange"), fmt)
    # The name says PNG; the content decides.
    checked = check_photo(data, filename="upload.png")
    assert (checked.content_type, checked.extension) == (content_type, extension)
    assert (checked.width, checked.height) == (64, 48)
    assert checked.sha256 == hashlib.sha256(checked.data).hexdigest()
    stored = Image.open(io.BytesIO(checked.data))
    assert stored.format == STORED_AS.get(fmt, fmt) and stored.size == (64, 48)
    red, green, blue = stored.convert("RGB").getpixel((32, 24))  # type: ignore[misc]
    assert abs(red - 255) < 8 and abs(green - 165) < 8 and blue < 8  # still orange


def test_an_animated_gif_keeps_its_frames() -> None:
    frames = [Image.new("RGB", (40, 30), c).convert("P") for c in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    checked = check_photo(data)
    assert (checked.content_type, checked.width) == ("image/gif", 40)
    stored = Image.open(io.BytesIO(checked.data))
    assert getattr(stored, "n_frames", 1) == 3 and stored.info["loop"] == 0

    once = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80)
    assert "loop" not in Image.open(io.BytesIO(check_photo(once).data)).info  # still plays once


def test_camera_mpo_is_stored_as_its_primary_jpeg() -> None:
    frames = [Image.new("RGB", (32, 24), c) for c in ("red", "blue")]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    checked = check_photo(data)
    assert (checked.content_type, checked.extension) == ("image/jpeg", "jpg")
    stored = Image.open(io.BytesIO(checked.data))
    assert stored.format == "JPEG" and getattr(stored, "n_frames", 1) == 1


def test_a_photo_of_exactly_the_limit_is_accepted_without_its_padding() -> None:
    # Bytes after a PNG's end chunk are ignored by decoders, so padding keeps it valid.
    plain = encode(Image.new("RGB", (8, 8), "green"), "PNG")
    data = plain + b"\x00" * (MAX_PHOTO_BYTES - len(plain))
    checked = check_photo(data)
    assert checked.width == 8 and len(checked.data) < 1_000


async def test_the_async_variant_gives_the_same_answer() -> None:
    data = encode(Image.new("RGB", (10, 20), "white"), "PNG")
    assert await check_photo_async(data, filename="a.png") == check_photo(data)
    with pytest.raises(ValidationError):
        await check_photo_async(b"not a photo", filename="a.png")


# --- refused ----------------------------------------------------------------------------------


def test_a_text_file_named_jpg_is_refused() -> None:
    error = assert_refused(b"cracked screen, left hinge loose\n" * 40, "photo.jpg", "photo.jpg")
    assert error.message == (
        "photo.jpg isn't a photo DeviceCare can read "
        + ("(JPEG, PNG, GIF, WebP or HEIC)." if HEIC_SUPPORTED else "(JPEG, PNG, GIF or WebP).")
    )


def test_a_slack_sign_in_page_is_refused() -> None:
    # What a photo URL returns when the bot's token can't see the file.
    page = (
        b'<!DOCTYPE html>\n<html lang="en-US"><head><meta charset="utf-8">'
        b'<title>Sign in | Slack</title></head><body><form action="/signin">'
        b'<input type="email" name="email"></form></body></html>\n'
    )
    assert_refused(page, "IMG_0042.jpeg", "IMG_0042.jpeg isn't a photo")


def test_empty_data_is_refused() -> None:
    assert_refused(b"", None, "This file isn't a photo")


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_a_truncated_jpeg_is_refused(keep: float) -> None:
    data = encode(noise(320, 240), "JPEG", quality=90)
    assert_refused(data[: int(len(data) * keep)], "photo.jpg", "isn't a photo")


def test_a_corrupt_png_is_refused() -> None:
    data = bytearray(encode(noise(64, 64), "PNG"))
    data[60:80] = b"\xa5" * 20  # inside the compressed pixels: the checksum no longer matches
    assert_refused(bytes(data), "screen.png", "isn't a photo")


def test_an_unsupported_format_is_refused_even_if_pillow_reads_it() -> None:
    assert_refused(encode(Image.new("RGB", (16, 16)), "BMP"), "photo.bmp", "isn't a photo")
    assert_refused(encode(Image.new("RGB", (16, 16)), "TIFF"), "photo.tif", "isn't a photo")


def test_more_than_five_megabytes_is_refused_with_the_size() -> None:
    data = b"\xff\xd8\xff\xe0" + b"\x00" * (int(7.2 * 1024 * 1024) - 4)
    error = assert_refused(data, "photo.jpg")
    assert error.message == "photo.jpg is 7.2 MB; photos can be at most 5 MB."


def test_one_byte_over_the_limit_never_reads_as_five_megabytes() -> None:
    error = assert_refused(b"\x00" * (MAX_PHOTO_BYTES + 1), None)
    assert error.message == "This photo is 5.1 MB; photos can be at most 5 MB."


@pytest.mark.parametrize(
    ("side", "why"),
    [
        (20_000, "past Pillow's hard limit: DecompressionBombError"),
        (10_000, "past Pillow's warning limit: DecompressionBombWarning"),
        (7_000, "under Pillow's limits, over ours"),
    ],
)
def test_decompression_bombs_are_refused(side: int, why: str) -> None:
    data = bilevel_png(side, side)
    assert len(data) < 100_000 and side * side > MAX_PIXELS, why
    filters_before = list(warnings.filters)
    assert_refused(data, "bomb.png", "bomb.png is too large in pixels", "40 megapixels")
    assert warnings.filters == filters_before  # the warning became an error only locally


def test_a_large_but_sane_image_is_accepted() -> None:
    assert check_photo(bilevel_png(6_000, 6_000)).width == 6_000


def test_the_file_name_in_messages_is_only_the_base_name() -> None:
    assert_refused(b"nope", "C:\\Users\\student\\Desktop\\crack.jpg", "crack.jpg isn't")
    assert_refused(b"nope", "../../etc/crack\x00\n.jpg", "crack.jpg isn't")


# --- metadata ---------------------------------------------------------------------------------


def test_gps_exif_is_removed_and_orientation_applied() -> None:
    # Stored sideways: red on the left, blue on the right; orientation 6 says "turn 90° right".
    sideways = Image.new("RGB", (60, 40), "blue")
    sideways.paste("red", (0, 0, 30, 40))
    data = encode(sideways, "JPEG", quality=95, exif=gps_exif(orientation=6))
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)

    checked = check_photo(data, filename="IMG_0042.jpg")

    assert checked.data != data
    assert checked.sha256 == hashlib.sha256(checked.data).hexdigest()
    assert (checked.content_type, checked.extension) == ("image/jpeg", "jpg")
    upright = Image.open(io.BytesIO(checked.data))
    assert upright.format == "JPEG"
    assert "exif" not in upright.info and len(upright.getexif()) == 0
    assert (checked.width, checked.height) == upright.size == (40, 60)
    top, bottom = upright.getpixel((20, 5)), upright.getpixel((20, 55))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60, "the left edge should now be on top"
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", pytest.param("HEIF", marks=needs_heic)])
def test_gps_exif_is_removed_in_other_formats_too(fmt: str) -> None:
    data = encode(Image.new("RGB", (30, 20), "teal"), fmt, exif=gps_exif())
    checked = check_photo(data)
    assert checked.data != data
    cleaned = Image.open(io.BytesIO(checked.data))
    cleaned.load()
    assert cleaned.format == STORED_AS.get(fmt, fmt)
    assert len(cleaned.getexif()) == 0 and not cleaned.info.get("exif")
    assert cleaned.size == (checked.width, checked.height) == (30, 20)


def test_xmp_in_a_jpeg_is_removed() -> None:
    plain = encode(Image.new("RGB", (24, 24), "gray"), "JPEG")
    xmp = (
        b"http://ns.adobe.com/xap/1.0/\x00"
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="41,52.5N"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    app1 = b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp
    data = plain[:2] + app1 + plain[2:]
    assert Image.open(io.BytesIO(data)).info.get("xmp")
    checked = check_photo(data)
    assert b"GPSLatitude" not in checked.data
    assert not Image.open(io.BytesIO(checked.data)).info.get("xmp")


def test_an_animated_webp_with_exif_keeps_its_frames() -> None:
    frames = [Image.new("RGB", (50, 30), c) for c in ("red", "green", "blue")]
    data = encode(
        frames[0],
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=[100, 200, 300],
        loop=0,
        exif=gps_exif(),
    )
    checked = check_photo(data)
    cleaned = Image.open(io.BytesIO(checked.data))
    assert len(cleaned.getexif()) == 0
    durations = []
    for frame in ImageSequence.Iterator(cleaned):
        frame.load()
        durations.append(frame.info["duration"])
    assert durations == [100, 200, 300]


# --- the hostile corpus -----------------------------------------------------------------------


@pytest.mark.parametrize("entry", corpus(), ids=lambda e: e.filename)
def test_each_hostile_file_is_refused_or_stored_clean(entry: Hostile) -> None:
    if entry.refused_with is not None:
        error = assert_refused(entry.data, entry.filename, entry.refused_with)
        assert error.message.startswith(entry.filename), "the message names the file"
        return
    checked = check_photo(entry.data, filename=entry.filename)
    assert checked.content_type == entry.stored_type, entry.why
    assert (checked.width, checked.height) == entry.stored_size
    assert checked.sha256 == hashlib.sha256(checked.data).hexdigest()
    assert_stored_clean(checked.data, checked.content_type, entry)


def test_the_issue_animation_is_refused_before_its_frames_are_decoded() -> None:
    # 60 frames of 1 MP: each frame is under the 40 MP limit, the animation is not.
    [entry] = [e for e in corpus() if e.filename == "frames.gif"]
    frames = Image.open(io.BytesIO(entry.data))
    assert getattr(frames, "n_frames", 1) == 60 and frames.size == (1000, 1000)
    assert MAX_ANIMATION_PIXELS < 60 * 1_000_000
    assert_refused(entry.data, "frames.gif", "60 frames of 1,000 × 1,000", "40 megapixels")


def test_a_sideways_photo_is_stored_upright_without_gps() -> None:
    [entry] = [e for e in corpus() if e.filename == "sideways.jpg"]
    assert Image.open(io.BytesIO(entry.data)).getexif().get_ifd(GPS_IFD)
    upright = Image.open(io.BytesIO(check_photo(entry.data).data))
    top, bottom = upright.getpixel((100, 10)), upright.getpixel((100, 290))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60, "the left edge is now on top"
    assert bottom[2] > 200 and bottom[0] < 60


def test_a_cmyk_jpeg_keeps_its_colour_as_rgb() -> None:
    [entry] = [e for e in corpus() if e.filename == "cmyk.jpg"]
    stored = Image.open(io.BytesIO(check_photo(entry.data).data))
    red, green, blue = stored.getpixel((120, 100))  # type: ignore[misc]
    assert red > 230 and green < 90 and blue < 90  # 0% cyan, 78% magenta and yellow: red
