"""Where photo bytes live. The database keeps only the key, size and checksum of each blob.

Keys are content addressed (`sha256/ab/cd/<64 hex>`), so storing the same bytes twice gives
the same key and writes the file once. A key read back from the database or from a request is
checked against that exact shape before it touches the file system, so no key can point
outside the store's root.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

KEY_PREFIX = "sha256"
_KEY_RE = re.compile(r"sha256/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def key_for(digest: str) -> str:
    """The blob key for a lowercase hex SHA-256 digest."""
    return f"{KEY_PREFIX}/{digest[:2]}/{digest[2:4]}/{digest}"


def parse_key(key: str) -> tuple[str, str, str]:
    """Split a key into its two folder levels and digest; ValueError unless well formed."""
    if not isinstance(key, str):
        raise ValueError("A blob key must be a string.")
    match = _KEY_RE.fullmatch(key)
    if match is None:
        raise ValueError(f"Not a valid blob key: {key[:80]!r}")
    first, second, digest = match.groups()
    if digest[:2] != first or digest[2:4] != second:
        raise ValueError(f"Blob key folders don't match its digest: {key[:80]!r}")
    return first, second, digest


class BlobStore(Protocol):
    async def put(self, data: bytes, content_type: str) -> str:
        """Store `data` and return its key; the same bytes always give the same key."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under `key`; FileNotFoundError when there are none."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the bytes under `key` (erasing personal data); no error when already gone."""
        ...


class LocalBlobStore:
    """Blobs as files under `root`, written atomically and never rewritten.

    Files are created readable by the owner only (mode 0600): they are photos of students'
    devices and only the service itself needs to read them. The content type isn't kept;
    callers store it with the photo's row.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def path_for(self, key: str) -> Path:
        """The file a key maps to (whether or not it exists); ValueError for a bad key."""
        first, second, digest = parse_key(key)
        path = self.root / KEY_PREFIX / first / second / digest
        # The key shape already rules out traversal; this guards against future edits. It is
        # checked lexically so an operator may still symlink folders to another disk.
        if not Path(os.path.normpath(path)).is_relative_to(self.root):
            raise ValueError(f"Blob key escapes the store: {key[:80]!r}")
        return path

    async def put(self, data: bytes, content_type: str) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"blob data must be bytes, got {type(data).__name__}")
        payload = bytes(data)
        key = key_for(sha256_hex(payload))
        await asyncio.to_thread(self._write_once, self.path_for(key), payload)
        return key

    async def get(self, key: str) -> bytes:
        path = self.path_for(key)
        return await asyncio.to_thread(path.read_bytes)

    async def exists(self, key: str) -> bool:
        path = self.path_for(key)
        return await asyncio.to_thread(path.is_file)

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(path.unlink, True)

    @staticmethod
    def _write_once(path: Path, data: bytes) -> None:
        if path.is_file():
            return  # content addressed: the file already holds exactly these bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            # Readers see either no file or the whole file, never a partial write.
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable where the platform allows syncing a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
