"""Prometheus metrics of the bot: copies by outcome, bytes, durations, queue, chat API trouble.

One registry of our own (not prometheus_client's global one), so what ``/metrics`` shows is
exactly this bot's series. The core feeds it through ``JobService(on_outcome=...)`` and
``JobService.in_flight``; ``bot.delivery.deliver`` reports chat API errors and retries, the one
place chat calls are retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from mirror.models import ItemStatus, Outcome

ChatTrouble = Literal["rate_limited", "failed", "gave_up", "undeliverable"]

DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.copies = Counter(
            "mirror_copies",
            "Copies that ended, by final status (coalesced requests count once).",
            ["status"],
            registry=self.registry,
        )
        for status in ItemStatus:
            if status.finished:  # every series exists from the start, at 0
                self.copies.labels(status=status.value)
        self.bytes = Counter(
            "mirror_copied_bytes",
            "Bytes of images copied by successful copies.",
            registry=self.registry,
        )
        self.duration = Histogram(
            "mirror_copy_duration_seconds",
            "Wall time of successful copies, queue wait excluded.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "mirror_queue_depth",
            "Copies waiting for a slot or running.",
            registry=self.registry,
        )
        self.chat_errors = Counter(
            "mirror_chat_api_errors",
            "Chat API calls that failed: rate_limited (429), failed (unreachable, timed out, "
            "server error; or a bug, not retried), undeliverable (refused for good), "
            "gave_up (no more retries).",
            ["adapter", "kind"],
            registry=self.registry,
        )
        self.chat_retries = Counter(
            "mirror_chat_api_retries",
            "Chat API calls retried after an error, by the error's kind.",
            ["adapter", "kind"],
            registry=self.registry,
        )

    def observe_outcome(self, outcome: Outcome) -> None:
        self.copies.labels(status=outcome.status.value).inc()
        if outcome.status is ItemStatus.SUCCEEDED:
            self.bytes.inc(outcome.bytes or 0)
            if outcome.seconds is not None:
                self.duration.observe(outcome.seconds)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Read the queue depth at every scrape, so it is never stale."""
        self.queue.set_function(lambda: float(depth()))

    def chat_trouble(self, adapter: str, kind: ChatTrouble, *, retrying: bool) -> None:
        self.chat_errors.labels(adapter=adapter, kind=kind).inc()
        if retrying:
            self.chat_retries.labels(adapter=adapter, kind=kind).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = Metrics()
"""The process's metrics; ``mirror-bot run`` serves them when MIRROR_METRICS_PORT is set."""
