"""Reading the database URL a district configures: its driver, backend, file and password."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Hosting platforms (Heroku, Render, Dokku) hand out `postgres://…?sslmode=require`;
# SQLAlchemy needs the dialect and the async driver spelled out, and asyncpg calls it `ssl`.
_POSTGRES_DRIVERS = frozenset(
    {"postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"}
)


def async_database_url(url: str) -> str:
    """The URL with the async driver DeviceCare runs on (asyncpg, aiosqlite)."""
    url = url.strip()
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # left for the engine to refuse with its own message
    if parsed.drivername in _POSTGRES_DRIVERS:
        query = dict(parsed.query)
        if "sslmode" in query and "ssl" not in query:
            query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(drivername="postgresql+asyncpg", query=query)
        return parsed.render_as_string(hide_password=False)
    if parsed.drivername == "sqlite":
        return "sqlite+aiosqlite" + url[len("sqlite") :]
    return url


def database_backend(url: str) -> str | None:
    """ "postgresql", "sqlite", …; None for a URL that doesn't parse."""
    try:
        return make_url(url).get_backend_name()
    except (ArgumentError, ValueError):
        return None


def database_password(url: str) -> str:
    """The password in the URL ("" without one, or for a URL that doesn't parse)."""
    try:
        return make_url(url).password or ""
    except ArgumentError:
        return ""


def sqlite_file(url: str) -> str | None:
    """The SQLite database file the URL names; None for an in-memory one or another backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database
