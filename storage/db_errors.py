"""The database's failures, as the service layers catch them."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError

# A unique key another transaction took first (a double click, two processes racing).
DuplicateRow = IntegrityError
# Any error the database driver raised: a dropped connection, a server that went away.
DatabaseError = DBAPIError

__all__ = ["DatabaseError", "DuplicateRow"]
