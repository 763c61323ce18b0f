"""Configuration problems as one line each, naming the environment variable, never a traceback.

pydantic reports fields (`smtp_port`); administrators set environment variables (`SMTP_PORT`).
Values are echoed back only where they can't be secret.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsError

S = TypeVar("S", bound=BaseSettings)

# Names whose values are never repeated in a message (or shown by `config check`).
_SECRET_NAME = re.compile(r"(secret|password|token|dsn|(^|_)key(s)?($|_))", re.IGNORECASE)
_MAX_ECHO = 60


class ConfigurationError(Exception):
    """The configuration can't be used; `lines` says why, one problem a line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def env_name(settings_class: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field`."""
    info = settings_class.model_fields.get(field)
    alias = None if info is None else (info.validation_alias or info.alias)
    prefix = str(settings_class.model_config.get("env_prefix") or "")
    return alias.upper() if isinstance(alias, str) else f"{prefix}{field}".upper()


def is_secret(settings_class: type[BaseSettings], field: str) -> bool:
    """A field whose value must never be shown: a SecretStr, or named like a secret."""
    info = settings_class.model_fields.get(field)
    if info is not None and "SecretStr" in str(info.annotation):
        return True
    return bool(_SECRET_NAME.search(field))


def _shown(settings_class: type[BaseSettings], field: str, value: Any) -> str:
    if is_secret(settings_class, field) or "url" in field or isinstance(value, SecretStr):
        return ""  # URLs may carry a password; these are never echoed
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return ""
    text = str(value)
    if len(text) > _MAX_ECHO:
        text = text[:_MAX_ECHO] + "…"
    return f" (got {text!r})"


def _sentence(message: str) -> str:
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


def validation_lines(settings_class: type[BaseSettings], error: ValidationError) -> list[str]:
    lines: list[str] = []
    for item in error.errors(include_url=False):
        loc = item.get("loc") or ()
        field = str(loc[0]) if loc else ""
        message = _sentence(item.get("msg", "is not valid"))
        if field and field in settings_class.model_fields:
            shown = _shown(settings_class, field, item.get("input"))
            if shown and repr(item.get("input")) in message:
                shown = ""  # the message quotes it already
            line = f"Configuration error: {env_name(settings_class, field)}: {message}{shown}"
        else:
            line = f"Configuration error: {message}"
        if line not in lines:
            lines.append(line)
    return lines


def _settings_error_line(settings_class: type[BaseSettings], error: SettingsError) -> str:
    # pydantic-settings: 'error parsing value for field "x" from source "EnvSettingsSource"'
    found = re.search(r'field "([^"]+)"', str(error))
    if found is None:
        return f"Configuration error: {error}"
    field = found.group(1)
    cause = error.__cause__
    reason = f": {_sentence(str(cause).splitlines()[0])}" if cause and str(cause) else ""
    return f"Configuration error: {env_name(settings_class, field)}: could not be read{reason}"


def env_file(settings_class: type[BaseSettings]) -> Path:
    configured = settings_class.model_config.get("env_file") or ".env"
    first = configured[0] if isinstance(configured, list | tuple) else configured
    return Path(str(first))


def load_settings(settings_class: type[S]) -> S:
    """Read the settings; any problem becomes a ConfigurationError with one line each."""
    try:
        return settings_class()
    except ValidationError as exc:
        raise ConfigurationError(validation_lines(settings_class, exc)) from None
    except SettingsError as exc:
        raise ConfigurationError([_settings_error_line(settings_class, exc)]) from None
    except UnicodeDecodeError as exc:
        path = env_file(settings_class).resolve()
        bad = exc.object[exc.start : exc.start + 1].hex()
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigurationError(
            [
                f"Configuration error: {path} is not UTF-8 text (byte 0x{bad} on line {line}); "
                "save it as UTF-8"
            ]
        ) from None
    except OSError as exc:
        path = env_file(settings_class).resolve()
        reason = exc.strerror or str(exc)
        raise ConfigurationError([f"Configuration error: can't read {path}: {reason}"]) from None
