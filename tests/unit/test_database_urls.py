"""Database URLs as hosting platforms and people write them."""

from __future__ import annotations

import pytest

from bot.settings import Settings, async_database_url


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgres://app:s%40cret@db.example.org:5432/care",
            "postgresql+asyncpg://app:s%40cret@db.example.org:5432/care",
        ),
        ("postgresql://app@db/care", "postgresql+asyncpg://app@db/care"),
        ("postgresql+psycopg2://app@db/care", "postgresql+asyncpg://app@db/care"),
        ("postgres://app@db/care?sslmode=require", "postgresql+asyncpg://app@db/care?ssl=require"),
        ("postgresql+asyncpg://app@db/care", "postgresql+asyncpg://app@db/care"),
        ("sqlite:///./data/devicecare.db", "sqlite+aiosqlite:///./data/devicecare.db"),
        ("sqlite+aiosqlite:///./data/devicecare.db", "sqlite+aiosqlite:///./data/devicecare.db"),
        ("  postgres://app@db/care \n", "postgresql+asyncpg://app@db/care"),
    ],
)
def test_common_urls_get_the_async_driver(given: str, used: str) -> None:
    assert async_database_url(given) == used


def test_settings_read_a_platform_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app:pw@db.internal:5432/care")
    assert (
        Settings(_env_file=None).database_url == "postgresql+asyncpg://app:pw@db.internal:5432/care"
    )  # type: ignore[call-arg]
