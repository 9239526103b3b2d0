"""The job service with the real Docker engine, the real daemon and a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import lab as lab_module
from mirror.engines import installed
from mirror.engines.chooser import EngineChooser
from mirror.jobs import JobService
from mirror.models import Item, ItemStatus, Job, new_job_id
from mirror.naming import parse_image_spec, parse_target_base, target_for
from mirror.platform import DEFAULT_PLATFORM
from mirror.store import open_store
from tests.support.docker_events import pulls_since
from tests.support.engines import engine_config


@pytest.fixture
async def service(lab: lab_module.Lab, tmp_path: Path) -> AsyncIterator[JobService]:
    store = await open_store(tmp_path / "jobs.db")
    config = engine_config(insecure={lab.target}, docker_host=lab.docker_host)
    chooser = EngineChooser("docker", installed(), config)
    jobs = JobService(store, chooser, concurrency=2)
    try:
        yield jobs
    finally:
        await jobs.aclose()
        await chooser.aclose()
        await store.close()


def item_for(lab: lab_module.Lab, image: str, namespace: str) -> Item:
    spec = parse_image_spec(image)
    base = parse_target_base(f"{lab.target}/{namespace}")
    target = target_for(spec, base, DEFAULT_PLATFORM, DEFAULT_PLATFORM)
    return Item(spec.text, spec.source, target, DEFAULT_PLATFORM)


def job_of(*items: Item, requester: str = "console:alice") -> Job:
    return Job(new_job_id(), requester, "console:local", list(items))


async def test_identical_requests_in_flight_share_one_copy(
    lab: lab_module.Lab, service: JobService
) -> None:
    image = f"{lab.source}/library/multi:1.0"
    first = job_of(item_for(lab, image, "coalesce"), requester="console:alice")
    second = job_of(item_for(lab, image, "coalesce"), requester="console:bob")
    seen: dict[str, set[str]] = {first.id: set(), second.id: set()}

    def watch(job: Job) -> None:
        progress = job.items[0].progress
        if progress is not None:
            seen[job.id].add(progress.stage.value)

    started = time.time_ns()
    task_a = await service.submit(first, watch)
    task_b = await service.submit(second, watch)
    done_a, done_b = await asyncio.gather(task_a, task_b)

    assert done_a.items[0].status is ItemStatus.SUCCEEDED
    assert done_b.items[0].status is ItemStatus.SUCCEEDED
    assert done_a.items[0].target_digest == done_b.items[0].target_digest
    assert "copying" in seen[first.id] and "copying" in seen[second.id]  # both watched it
    assert len(pulls_since(lab.docker_host, started)) == 1
    stored = await service.store.get_job(second.id)
    assert stored is not None and stored.items[0].status is ItemStatus.SUCCEEDED


async def test_cancel_marks_the_job_and_stores_it(lab: lab_module.Lab, service: JobService) -> None:
    from tests.support.throttle import throttled

    with throttled(lab.source, rate=512 * 1024) as slow:
        job = job_of(item_for(lab, f"{slow.address}/library/multi:1.0", "cancel"))
        copying = asyncio.Event()

        def watch(job: Job) -> None:
            progress = job.items[0].progress
            if progress is not None and progress.stage.value == "copying":
                copying.set()

        task = await service.submit(job, watch)
        await asyncio.wait_for(copying.wait(), timeout=60)
        assert await service.cancel(job.id)
        assert task.cancelled() or task.done()
    stored = await service.store.get_job(job.id)
    assert stored is not None
    assert stored.items[0].status is ItemStatus.CANCELLED
    assert stored.state == "cancelled"


async def test_a_target_holding_another_source_is_refused(
    lab: lab_module.Lab, service: JobService
) -> None:
    from mirror.errors import NameConflict

    hello = item_for(lab, f"{lab.source}/library/hello:1.0$shared:v1", "conflict")
    finished = await (await service.submit(job_of(hello), lambda job: None))
    assert finished.items[0].status is ItemStatus.SUCCEEDED
    multi = item_for(lab, f"{lab.source}/library/multi:1.0$shared:v1", "conflict")
    with pytest.raises(NameConflict, match="already holds a copy"):
        await service.check_targets([multi])
    await service.check_targets([hello])  # the same source again is fine


async def test_an_image_over_the_confirm_size_waits_stored_across_a_restart(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """Measured by the registry engine though the daemon copies; stored as awaiting with its
    size before anyone hears; a restart waits again without pulling; once agreed (stored), the
    next restart copies without asking; an image under the size is never asked about."""
    store = await open_store(tmp_path / "confirm.db")
    big = job_of(item_for(lab, f"{lab.source}/library/multi:1.0", "confirm"))
    small = job_of(item_for(lab, f"{lab.source}/library/hello:1.0", "confirm"))
    heard: list[ItemStatus] = []

    async def stored(job: Job) -> Item:
        found = await store.get_job(job.id)
        assert found is not None
        return found.items[0]

    def listen(job: Job) -> None:
        if job.id == big.id:  # what the listener hears is already stored
            heard.append(job.items[0].status)

    started = time.time_ns()
    try:
        for round_ in range(3):
            config = engine_config(insecure={lab.source, lab.target}, docker_host=lab.docker_host)
            chooser = EngineChooser("docker", installed(), config)
            service = JobService(store, chooser, confirm_bytes=1_000_000)
            try:
                if round_ == 0:
                    await service.submit(big, listen)
                    small_done = await (await service.submit(small, listen))
                    assert small_done.items[0].status is ItemStatus.SUCCEEDED
                    await asyncio.wait_for(_until_awaiting(service, big.id), 60)
                    asked = await stored(big)
                    assert asked.status is ItemStatus.AWAITING
                    assert asked.bytes is not None and asked.bytes > 6 << 20
                    assert heard == [ItemStatus.AWAITING]
                elif round_ == 1:  # restarted: still waiting, not measured or pulled again
                    [resumed] = await store.unfinished_jobs()
                    assert resumed.items[0].status is ItemStatus.AWAITING
                    service.start(resumed, listen)
                    await asyncio.wait_for(_until_awaiting(service, big.id), 60)
                    assert await service.confirm(big.id) == 1
                    assert (await stored(big)).status is ItemStatus.QUEUED
                    # ...and the bot stops at once, before the copy could begin.
                else:
                    [agreed] = await store.unfinished_jobs()
                    assert agreed.items[0].bytes is not None
                    done = await service.start(agreed, listen)
                    assert done.items[0].status is ItemStatus.SUCCEEDED
                    assert (await stored(big)).status is ItemStatus.SUCCEEDED
            finally:
                await service.aclose()
                await chooser.aclose()
        pulled = [str(e.get("id", "")) for e in pulls_since(lab.docker_host, started)]
        assert sum("library/hello" in p for p in pulled) == 1
        assert sum("library/multi" in p for p in pulled) == 1, pulled  # only once agreed
    finally:
        await store.close()


async def _until_awaiting(service: JobService, job_id: str) -> None:
    while True:
        job = service.active(job_id)
        if job is not None and job.items[0].status is ItemStatus.AWAITING:
            return
        await asyncio.sleep(0.05)
