"""What the bot keeps between restarts, as the rest of the bot sees it: no database type.

Every database failure leaves the store as a :class:`StoreError` whose text is one sentence,
so SQLite and PostgreSQL can stand behind :func:`mirror.store.open_store` alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from mirror.errors import StoreError, StoreUnusable
from mirror.models import ApprovedSource, Decision, Item, Job, StoredAction, Watch
from mirror.quota import Budget, Reservation, Usage
from mirror.retention import Copy, Pin
from mirror.text import Text
from mirror.webhooks import Delivery, Payload

__all__ = ["DECISIONS_CHANNEL", "STORE_DOWN", "Store", "StoreError", "StoreUnusable"]

STORE_DOWN = Text("The bot's database is busy or unavailable (locked or full); try again shortly.")
DECISIONS_CHANNEL = "mirror_decisions"
"""Where PostgreSQL announces an admin's decision to the running bot (``NOTIFY``); a SQLite
bot polls :meth:`Store.decisions` instead."""


class Store(Protocol):
    """What the bot keeps between restarts. Every method raises only :class:`StoreError`."""

    async def add_job(self, job: Job) -> None:
        """Write a new job and its items, all or nothing."""
        ...

    async def set_reply_ref(self, job: Job) -> None:
        """Write where the job's progress message is (``job.reply_ref``)."""
        ...

    async def save_item(self, job: Job, idx: int) -> None: ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def recent_jobs(self, chat: str, limit: int = 10) -> list[Job]:
        """This chat's jobs, newest first."""
        ...

    async def unfinished_jobs(self) -> list[Job]:
        """Jobs with an item still queued, running or waiting for a pull limit to lift,
        oldest first (for recovery; a waiting item keeps its ``not_before``)."""
        ...

    async def history(self, chat: str, limit: int = 20) -> list[Item]:
        """What this chat mirrored successfully, newest first, one row per target."""
        ...

    async def count_items_since(self, requester: str, since: float) -> int:
        """How many images ``requester`` asked for since ``since`` (for per-user rates); what
        was refused or denied is not counted: nothing was copied."""
        ...

    async def last_success(self, target: str) -> Item | None:
        """The newest successful copy to ``target``, from any chat."""
        ...

    async def add_actions(self, actions: Sequence[StoredAction]) -> None:
        """Write buttons before the message carrying them is sent; an id already stored keeps
        its first meaning (a view re-rendered on every edit stores the same buttons again)."""
        ...

    async def get_action(self, action_id: str) -> StoredAction | None: ...

    async def use_action(self, action_id: str) -> bool:
        """Mark a button pressed; False when it already was (two presses, one effect)."""
        ...

    async def first_notice(self, key: str) -> bool:
        """Record ``key``; True only the first time ever, so a warning is given once."""
        ...

    async def copies_of(self, source: str) -> list[tuple[Item, float]]:
        """Every target holding a copy of ``source``: its newest successful copy, and when
        the first one landed (``/inspect``: "mirrored here since"), newest first."""
        ...

    async def add_watch(self, watch: Watch) -> None:
        """Write a new watch (before the chat hears of it)."""
        ...

    async def set_watch_reply_ref(self, watch: Watch) -> None:
        """Write where the watch was announced (``watch.reply_ref``), to post there later."""
        ...

    async def save_watch_check(self, watch: Watch) -> None:
        """Write what the latest check found: digests, times, error."""
        ...

    async def get_watch(self, watch_id: str) -> Watch | None: ...

    async def watches(self, chat: str | None = None) -> list[Watch]:
        """This chat's watches (every chat's when None), oldest first."""
        ...

    async def delete_watch(self, watch_id: str) -> None: ...

    async def approve_watch(self, watch_id: str, by: str) -> bool:
        """Let a held watch run (checked at once); False when it was not held."""
        ...

    async def add_decision(self, decision: Decision) -> None:
        """Write an admin's answer for the running bot to apply, and wake it (PostgreSQL
        notifies :data:`DECISIONS_CHANNEL` when the write commits)."""
        ...

    async def decisions(self) -> list[Decision]:
        """Answers not applied yet, oldest first."""
        ...

    async def delete_decision(self, decision_id: str) -> None: ...

    async def approved_sources(self) -> list[ApprovedSource]:
        """Repositories approved for good, by name."""
        ...

    async def add_approved_source(self, source: ApprovedSource) -> bool:
        """False when it was already there (its first approval stays)."""
        ...

    async def remove_approved_source(self, repository: str) -> bool:
        """False when it was not there."""
        ...

    async def jobs_since(self, since: float) -> list[Job]:
        """Every job requested at or after ``since``, oldest first (the audit)."""
        ...

    # -- budgets (mirror.quota) ----------------------------------------------------------------

    async def reserve(self, reservation: Reservation, budget: Budget, now: float) -> None:
        """Claim one image of its requester's quota and the target's room for a copy about
        to start, in one transaction with adding up what is used (concurrent claims wait
        for each other); raises :class:`~mirror.quota.OverBudget` when it does not fit. A
        claim already held for the same item (a restart) stands."""
        ...

    async def settle(self, reservation: Reservation, moved: int | None) -> None:
        """The copy ended: ``moved`` bytes landed (counted from now on, reserved or not), or
        None when nothing was copied (released)."""
        ...

    async def usage(self, person: str, since: float) -> Usage:
        """What ``person``'s copies used since ``since``, running ones included."""
        ...

    async def repository_count(self) -> int:
        """Target repositories the bot ever pushed to or is pushing to now."""
        ...

    # -- retention (mirror.retention) ---------------------------------------------------------

    async def copies_made(self) -> list[Copy]:
        """Every manifest the bot pushed and has not pruned: each target tag and digest,
        with when it was last asked for."""
        ...

    async def mark_pruned(self, target: str, digest: str) -> int:
        """The copies of ``digest`` at ``target`` were deleted: no longer mirrored."""
        ...

    async def add_pin(self, pin: Pin) -> bool:
        """False when the source was pinned already (its first pin stays)."""
        ...

    async def remove_pin(self, source: str) -> bool:
        """False when it was not pinned."""
        ...

    async def pins(self) -> list[Pin]: ...

    async def requesters_of(self, source: str) -> set[str]:
        """Who asked for a copy of ``source`` that is still there (``platform:id``)."""
        ...

    # -- the webhook outbox (mirror.webhooks) -------------------------------------------------

    def set_outbox(self, payload: Payload | None) -> None:
        """From now on, every image written in a final state (copied, failed, refused,
        denied, cancelled) adds a webhook delivery holding ``payload(job, item)``, in the
        same transaction; None: no webhooks."""
        ...

    async def pending_deliveries(self, limit: int = 50) -> list[Delivery]:
        """Deliveries not sent yet, oldest first."""
        ...

    async def delivered(self, delivery: str, when: float) -> None: ...

    async def delivery_failed(self, delivery: str, error: str) -> None:
        """One more attempt failed (``error``: why), for the operator to see."""
        ...

    async def forget_deliveries(self, sent_before: float) -> None:
        """Drop deliveries sent before ``sent_before``."""
        ...

    # -- chores -------------------------------------------------------------------------------

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Whether this process holds the lock ``name`` for the block, so a chore (the daily
        prune, the webhook sender) runs in one place however many processes share the
        store; PostgreSQL's is an advisory lock on a connection of the store's pool."""
        ...

    async def last_run(self, chore: str) -> float | None: ...

    async def ran(self, chore: str, when: float) -> None: ...

    async def get_language(self, user: str) -> str | None:
        """The language ``user`` (``telegram:42``) chose with ``/mirror lang``, if any."""
        ...

    async def set_language(self, user: str, language: str | None) -> None:
        """Remember ``user``'s language; None forgets it (back to the client's)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers (for the health check)."""
        ...

    async def close(self) -> None: ...
