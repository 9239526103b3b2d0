"""The job store: jobs, per-image results and history, surviving restarts.

Every state change of an item is written before it is announced, and a job is written before
anyone is told it exists, so a crash never loses a job: on start the bot finds the unfinished
ones here and resumes or fails them.

:class:`Store` is the interface the rest of the bot uses. ``MIRROR_DB`` picks what stands
behind it: a SQLite file (the default, :mod:`mirror.store.sqlite`) or a PostgreSQL server
(``postgresql://…``, :mod:`mirror.store.postgres`). Both run the same queries
(:mod:`mirror.store.sql`) on the same numbered migrations (:mod:`mirror.store.schema`).
"""

from __future__ import annotations

from pathlib import Path

from mirror.store.interface import DECISIONS_CHANNEL, STORE_DOWN, Store, StoreError, StoreUnusable
from mirror.store.schema import SCHEMA_VERSION

__all__ = [
    "DECISIONS_CHANNEL",
    "SCHEMA_VERSION",
    "STORE_DOWN",
    "Store",
    "StoreError",
    "StoreUnusable",
    "is_postgres",
    "open_store",
]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: Path | str) -> bool:
    """Whether ``MIRROR_DB`` names a PostgreSQL server rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(_POSTGRES_SCHEMES)


async def open_store(location: Path | str) -> Store:
    """The store at ``location`` (``MIRROR_DB``), created or upgraded to the current schema.

    Raises :class:`StoreUnusable` when it cannot be this bot's database, :class:`StoreError`
    when it is only busy.
    """
    if is_postgres(location):
        from mirror.store.postgres import open_postgres  # psycopg only for those who use it

        return await open_postgres(str(location))
    if "://" in str(location):
        scheme = str(location).split("://", 1)[0]
        raise StoreUnusable(
            f"MIRROR_DB: a `{scheme}://` URL is no database this bot can use; give a file path "
            "(SQLite) or a postgresql:// URL."
        )
    from mirror.store.sqlite import open_sqlite

    return await open_sqlite(location)
