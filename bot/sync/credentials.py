"""Credentials for the sources: a value from the environment, or the contents of a file an
environment variable names (a mounted secret), never both and never logged."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr


class CredentialError(Exception):
    """A credential is missing or its file can't be read; the message names the setting."""


def credential(
    value: SecretStr | None, file: Path | None, *, setting: str, required: bool = True
) -> str | None:
    """The secret from `<SETTING>` or from the file `<SETTING>_FILE` names."""
    if value is not None and file is not None:
        raise CredentialError(f"set {setting} or {setting}_FILE, not both")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialError(f"{setting}_FILE: can't read {file} ({exc.strerror})") from None
        if not text:
            raise CredentialError(f"{setting}_FILE: {file} is empty")
        return text
    if value is not None and value.get_secret_value().strip():
        return value.get_secret_value().strip()
    if required:
        raise CredentialError(f"{setting} is not set (or {setting}_FILE naming a file)")
    return None
