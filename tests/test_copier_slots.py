"""How many copies run at once: ``MIRROR_CONCURRENCY`` is the ceiling, and copies through a
daemon (an engine that is not exact) run ``DAEMON_COPIES`` at a time under it (issue 24).

The engines here are plugins as a third party writes them (docs/engines.md): they copy
nothing and say so, and count how many of their copies are in progress at once. What is
tested is the copier's admission, with a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mirror.copier import DAEMON_COPIES, LocalCopier
from mirror.engines.base import CopyRequest, EngineConfig, EnginePlugin, ProgressSink
from mirror.engines.chooser import EngineChooser
from mirror.models import ItemStatus, Outcome
from mirror.reference import ImageRef
from mirror.store import Store, open_store
from tests.support.engines import engine_config


class Counting:
    """An engine whose copies wait until released, counting how many wait at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.running = 0
        self.most = 0
        self.release = asyncio.Event()

    async def ensure_available(self) -> None:
        return None

    async def source_digest(self, request: CopyRequest) -> str:
        return "sha256:" + "0" * 64

    async def target_digest(self, target: ImageRef) -> str | None:
        return None

    async def measure(self, request: CopyRequest) -> int | None:
        return None

    async def copy(self, request: CopyRequest, progress: ProgressSink) -> Outcome:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return Outcome(ItemStatus.SUCCEEDED, self.name, bytes=0)

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path / "slots.db")
    try:
        yield opened
    finally:
        await opened.close()


def request(n: int) -> CopyRequest:
    return CopyRequest(
        ImageRef("registry.example", f"team/app{n}", "1", None),
        ImageRef("mirror.example", f"m/app{n}", "1", None),
        None,
    )


async def run_copies(store: Store, *, exact: bool, concurrency: int, expect: int) -> int:
    """Ten copies with one engine; the most that ran at once, once ``expect`` of them run
    (each reads the store first, in its thread) and the others had time to join them."""
    engine = Counting("waiting")

    def build(_: EngineConfig) -> Counting:
        return engine

    chooser = EngineChooser(
        "waiting", {"waiting": EnginePlugin(build, exact=exact)}, engine_config()
    )
    copier = LocalCopier(store, chooser, concurrency=concurrency)
    copies = [asyncio.create_task(copier.copy(request(n), lambda _: None)) for n in range(10)]
    try:
        async with asyncio.timeout(30):
            while engine.running < expect:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # more would have started by now: a slow machine only hides it
        engine.release.set()
        outcomes = await asyncio.gather(*copies)
    finally:
        await chooser.aclose()
    assert {o.status for o in outcomes} == {ItemStatus.SUCCEEDED}
    return engine.most


async def test_exact_copies_run_up_to_the_ceiling(store: Store) -> None:
    assert await run_copies(store, exact=True, concurrency=8, expect=8) == 8


async def test_copies_through_a_daemon_run_two_at_a_time_whatever_the_ceiling(
    store: Store,
) -> None:
    assert await run_copies(store, exact=False, concurrency=8, expect=2) == DAEMON_COPIES == 2
    assert await run_copies(store, exact=False, concurrency=1, expect=1) == 1
