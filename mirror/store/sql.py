"""The store's queries, written once for every SQL database behind a :class:`Database`.

The SQL is the dialect SQLite and PostgreSQL share (``ON CONFLICT``, window functions), with
``?`` placeholders; a :class:`Database` runs it and says which of its driver's exceptions
mean "unavailable", so that callers only ever see one sentence (:data:`STORE_DOWN`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from mirror.artifacts import ArtifactKind, Referrer, ReferrerKind
from mirror.models import (
    UNFINISHED,
    ApprovedSource,
    Decision,
    Item,
    ItemStatus,
    Job,
    StoredAction,
    Watch,
    platform_text,
)
from mirror.platform import parse_platform
from mirror.quota import Budget, CapacityReached, Reservation, Usage
from mirror.reference import parse_reference
from mirror.retention import Copy, Pin
from mirror.store.interface import DECISIONS_CHANNEL, STORE_DOWN, StoreError
from mirror.webhooks import Delivery, Payload, delivery_id

Row = tuple[Any, ...]


class Writer(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement inside the transaction; how many rows it changed."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Read inside the transaction (what it wrote so far included)."""
        ...


class Database(Protocol):
    """One SQL database as :class:`SQLStore` uses it."""

    errors: tuple[type[Exception], ...]
    """The driver's exceptions that mean "cannot read or write right now"."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def transaction(self) -> AbstractAsyncContextManager[Writer]:
        """All statements or none; a failure to begin comes before any change."""
        ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Whether this process holds ``name`` (no other process does) for the block: a
        chore that runs in one place however many processes share the database."""
        ...

    async def close(self) -> None: ...


_ITEM_FIELDS = (
    "spec",
    "source",
    "target",
    "platform",
    "status",
    "engine",
    "source_digest",
    "target_digest",
    "bytes",
    "seconds",
    "error",
    "referrers",
    "artifact",
    "not_before",
    "approved_by",
)
_ITEM_COLUMNS = ", ".join(_ITEM_FIELDS)
_WRITE_ITEM = (
    f"INSERT INTO items (job_id, idx, {_ITEM_COLUMNS}, updated) "
    f"VALUES ({', '.join('?' * (len(_ITEM_FIELDS) + 3))}) "
    "ON CONFLICT (job_id, idx) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in (*_ITEM_FIELDS, "updated"))
)
_WATCH_COLUMNS = (
    "id, requester, chat, image, pattern, platform, created, reply_ref, next_check, "
    "last_check, digests, error, held, approved_by"
)
_OK = (ItemStatus.SUCCEEDED.value, ItemStatus.ALREADY_MIRRORED.value)
_NOT_ASKED = (ItemStatus.REFUSED.value, ItemStatus.DENIED.value)
"""Images nobody copied because they were said no to: not counted against a person's rate."""
_DECISION_COLUMNS = "id, request, idx, approve, decided_by, reason, created"

_Self = TypeVar("_Self", bound="SQLStore")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _guarded(
    method: Callable[Concatenate[_Self, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[_Self, _P], Coroutine[Any, Any, _R]]:
    """Database failures leave the store as one sentence, the cause chained for the log."""

    @functools.wraps(method)
    async def guarded(self: _Self, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._closed:
            raise StoreError(STORE_DOWN)
        try:
            return await method(self, *args, **kwargs)
        except self._db.errors as exc:
            raise StoreError(STORE_DOWN) from exc

    return guarded


class SQLStore:
    """:class:`mirror.store.Store` on a :class:`Database` whose schema is current."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._closed = False
        self._outbox: Payload | None = None

    def set_outbox(self, payload: Payload | None) -> None:
        self._outbox = payload

    @_guarded
    async def ping(self) -> None:
        await self._db.fetchall("SELECT 1")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._db.close()

    async def _announce(self, tx: Writer, channel: str, payload: str) -> None:
        """Tell other processes, when the transaction commits, that ``channel`` has news (a
        database that cannot is polled instead: SQLite)."""

    @_guarded
    async def add_job(self, job: Job) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO jobs (id, requester, chat, created, reply_ref, confirmed) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (job.id, job.requester, job.chat, job.created, job.reply_ref, int(job.confirmed)),
            )
            for idx, item in enumerate(job.items):
                await tx.execute(_WRITE_ITEM, _item_row(job.id, idx, item))
                await self._deliver(tx, job, idx)  # a refusal is stored finished

    @_guarded
    async def set_reply_ref(self, job: Job) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("UPDATE jobs SET reply_ref = ? WHERE id = ?", (job.reply_ref, job.id))

    @_guarded
    async def save_item(self, job: Job, idx: int) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(_WRITE_ITEM, _item_row(job.id, idx, job.items[idx]))
            await self._deliver(tx, job, idx)

    async def _deliver(self, tx: Writer, job: Job, idx: int) -> None:
        """A finished image's webhook delivery, in the transaction that stores its final
        state (once per image: a second write of it adds none)."""
        item = job.items[idx]
        if self._outbox is None or not item.status.finished:
            return
        await tx.execute(
            "INSERT INTO deliveries (id, job_id, idx, body, created) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING",
            (delivery_id(job.id, idx), job.id, idx, self._outbox(job, item), time.time()),
        )

    @_guarded
    async def get_job(self, job_id: str) -> Job | None:
        jobs = await self._jobs("WHERE id = ?", (job_id,))
        return jobs[0] if jobs else None

    @_guarded
    async def recent_jobs(self, chat: str, limit: int = 10) -> list[Job]:
        return await self._jobs("WHERE chat = ? ORDER BY created DESC LIMIT ?", (chat, limit))

    @_guarded
    async def unfinished_jobs(self) -> list[Job]:
        unfinished = sorted(status.value for status in UNFINISHED)
        marks = ", ".join("?" * len(unfinished))
        return await self._jobs(
            f"WHERE id IN (SELECT job_id FROM items WHERE status IN ({marks})) ORDER BY created",
            tuple(unfinished),
        )

    @_guarded
    async def history(self, chat: str, limit: int = 20) -> list[Item]:
        rows = await self._db.fetchall(
            f"SELECT {_ITEM_COLUMNS} FROM items JOIN jobs ON jobs.id = items.job_id "
            "WHERE jobs.chat = ? AND items.status IN (?, ?) ORDER BY items.updated DESC LIMIT ?",
            (chat, *_OK, limit * 4),
        )
        latest: dict[str, Item] = {}
        for row in rows:
            item = _item(row)
            latest.setdefault(str(item.target), item)
        return list(latest.values())[:limit]

    @_guarded
    async def count_items_since(self, requester: str, since: float) -> int:
        rows = await self._db.fetchall(
            "SELECT COUNT(*) FROM items JOIN jobs ON jobs.id = items.job_id "
            "WHERE jobs.requester = ? AND jobs.created >= ? AND items.status NOT IN (?, ?)",
            (requester, since, *_NOT_ASKED),
        )
        return int(rows[0][0]) if rows else 0

    @_guarded
    async def last_success(self, target: str) -> Item | None:
        rows = await self._db.fetchall(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE target = ? AND status IN (?, ?) "
            "ORDER BY updated DESC LIMIT 1",
            (target, *_OK),
        )
        return _item(rows[0]) if rows else None

    @_guarded
    async def add_actions(self, actions: Sequence[StoredAction]) -> None:
        if not actions:
            return
        async with self._db.transaction() as tx:
            for a in actions:
                await tx.execute(
                    "INSERT INTO actions (id, owner, chat, command, created, used) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (a.id, a.owner, a.chat, a.command, a.created, a.used),
                )

    @_guarded
    async def get_action(self, action_id: str) -> StoredAction | None:
        rows = await self._db.fetchall(
            "SELECT id, owner, chat, command, created, used FROM actions WHERE id = ?",
            (action_id,),
        )
        return StoredAction(*rows[0]) if rows else None

    @_guarded
    async def use_action(self, action_id: str) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE actions SET used = ? WHERE id = ? AND used IS NULL",
                (time.time(), action_id),
            )
        return changed == 1

    @_guarded
    async def first_notice(self, key: str) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "INSERT INTO notices (key, created) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, time.time()),
            )
        return changed == 1

    @_guarded
    async def copies_of(self, source: str) -> list[tuple[Item, float]]:
        # The copy each target holds now is its newest good copy, whatever platform or
        # source it was of: a target another copy overwrote since is not listed.
        rows = await self._db.fetchall(
            f"SELECT {_ITEM_COLUMNS}, first_copy FROM ("
            f"SELECT {_ITEM_COLUMNS}, updated, "
            "ROW_NUMBER() OVER (PARTITION BY target ORDER BY updated DESC) AS newest, "
            "MIN(CASE WHEN source = ? THEN updated END) OVER (PARTITION BY target) AS first_copy "
            "FROM items WHERE status IN (?, ?) AND target IN ("
            "SELECT target FROM items WHERE source = ? AND status IN (?, ?))"
            ") AS copies WHERE newest = 1 AND source = ? ORDER BY updated DESC",
            (source, *_OK, source, *_OK, source),
        )
        return [(_item(row[:-1]), float(row[-1])) for row in rows]

    @_guarded
    async def add_watch(self, watch: Watch) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO watches ({_WATCH_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                _watch_row(watch),
            )

    @_guarded
    async def set_watch_reply_ref(self, watch: Watch) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE watches SET reply_ref = ? WHERE id = ?", (watch.reply_ref, watch.id)
            )

    @_guarded
    async def save_watch_check(self, watch: Watch) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE watches SET next_check = ?, last_check = ?, digests = ?, error = ? "
                "WHERE id = ?",
                (
                    watch.next_check,
                    watch.last_check,
                    json.dumps(watch.digests),
                    watch.error,
                    watch.id,
                ),
            )

    @_guarded
    async def get_watch(self, watch_id: str) -> Watch | None:
        found = await self._watches("WHERE id = ?", (watch_id,))
        return found[0] if found else None

    @_guarded
    async def watches(self, chat: str | None = None) -> list[Watch]:
        if chat is None:
            return await self._watches("ORDER BY created", ())
        return await self._watches("WHERE chat = ? ORDER BY created", (chat,))

    @_guarded
    async def delete_watch(self, watch_id: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM watches WHERE id = ?", (watch_id,))

    @_guarded
    async def get_language(self, user: str) -> str | None:
        rows = await self._db.fetchall(
            "SELECT language FROM user_languages WHERE person = ?", (user,)
        )
        return str(rows[0][0]) if rows else None

    @_guarded
    async def set_language(self, user: str, language: str | None) -> None:
        async with self._db.transaction() as tx:
            if language is None:
                await tx.execute("DELETE FROM user_languages WHERE person = ?", (user,))
            else:
                await tx.execute(
                    "INSERT INTO user_languages (person, language, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT (person) DO UPDATE SET language = excluded.language, "
                    "updated = excluded.updated",
                    (user, language, time.time()),
                )

    @_guarded
    async def approve_watch(self, watch_id: str, by: str) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE watches SET held = 0, approved_by = ?, next_check = 0 "
                "WHERE id = ? AND held = 1",
                (by, watch_id),
            )
        return changed == 1

    @_guarded
    async def add_decision(self, decision: Decision) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    decision.id,
                    decision.request,
                    decision.idx,
                    int(decision.approve),
                    decision.decided_by,
                    decision.reason,
                    decision.created,
                ),
            )
            await self._announce(tx, DECISIONS_CHANNEL, decision.request)

    @_guarded
    async def decisions(self) -> list[Decision]:
        rows = await self._db.fetchall(
            f"SELECT {_DECISION_COLUMNS} FROM decisions ORDER BY created, id"
        )
        return [
            Decision(did, request, idx, bool(approve), by, reason, created)
            for did, request, idx, approve, by, reason, created in rows
        ]

    @_guarded
    async def delete_decision(self, decision_id: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM decisions WHERE id = ?", (decision_id,))

    @_guarded
    async def approved_sources(self) -> list[ApprovedSource]:
        rows = await self._db.fetchall(
            "SELECT repository, added_by, added FROM approved_sources ORDER BY repository"
        )
        return [ApprovedSource(*row) for row in rows]

    @_guarded
    async def add_approved_source(self, source: ApprovedSource) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "INSERT INTO approved_sources (repository, added_by, added) VALUES (?, ?, ?) "
                "ON CONFLICT (repository) DO NOTHING",
                (source.repository, source.added_by, source.added),
            )
        return changed == 1

    @_guarded
    async def remove_approved_source(self, repository: str) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "DELETE FROM approved_sources WHERE repository = ?", (repository,)
            )
        return changed == 1

    @_guarded
    async def jobs_since(self, since: float) -> list[Job]:
        return await self._jobs("WHERE created >= ? ORDER BY created, id", (since,))

    # -- budgets (mirror.quota) ----------------------------------------------------------------

    @_guarded
    async def reserve(self, reservation: Reservation, budget: Budget, now: float) -> None:
        r = reservation
        quota = budget.quota_of(r.person)
        async with self._db.transaction() as tx:
            held = await tx.fetchall(
                "SELECT 1 FROM reservations WHERE job_id = ? AND idx = ? AND state = ?",
                (r.job_id, r.idx, _RESERVED),
            )
            if held:  # reserved before a restart: the copy goes on with it
                return
            if quota is not None:
                await tx.execute(_LOCK, (f"person:{r.person}",))  # concurrent ones wait here
                used = {
                    window: await _usage(tx, r.person, window.start(now))
                    for window in quota.windows
                }
                quota.check(used, 1, r.bytes, now)
            if budget.max_repos is not None:
                await tx.execute(_LOCK, ("repositories",))
                known = await _repositories(tx)
                if r.repository not in known and len(known) >= budget.max_repos:
                    raise CapacityReached(r.repository, len(known), budget.max_repos)
            await tx.execute(
                "INSERT INTO reservations (job_id, idx, person, repository, bytes, state, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, idx) DO UPDATE SET "
                "person = excluded.person, repository = excluded.repository, "
                "bytes = excluded.bytes, state = excluded.state, created = excluded.created",
                (r.job_id, r.idx, r.person, r.repository, r.bytes, _RESERVED, r.created),
            )

    @_guarded
    async def settle(self, reservation: Reservation, moved: int | None) -> None:
        r = reservation
        async with self._db.transaction() as tx:
            if moved is None:
                await tx.execute(
                    "UPDATE reservations SET state = ? WHERE job_id = ? AND idx = ?",
                    (_RELEASED, r.job_id, r.idx),
                )
                return
            await tx.execute(
                "INSERT INTO reservations (job_id, idx, person, repository, bytes, state, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, idx) DO UPDATE SET "
                "bytes = excluded.bytes, state = excluded.state",
                (r.job_id, r.idx, r.person, r.repository, moved, _USED, r.created),
            )

    @_guarded
    async def usage(self, person: str, since: float) -> Usage:
        return await _usage(self._db, person, since)

    @_guarded
    async def repository_count(self) -> int:
        return len(await _repositories(self._db))

    # -- retention (mirror.retention) ---------------------------------------------------------

    @_guarded
    async def copies_made(self) -> list[Copy]:
        rows = await self._db.fetchall(
            "SELECT target, target_digest, MAX(source), MAX(updated) FROM items "
            "WHERE status IN (?, ?) AND target_digest IS NOT NULL "
            "GROUP BY target, target_digest",
            _OK,
        )
        current = {
            str(target): str(digest)
            for target, digest in await self._db.fetchall(
                "SELECT target, target_digest FROM ("
                "SELECT target, target_digest, ROW_NUMBER() OVER "
                "(PARTITION BY target ORDER BY updated DESC) AS newest FROM items "
                "WHERE status IN (?, ?) AND target_digest IS NOT NULL"
                ") AS latest WHERE newest = 1",
                _OK,
            )
        }
        return [
            Copy(
                target=parse_reference(target),
                digest=digest,
                source=parse_reference(source),
                last_request=float(last),
                current=current.get(target) == digest,
            )
            for target, digest, source, last in rows
        ]

    @_guarded
    async def mark_pruned(self, target: str, digest: str) -> int:
        async with self._db.transaction() as tx:
            return await tx.execute(
                "UPDATE items SET status = ? WHERE target = ? AND target_digest = ? "
                "AND status IN (?, ?)",
                (ItemStatus.PRUNED.value, target, digest, *_OK),
            )

    @_guarded
    async def add_pin(self, pin: Pin) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "INSERT INTO pins (source, pinned_by, created) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO NOTHING",
                (pin.source, pin.pinned_by, pin.created),
            )
        return changed == 1

    @_guarded
    async def remove_pin(self, source: str) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute("DELETE FROM pins WHERE source = ?", (source,))
        return changed == 1

    @_guarded
    async def pins(self) -> list[Pin]:
        rows = await self._db.fetchall(
            "SELECT source, pinned_by, created FROM pins ORDER BY source"
        )
        return [Pin(str(source), str(by), float(created)) for source, by, created in rows]

    @_guarded
    async def requesters_of(self, source: str) -> set[str]:
        rows = await self._db.fetchall(
            "SELECT DISTINCT jobs.requester FROM items JOIN jobs ON jobs.id = items.job_id "
            "WHERE items.source = ? AND items.status IN (?, ?)",
            (source, *_OK),
        )
        return {str(row[0]) for row in rows}

    # -- the webhook outbox (mirror.webhooks) -------------------------------------------------

    @_guarded
    async def pending_deliveries(self, limit: int = 50) -> list[Delivery]:
        rows = await self._db.fetchall(
            "SELECT id, job_id, idx, body, created, attempts, last_error FROM deliveries "
            "WHERE sent IS NULL ORDER BY created, id LIMIT ?",
            (limit,),
        )
        return [Delivery(*row) for row in rows]

    @_guarded
    async def delivered(self, delivery: str, when: float) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("UPDATE deliveries SET sent = ? WHERE id = ?", (when, delivery))

    @_guarded
    async def delivery_failed(self, delivery: str, error: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, delivery),
            )

    @_guarded
    async def forget_deliveries(self, sent_before: float) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM deliveries WHERE sent < ?", (sent_before,))

    # -- chores: what runs in one place, and when it last did -----------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        if self._closed:
            raise StoreError(STORE_DOWN)
        try:
            async with self._db.exclusive(f"hub-mirror-bot:{name}") as held:
                yield held
        except self._db.errors as exc:
            raise StoreError(STORE_DOWN) from exc

    @_guarded
    async def last_run(self, chore: str) -> float | None:
        rows = await self._db.fetchall("SELECT last FROM chores WHERE name = ?", (chore,))
        return float(rows[0][0]) if rows else None

    @_guarded
    async def ran(self, chore: str, when: float) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO chores (name, last) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET last = excluded.last",
                (chore, when),
            )

    async def _watches(self, where: str, params: tuple[Any, ...]) -> list[Watch]:
        rows = await self._db.fetchall(f"SELECT {_WATCH_COLUMNS} FROM watches {where}", params)
        return [_watch(row) for row in rows]

    async def _jobs(self, where: str, params: tuple[Any, ...]) -> list[Job]:
        rows = await self._db.fetchall(
            f"SELECT id, requester, chat, created, reply_ref, confirmed FROM jobs {where}", params
        )
        jobs = []
        for job_id, requester, chat, created, reply_ref, confirmed in rows:
            item_rows = await self._db.fetchall(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE job_id = ? ORDER BY idx", (job_id,)
            )
            items = [_item(row) for row in item_rows]
            jobs.append(
                Job(job_id, requester, chat, items, created, reply_ref, confirmed=bool(confirmed))
            )
        return jobs


_RESERVED, _USED, _RELEASED = "reserved", "used", "released"
_LOCK = (
    "INSERT INTO budget_locks (name) VALUES (?) "
    "ON CONFLICT (name) DO UPDATE SET name = excluded.name"
)
"""Take (creating if need be) the row lock a reservation waits on: PostgreSQL locks the row
until the transaction ends; SQLite's ``BEGIN IMMEDIATE`` already let one writer in."""
_LIVE = (
    f"(r.state = '{_USED}' OR (r.state = '{_RESERVED}' AND i.status IN "
    f"({', '.join(repr(status.value) for status in sorted(UNFINISHED))})))"
)
"""A reservation that counts: its copy moved bytes, or it still runs (one that failed, was
cancelled or moved nothing was released, or its item says it is over)."""


async def _usage(db: Writer | Database, person: str, since: float) -> Usage:
    rows = await db.fetchall(
        "SELECT COUNT(*), COALESCE(SUM(r.bytes), 0) FROM reservations r "
        "JOIN items i ON i.job_id = r.job_id AND i.idx = r.idx "
        f"WHERE r.person = ? AND r.created >= ? AND {_LIVE}",
        (person, since),
    )
    images, size = rows[0] if rows else (0, 0)
    return Usage(int(images), int(size))


async def _repositories(db: Writer | Database) -> set[str]:
    """Every target repository the bot pushed to, or is pushing to now (a registry's API
    cannot delete a repository, so a pruned copy's still counts)."""
    reserved = await db.fetchall(
        "SELECT DISTINCT r.repository FROM reservations r "
        f"JOIN items i ON i.job_id = r.job_id AND i.idx = r.idx WHERE {_LIVE}"
    )
    copied = await db.fetchall(
        "SELECT DISTINCT target FROM items WHERE status IN (?, ?, ?)",
        (*_OK, ItemStatus.PRUNED.value),
    )
    found = {str(row[0]) for row in reserved}
    found.update(parse_reference(str(row[0])).name for row in copied)
    return found


def _item_row(job_id: str, idx: int, item: Item) -> Row:
    return (
        job_id,
        idx,
        item.spec,
        str(item.source),
        str(item.target),
        platform_text(item.platform),
        item.status.value,
        item.engine,
        item.source_digest,
        item.target_digest,
        item.bytes,
        item.seconds,
        item.error,
        _referrers_text(item.referrers),
        item.artifact.value if item.artifact else None,
        item.not_before,
        item.approved_by,
        time.time(),
    )


def _watch_row(watch: Watch) -> Row:
    return (
        watch.id,
        watch.requester,
        watch.chat,
        watch.image.name,
        watch.pattern,
        platform_text(watch.platform),
        watch.created,
        watch.reply_ref,
        watch.next_check,
        watch.last_check,
        json.dumps(watch.digests),
        watch.error,
        int(watch.held),
        watch.approved_by,
    )


def _watch(row: Row) -> Watch:
    (wid, requester, chat, image, pattern, platform, created, reply_ref, nxt, last, dig, err) = row[
        :12
    ]
    held, approved_by = row[12:]
    return Watch(
        id=wid,
        requester=requester,
        chat=chat,
        image=parse_reference(image).repo_only,
        pattern=pattern,
        platform=parse_platform(platform),
        created=created,
        reply_ref=reply_ref,
        next_check=nxt,
        last_check=last,
        digests=json.loads(dig),
        error=err,
        held=bool(held),
        approved_by=approved_by,
    )


def _item(row: Row) -> Item:
    (spec, source, target, platform, status, engine, sdig, tdig, size, seconds, error) = row[:11]
    referrers, artifact, not_before, approved_by = row[11:]
    return Item(
        spec=spec,
        source=parse_reference(source),
        target=parse_reference(target),
        platform=parse_platform(platform),
        status=ItemStatus(status),
        engine=engine,
        source_digest=sdig,
        target_digest=tdig,
        bytes=size,
        seconds=seconds,
        error=error,
        referrers=_referrers_of(referrers),
        artifact=ArtifactKind(artifact) if artifact else None,
        not_before=not_before,
        approved_by=approved_by,
    )


def _referrers_text(referrers: tuple[Referrer, ...]) -> str | None:
    if not referrers:
        return None
    return json.dumps([[r.digest, r.artifact_type, r.kind.value] for r in referrers])


def _referrers_of(text: str | None) -> tuple[Referrer, ...]:
    if not text:
        return ()
    return tuple(Referrer(d, t, ReferrerKind(k)) for d, t, k in json.loads(text))
