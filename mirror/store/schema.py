"""The one numbered list of schema migrations, for SQLite and PostgreSQL side by side.

``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``; SQLite keeps the number
in ``PRAGMA user_version``, PostgreSQL in the one-row table ``schema_version``. A migration
whose statements read the same in both dialects gives them once; PostgreSQL needs its own
where SQLite's loose types would lose something there (``REAL`` is 4 bytes in PostgreSQL:
a timestamp would lose its seconds). Append migrations; never edit one that has shipped.

SQLite's version 0 is a new file *or* one written before versioning, which is why its first
migration creates only what does not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirror.store.interface import StoreUnusable


@dataclass(frozen=True)
class Migration:
    sqlite: tuple[str, ...]
    postgres_only: tuple[str, ...] | None = None

    @property
    def postgres(self) -> tuple[str, ...]:
        return self.sqlite if self.postgres_only is None else self.postgres_only


_TIME = "DOUBLE PRECISION"  # seconds since the epoch, as Python's time.time()


def _budgets_and_retention(time_type: str, size_type: str) -> tuple[str, ...]:
    """Migration 13's tables, written once for both dialects: only their types differ."""
    return (
        f"""CREATE TABLE reservations (
            job_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            person TEXT NOT NULL,
            repository TEXT NOT NULL,
            bytes {size_type} NOT NULL,
            state TEXT NOT NULL,
            created {time_type} NOT NULL,
            PRIMARY KEY (job_id, idx)
        )""",
        "CREATE INDEX reservations_person ON reservations (person, created)",
        "CREATE TABLE budget_locks (name TEXT PRIMARY KEY)",
        f"""CREATE TABLE pins (
            source TEXT PRIMARY KEY,
            pinned_by TEXT NOT NULL,
            created {time_type} NOT NULL
        )""",
        f"CREATE TABLE chores (name TEXT PRIMARY KEY, last {time_type} NOT NULL)",
        f"""CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            body TEXT NOT NULL,
            created {time_type} NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            sent {time_type}
        )""",
        "CREATE INDEX deliveries_pending ON deliveries (sent, created)",
    )


MIGRATIONS: tuple[Migration, ...] = (
    # 1: the schema as first released, before it had a version.
    Migration(
        (
            """CREATE TABLE IF NOT EXISTS jobs (
                id TEXT PRIMARY KEY,
                requester TEXT NOT NULL,
                chat TEXT NOT NULL,
                created REAL NOT NULL,
                reply_ref TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS jobs_chat ON jobs (chat, created)",
            """CREATE TABLE IF NOT EXISTS items (
                job_id TEXT NOT NULL REFERENCES jobs (id),
                idx INTEGER NOT NULL,
                spec TEXT NOT NULL,
                source TEXT NOT NULL,
                target TEXT NOT NULL,
                platform TEXT NOT NULL,
                status TEXT NOT NULL,
                engine TEXT,
                source_digest TEXT,
                target_digest TEXT,
                bytes INTEGER,
                seconds REAL,
                error TEXT,
                updated REAL NOT NULL,
                PRIMARY KEY (job_id, idx)
            )""",
            "CREATE INDEX IF NOT EXISTS items_target ON items (target, status)",
            "CREATE INDEX IF NOT EXISTS items_status ON items (status)",
        ),
        (
            f"""CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                requester TEXT NOT NULL,
                chat TEXT NOT NULL,
                created {_TIME} NOT NULL,
                reply_ref TEXT
            )""",
            "CREATE INDEX jobs_chat ON jobs (chat, created)",
            f"""CREATE TABLE items (
                job_id TEXT NOT NULL REFERENCES jobs (id),
                idx INTEGER NOT NULL,
                spec TEXT NOT NULL,
                source TEXT NOT NULL,
                target TEXT NOT NULL,
                platform TEXT NOT NULL,
                status TEXT NOT NULL,
                engine TEXT,
                source_digest TEXT,
                target_digest TEXT,
                bytes BIGINT,
                seconds {_TIME},
                error TEXT,
                updated {_TIME} NOT NULL,
                PRIMARY KEY (job_id, idx)
            )""",
            "CREATE INDEX items_target ON items (target, status)",
            "CREATE INDEX items_status ON items (status)",
        ),
    ),
    # 2: the per-user rate counts a requester's recent jobs on every /mirror.
    Migration(("CREATE INDEX jobs_requester ON jobs (requester, created)",)),
    # 3: what came along with an exact copy (JSON), and what was copied when not an image.
    Migration(
        (
            "ALTER TABLE items ADD COLUMN referrers TEXT",
            "ALTER TABLE items ADD COLUMN artifact TEXT",
        )
    ),
    # 4: buttons; the chat carries only the id (bot/actions.py).
    Migration(
        (
            """CREATE TABLE actions (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                chat TEXT NOT NULL,
                command TEXT NOT NULL,
                created REAL NOT NULL,
                used REAL
            )""",
        ),
        (
            f"""CREATE TABLE actions (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                chat TEXT NOT NULL,
                command TEXT NOT NULL,
                created {_TIME} NOT NULL,
                used {_TIME}
            )""",
        ),
    ),
    # 5: things said once ever (Docker Hub made a pushed repository public), by key.
    Migration(
        ("CREATE TABLE notices (key TEXT PRIMARY KEY, created REAL NOT NULL)",),
        (f"CREATE TABLE notices (key TEXT PRIMARY KEY, created {_TIME} NOT NULL)",),
    ),
    # 6: watches (issue 15): an image or tag filter checked upstream on a schedule.
    Migration(
        (
            """CREATE TABLE watches (
                id TEXT PRIMARY KEY,
                requester TEXT NOT NULL,
                chat TEXT NOT NULL,
                image TEXT NOT NULL,
                pattern TEXT NOT NULL,
                platform TEXT NOT NULL,
                created REAL NOT NULL,
                reply_ref TEXT,
                next_check REAL NOT NULL,
                last_check REAL,
                digests TEXT NOT NULL,
                error TEXT
            )""",
            "CREATE INDEX watches_chat ON watches (chat, created)",
        ),
        (
            f"""CREATE TABLE watches (
                id TEXT PRIMARY KEY,
                requester TEXT NOT NULL,
                chat TEXT NOT NULL,
                image TEXT NOT NULL,
                pattern TEXT NOT NULL,
                platform TEXT NOT NULL,
                created {_TIME} NOT NULL,
                reply_ref TEXT,
                next_check {_TIME} NOT NULL,
                last_check {_TIME},
                digests TEXT NOT NULL,
                error TEXT
            )""",
            "CREATE INDEX watches_chat ON watches (chat, created)",
        ),
    ),
    # 7: when a pull limit lifts, as time.time() seconds: a waiting item runs again then.
    Migration(
        ("ALTER TABLE items ADD COLUMN not_before REAL",),
        (f"ALTER TABLE items ADD COLUMN not_before {_TIME}",),
    ),
    # 8: the language each person chose with `/mirror lang` (issue 17).
    Migration(
        (
            """CREATE TABLE user_languages (
                person TEXT PRIMARY KEY,
                language TEXT NOT NULL,
                updated REAL NOT NULL
            )""",
        ),
        (
            f"""CREATE TABLE user_languages (
                person TEXT PRIMARY KEY,
                language TEXT NOT NULL,
                updated {_TIME} NOT NULL
            )""",
        ),
    ),
    # 9: what each queued copy came to, and where a running one is (mirror/queue/), by
    # procrastinate job id; the queue exists only on PostgreSQL, so SQLite has nothing to do.
    Migration(
        (),
        (
            f"""CREATE TABLE copy_outcomes (
                job_id BIGINT PRIMARY KEY,
                outcome TEXT NOT NULL,
                created {_TIME} NOT NULL
            )""",
            f"""CREATE TABLE copy_progress (
                job_id BIGINT PRIMARY KEY,
                events TEXT NOT NULL,
                updated {_TIME} NOT NULL
            )""",
        ),
    ),
    # 10: a job whose sizes an admin agreed to up front (a bulk plan's Copy all) asks nothing.
    Migration(("ALTER TABLE jobs ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0",)),
    # 11: what a worker's watch check saw move, for the front to mirror and post (one row per
    # watch and tag, newest sighting wins; tried again from ``not_before`` when the front
    # could not start its copy); only the PostgreSQL queue checks on workers.
    Migration(
        (),
        (
            f"""CREATE TABLE watch_fires (
                watch_id TEXT NOT NULL,
                tag TEXT NOT NULL,
                seen {_TIME} NOT NULL,
                not_before {_TIME} NOT NULL DEFAULT 0,
                PRIMARY KEY (watch_id, tag)
            )""",
        ),
    ),
    # 12: approvals (issue 26): who decided each held image, watches held for approval, an
    # admin's answers waiting for the running bot to apply them, and the source repositories
    # approved for good.
    Migration(
        (
            "ALTER TABLE items ADD COLUMN approved_by TEXT",
            "ALTER TABLE watches ADD COLUMN held INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE watches ADD COLUMN approved_by TEXT",
            """CREATE TABLE decisions (
                id TEXT PRIMARY KEY,
                request TEXT NOT NULL,
                idx INTEGER,
                approve INTEGER NOT NULL,
                decided_by TEXT NOT NULL,
                reason TEXT,
                created REAL NOT NULL
            )""",
            """CREATE TABLE approved_sources (
                repository TEXT PRIMARY KEY,
                added_by TEXT NOT NULL,
                added REAL NOT NULL
            )""",
            "CREATE INDEX jobs_created ON jobs (created)",
        ),
        (
            "ALTER TABLE items ADD COLUMN approved_by TEXT",
            "ALTER TABLE watches ADD COLUMN held INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE watches ADD COLUMN approved_by TEXT",
            f"""CREATE TABLE decisions (
                id TEXT PRIMARY KEY,
                request TEXT NOT NULL,
                idx INTEGER,
                approve INTEGER NOT NULL,
                decided_by TEXT NOT NULL,
                reason TEXT,
                created {_TIME} NOT NULL
            )""",
            f"""CREATE TABLE approved_sources (
                repository TEXT PRIMARY KEY,
                added_by TEXT NOT NULL,
                added {_TIME} NOT NULL
            )""",
            "CREATE INDEX jobs_created ON jobs (created)",
        ),
    ),
    # 13: budgets, retention and webhooks (issue 26): each copy's reservation of its
    # requester's quota and of the target's room (``budget_locks`` holds one row per thing a
    # reservation locks, so that concurrent ones wait for each other in every dialect), pinned
    # sources, when each daily chore last ran, and the webhook outbox.
    Migration(
        _budgets_and_retention("REAL", "INTEGER"),
        _budgets_and_retention(_TIME, "BIGINT"),
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def check_not_newer(version: int) -> None:
    """Refuse a database a newer bot wrote: this one would misread what it does not know."""
    if version > SCHEMA_VERSION:
        raise StoreUnusable(
            f"MIRROR_DB: the database was written by a newer hub-mirror-bot (schema "
            f"{version}; this one knows up to {SCHEMA_VERSION}); upgrade the bot."
        )
