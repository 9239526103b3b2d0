"""Retrying a unit of work: as many attempts as asked, only for faults worth it, the waits
of tenacity's ``wait_exponential``, and tenacity left unimported while nothing is retried."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mirror.retrying import backoff, retried


class Passing(Exception):
    """A fault worth another attempt."""


async def test_a_unit_is_tried_until_it_succeeds_within_its_attempts() -> None:
    calls: list[int] = []

    async def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Passing
        return "done"

    result = await retried(
        step,
        attempts=3,
        retry_if=lambda exc: isinstance(exc, Passing),
        multiplier=0.001,
        max_wait=0.01,
    )
    assert result == "done" and len(calls) == 3


async def test_the_last_failure_is_raised_and_others_are_not_retried() -> None:
    calls: list[int] = []

    async def failing() -> None:
        calls.append(1)
        raise Passing

    with pytest.raises(Passing):
        await retried(
            failing,
            attempts=4,
            retry_if=lambda exc: isinstance(exc, Passing),
            multiplier=0.001,
            max_wait=0.01,
        )
    assert len(calls) == 4

    async def broken() -> None:
        calls.append(1)
        raise ValueError("a bug")

    calls.clear()
    with pytest.raises(ValueError, match="a bug"):
        await retried(
            broken,
            attempts=4,
            retry_if=lambda exc: isinstance(exc, Passing),
            multiplier=0.001,
            max_wait=0.01,
        )
    assert len(calls) == 1


def test_the_waits_are_tenacitys() -> None:
    import tenacity

    theirs = tenacity.wait_exponential(multiplier=0.5, max=3.0)
    for attempt in range(1, 8):
        state = tenacity.RetryCallState(tenacity.AsyncRetrying(), None, (), {})
        state.attempt_number = attempt
        assert backoff(attempt, 0.5, 3.0) == theirs(state)


def test_a_copy_that_never_retries_never_imports_tenacity() -> None:
    code = (
        "import asyncio, sys\n"
        "from mirror.retrying import retried\n"
        "async def ok(): return 1\n"
        "asyncio.run(retried(ok, attempts=3, retry_if=lambda e: True, multiplier=1, max_wait=1))\n"
        "print('tenacity' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
