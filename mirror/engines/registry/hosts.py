"""Backoff belongs to the host (regclient's habit): one ``HostState`` per registry host.

A 429's ``Retry-After`` moves the host's not-before time, and every request to that host waits
for it, so a dozen blob tasks meeting one limit wait together instead of each hammering it.
A ``Retry-After`` of a minute or more is a pull limit, not congestion: waiting it out inside a
copy would only hold a slot, so the attempt ends at once with ``PullLimited``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mirror.errors import PullLimited, TooManyRequests

LONG_RETRY_AFTER = 60.0
"""A ``Retry-After`` this long (seconds) or longer ends the attempt instead of being waited."""

_LEADING_INT = re.compile(r"\s*(\d+)")


@dataclass(frozen=True)
class PullLimit:
    """``RateLimit-Limit`` / ``RateLimit-Remaining`` as a source last told them (Docker Hub
    writes ``100;w=21600``: 100 pulls per 6 hours)."""

    limit: int | None
    remaining: int | None
    seen_at: datetime


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    from email.utils import parsedate_to_datetime

    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return None


def _count(value: str | None) -> int | None:
    found = _LEADING_INT.match(value or "")
    return int(found.group(1)) if found else None


@dataclass
class HostState:
    """What every request to one registry host shares."""

    host: str
    not_before: float = 0.0
    """``time.monotonic()`` before which nobody sends to this host."""
    pull_limit: PullLimit | None = None
    long_retry_after: float = LONG_RETRY_AFTER
    """The ``Retry-After`` from which a 429 is a pull limit (tests make it short)."""

    async def wait(self) -> None:
        """Sleep until the host's not-before time (which a new 429 may push further)."""
        while (delay := self.not_before - time.monotonic()) > 0:
            await asyncio.sleep(delay)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Keep the source's pull-limit counters when it sends them."""
        limit, remaining = headers.get("RateLimit-Limit"), headers.get("RateLimit-Remaining")
        if limit is not None or remaining is not None:
            self.pull_limit = PullLimit(_count(limit), _count(remaining), datetime.now(UTC))

    def limited(self, retry_after: str | None) -> TooManyRequests | PullLimited:
        """A 429: move the not-before time; the error that ends this request.

        A long limit leaves the not-before time alone: existence checks (HEAD) are not
        counted against it and may go on; a counted request meets the 429 again at once.
        """
        seconds = retry_after_seconds(retry_after)
        if seconds is not None and seconds < self.long_retry_after:
            self.not_before = max(self.not_before, time.monotonic() + seconds)
        if seconds is not None and seconds >= self.long_retry_after:
            lifts_at = datetime.now(UTC) + timedelta(seconds=seconds)
            known = self.pull_limit
            return PullLimited(
                self.host,
                lifts_at,
                known.limit if known else None,
                known.remaining if known else None,
            )
        return TooManyRequests(self.host, seconds)
