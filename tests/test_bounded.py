"""Per-process tables stay the size of what is in flight or recently used, not of everything a
long-running bot ever saw (issue 23): the caches and lock tables of the engines and the
registry client."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from mirror.bounded import LRU, KeyedLocks
from mirror.engines.registry.auth import TOKENS, RegistryAuth
from mirror.engines.registry.engine import KNOWN_BLOBS, RegistryEngine
from mirror.reference import ImageRef


def test_an_lru_forgets_the_least_recently_used() -> None:
    cache: LRU[str, int] = LRU(3)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache[key] = value
    assert cache["a"] == 1  # read: now the newest
    cache["d"] = 4
    assert list(cache) == ["c", "a", "d"]
    assert cache.setdefault("a", 9) == 1 and "b" not in cache
    with pytest.raises(ValueError):
        LRU(0)


async def test_keyed_locks_exclude_per_key_and_are_dropped_when_idle() -> None:
    locks = KeyedLocks()
    inside: list[str] = []

    async def use(key: str) -> None:
        async with locks.hold(key):
            inside.append(key)
            assert inside.count(key) == 1  # nobody else holds this key now
            await asyncio.sleep(0)
            inside.remove(key)

    await asyncio.gather(*(use(f"k{n % 7}") for n in range(200)))
    assert len(locks) == 0


async def test_bearer_tokens_kept_are_bounded_and_their_locks_dropped() -> None:
    served = 0

    async def token_service(host: str, url: str, headers: Mapping[str, str]) -> Any:
        nonlocal served
        served += 1
        return {"token": f"t{served}", "expires_in": 300}

    auth = RegistryAuth(token_service)
    assert await auth.learn("r.example", 'Bearer realm="https://r.example/token",service="r"')
    for n in range(TOKENS + 50):
        flow = auth.flow("r.example", f"repository:team/app{n}:pull", replayable=True)
        assert await flow.asend(None) == f"Bearer t{n + 1}"
        await flow.aclose()
    assert len(auth._tokens) == TOKENS
    assert len(auth._token_locks) == 0
    # the newest scope's token is still cached: no new request for it
    flow = auth.flow("r.example", f"repository:team/app{TOKENS + 49}:pull", replayable=True)
    assert await flow.asend(None) == f"Bearer t{TOKENS + 50}"
    await flow.aclose()


async def test_blobs_remembered_for_mounting_are_bounded() -> None:
    engine = RegistryEngine.standalone()
    try:
        target = ImageRef("r.example", "team/app", "1", None)
        for n in range(KNOWN_BLOBS + 100):
            engine._remember(target, f"sha256:{n:064x}")
        assert len(engine._known) == KNOWN_BLOBS
        assert ("r.example", f"sha256:{KNOWN_BLOBS + 99:064x}") in engine._known
    finally:
        await engine.aclose()
