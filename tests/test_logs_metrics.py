"""In-process checks of the log format and of the chat API counters fed by ``deliver``."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest

from bot.chat import RateLimited
from bot.delivery import deliver
from bot.logs import configure_logging
from bot.metrics import METRICS
from mirror.logcontext import job_context


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_json_lines_name_the_job_of_the_task_and_hide_secrets(
    restore_logging: object, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(["hunter2-secret"], level=logging.INFO, fmt="json")
    log = logging.getLogger("test.logs")

    async def work() -> None:
        log.info("pushing with password %s", "hunter2-secret")

    with job_context("ab12cd"):
        task = asyncio.create_task(work())  # created inside: inherits the job id
    await task
    log.info("between jobs")

    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["job"] == "ab12cd"
    assert first["msg"] == "pushing with password ***"
    assert first["logger"] == "test.logs" and first["level"] == "INFO"
    assert "job" not in second


def value(name: str, **labels: str) -> float:
    found = METRICS.registry.get_sample_value(name, labels)
    return found or 0.0


async def test_deliver_counts_rate_limits_and_retries_per_adapter() -> None:
    before_errors = value("mirror_chat_api_errors_total", adapter="t1", kind="rate_limited")
    before_retries = value("mirror_chat_api_retries_total", adapter="t1", kind="rate_limited")
    answers: list[BaseException | str] = [RateLimited(0.0), RateLimited(0.0), "sent"]

    async def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert await deliver(call, adapter="t1") == "sent"
    assert value("mirror_chat_api_errors_total", adapter="t1", kind="rate_limited") == (
        before_errors + 2
    )
    assert value("mirror_chat_api_retries_total", adapter="t1", kind="rate_limited") == (
        before_retries + 2
    )


async def test_deliver_counts_giving_up() -> None:
    async def call() -> str:
        raise RateLimited(5.0)

    with pytest.raises(TimeoutError):
        await deliver(call, adapter="t2", give_up_after=1.0)
    assert value("mirror_chat_api_errors_total", adapter="t2", kind="gave_up") == 1
    assert value("mirror_chat_api_retries_total", adapter="t2", kind="rate_limited") == 0
