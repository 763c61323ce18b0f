"""The local blob store: content-addressed keys, atomic writes, keys that can't escape the root."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from storage.blobs import BlobStore, LocalBlobStore, parse_key, sha256_hex

JPEG = b"\xff\xd8\xff\xe0" + b"cracked screen" * 100


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_sha256_hex_is_lowercase_hex_digest() -> None:
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", sha256_hex(b""))


async def test_round_trip(tmp_path: Path) -> None:
    blobs: BlobStore = LocalBlobStore(tmp_path)
    key = await blobs.put(JPEG, "image/jpeg")
    digest = sha256_hex(JPEG)
    assert key == f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    assert await blobs.exists(key)
    assert await blobs.get(key) == JPEG
    assert (tmp_path / key).read_bytes() == JPEG


async def test_accepts_bytes_like_data(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    key = await blobs.put(memoryview(bytearray(JPEG)), "image/jpeg")
    assert await blobs.get(key) == JPEG
    with pytest.raises(TypeError):
        await blobs.put("not bytes", "text/plain")  # type: ignore[arg-type]


async def test_same_bytes_same_key_written_once(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    key = await blobs.put(JPEG, "image/jpeg")
    path = tmp_path / key
    os.utime(path, (1_000_000, 1_000_000))  # a rewrite would move the mtime
    again = await blobs.put(JPEG, "image/png")  # the content type doesn't change the key
    assert again == key
    assert path.stat().st_mtime == 1_000_000
    other = await blobs.put(JPEG + b"!", "image/jpeg")
    assert other != key
    # Two blobs, and no temporary files left behind.
    assert _files(tmp_path) == sorted([path, tmp_path / other])


async def test_write_is_atomic_and_cleans_up_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = LocalBlobStore(tmp_path)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        await blobs.put(JPEG, "image/jpeg")
    assert _files(tmp_path) == []  # neither a partial blob nor a stray temp file
    monkeypatch.undo()
    key = await blobs.put(JPEG, "image/jpeg")
    assert await blobs.get(key) == JPEG


async def test_empty_blob_round_trips(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    key = await blobs.put(b"", "application/octet-stream")
    assert await blobs.get(key) == b""


async def test_missing_key_raises_file_not_found(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    key = "sha256/ab/cd/abcd" + "0" * 60
    assert not await blobs.exists(key)
    with pytest.raises(FileNotFoundError):
        await blobs.get(key)


GOOD = sha256_hex(b"x")
BAD_KEYS = [
    "",
    "../etc/passwd",
    "/etc/passwd",
    f"/sha256/{GOOD[:2]}/{GOOD[2:4]}/{GOOD}",
    f"sha256/{GOOD[:2]}/{GOOD[2:4]}/../../../../etc/passwd",
    f"sha256/../{GOOD[2:4]}/{GOOD}",
    f"sha256/{GOOD[:2]}/{GOOD[2:4]}/{GOOD}/..",
    f"sha256\\{GOOD[:2]}\\{GOOD[2:4]}\\{GOOD}",
    f"sha256/{GOOD[:2]}/{GOOD[2:4]}/{GOOD.upper()}",
    f"sha256/{GOOD[:2]}/{GOOD[2:4]}/{GOOD[:-1]}",
    f"sha256/{GOOD[:2]}/{GOOD[2:4]}/{GOOD}\n",
    f"sha256/{GOOD[:2]}/{GOOD[2:4]}/{GOOD}\x00",
    f"sha256/{GOOD[:2]}/{GOOD[2:4]}/{GOOD}/",
    f"sha256//{GOOD[:2]}/{GOOD[2:4]}/{GOOD}",
    f"md5/{GOOD[:2]}/{GOOD[2:4]}/{GOOD}",
    f"sha256/{GOOD[2:4]}/{GOOD[:2]}/{GOOD}",  # folders that don't match the digest
    GOOD,
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_crafted_keys_are_refused(tmp_path: Path, key: str) -> None:
    root = tmp_path / "blobs"
    blobs = LocalBlobStore(root)
    (tmp_path / "passwd").write_bytes(b"secret")
    with pytest.raises(ValueError):
        await blobs.get(key)
    with pytest.raises(ValueError):
        await blobs.exists(key)
    with pytest.raises(ValueError):
        parse_key(key)


async def test_non_string_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        await LocalBlobStore(tmp_path).get(b"sha256/aa/bb/cc")  # type: ignore[arg-type]


async def test_relative_root_is_pinned_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    blobs = LocalBlobStore(Path("data/blobs"))
    key = await blobs.put(JPEG, "image/jpeg")
    monkeypatch.chdir("/")
    assert await blobs.get(key) == JPEG
    assert (tmp_path / "data" / "blobs" / key).is_file()
