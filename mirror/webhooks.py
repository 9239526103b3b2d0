"""Webhooks (issue 26): a signed POST per finished image, from a stored outbox.

When an image reaches its final state (copied, failed, refused, denied, cancelled), the store
writes a *delivery* in the same transaction as that state (:meth:`mirror.store.Store.set_outbox`
says what it holds: the audit row and the pull commands, which the bot renders), so a crash
can lose neither without the other. One :class:`WebhookSender` per deployment posts them in
order: every process that runs one takes the store's lock for each pass (with PostgreSQL, an
advisory lock on a connection of the store's pool), so several fronts send each delivery once.
A receiver that does not answer 2xx gets the same delivery again, with backoff (tenacity, the
one retry policy), until it does; the chats never wait for any of this, and a restart finds
the outbox where it was.

The body, as sent (``docs/operating.md``, "Webhooks")::

    {"delivery_id": "k3x9qa-0", "timestamp": "2026-05-04T12:00:07Z",
     "audit": {...the audit row...}, "pull": ["docker pull ... && docker tag ...", ...]}

``timestamp`` is when this attempt was sent, so a receiver can refuse an old body replayed;
``delivery_id`` stays the same across attempts, so it can drop a delivery it already has.
The header ``X-Mirror-Signature: sha256=HEX`` is the HMAC-SHA256 of the body's bytes under
``MIRROR_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mirror.audit import iso
from mirror.errors import MirrorError, StoreError

if TYPE_CHECKING:
    import aiohttp
    import tenacity

    from mirror.models import Item, Job
    from mirror.store import Store

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Mirror-Signature"
CHORE = "webhooks"
"""The sender's lock in the store."""
POLL_SECONDS = 2.0
"""How often a sender looks for deliveries written by another process (its own wake it)."""
TIMEOUT_SECONDS = 10.0
KEEP_SENT_SECONDS = 7 * 86400.0
"""Sent deliveries are kept this long (a delivery is written once per image), then dropped."""

Payload = Callable[["Job", "Item"], str]
"""What a delivery holds for one finished image, as JSON text: the bot's audit row and pull
commands (``bot.runtime``)."""


@dataclass(frozen=True)
class Delivery:
    """One finished image's POST, waiting in the outbox or sent."""

    id: str
    job_id: str
    idx: int
    payload: str
    """JSON text: the body without ``delivery_id`` and ``timestamp``."""
    created: float
    attempts: int = 0
    last_error: str | None = None


def delivery_id(job_id: str, idx: int) -> str:
    """One per image of a job: written twice, it is still one delivery."""
    return f"{job_id}-{idx}"


def body_of(delivery: Delivery, now: float) -> bytes:
    """The bytes POSTed (and signed): this attempt's time, and the stored payload."""
    document: dict[str, Any] = {"delivery_id": delivery.id, "timestamp": iso(now)}
    document.update(json.loads(delivery.payload))
    return json.dumps(document, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    """The ``X-Mirror-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class DeliveryFailed(MirrorError):
    """The receiver did not take a delivery (no answer, or not 2xx): it is sent again."""


class WebhookSender:
    """Posts the outbox's deliveries to ``url``, oldest first, each until the receiver takes
    it (:meth:`run`, until cancelled)."""

    def __init__(
        self,
        store: Store,
        url: str,
        secret: str,
        *,
        wait: tenacity.wait.wait_base | None = None,
        timeout: float = TIMEOUT_SECONDS,
        poll: float = POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``wait``: the backoff between two attempts at one delivery (by default from 1 s,
        doubling, up to 5 minutes)."""
        import tenacity  # only where a sender runs: the store imports this module

        self._store = store
        self._url = url
        self._secret = secret
        self._wait = wait or tenacity.wait_exponential(multiplier=1, min=1, max=300)
        self._timeout = timeout
        self._poll = poll
        self._clock = clock
        self._wake = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        """A delivery was written: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    await self.send_pending()
                except StoreError as exc:  # the outbox stays; the next pass tries again
                    log.warning("webhooks: the store failed: %s", exc.__cause__ or exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll):
                        await self._wake.wait()
        finally:
            await self.aclose()

    async def send_pending(self) -> int:
        """Send every delivery waiting, in order, if no other process is sending (the store's
        lock); how many were sent. A delivery the receiver refuses is tried again, with
        backoff, before the next one: the receiver sees them in order."""
        async with self._store.exclusive(CHORE) as mine:
            if not mine:
                return 0
            sent = 0
            while pending := await self._store.pending_deliveries(limit=50):
                for delivery in pending:
                    await self._deliver(delivery)
                    await self._store.delivered(delivery.id, self._clock())
                    sent += 1
            if sent:
                await self._store.forget_deliveries(self._clock() - KEEP_SENT_SECONDS)
            return sent

    async def _deliver(self, delivery: Delivery) -> None:
        import tenacity

        async def failed(state: tenacity.RetryCallState) -> None:
            await self._failed(delivery, state)

        async for attempt in tenacity.AsyncRetrying(
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(DeliveryFailed),
            before_sleep=failed,
        ):
            with attempt:
                await self._post(delivery)

    async def _failed(self, delivery: Delivery, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "webhook %s: not delivered (attempt %d): %s", delivery.id, state.attempt_number, error
        )
        with contextlib.suppress(StoreError):  # only a note for the operator
            await self._store.delivery_failed(delivery.id, str(error))

    async def _post(self, delivery: Delivery) -> None:
        import aiohttp

        body = body_of(delivery, self._clock())
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self._secret)}
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout), trust_env=True
            )
        try:
            async with self._http.post(self._url, data=body, headers=headers) as resp:
                if not 200 <= resp.status < 300:
                    raise DeliveryFailed(f"the receiver answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(f"the receiver did not answer ({type(exc).__name__})") from exc
        log.info("webhook %s delivered", delivery.id)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
