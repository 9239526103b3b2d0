"""One retry policy, measured at a fault proxy in front of a real lab registry.

The registry engine owns retries of registry faults, one loop per unit (a blob copy is one
unit); the job service does not retry on top; a blob several copies need at once moves once;
a pull limit (429 with a long ``Retry-After``) ends the attempt at once, with a sentence.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import lab as lab_module
from mirror.engines.base import CopyRequest
from mirror.engines.chooser import EngineChooser
from mirror.engines.faults import explain, of_daemon
from mirror.engines.registry.engine import RegistryEngine
from mirror.errors import CopyFailed, PullLimitReached
from mirror.jobs import JobService
from mirror.models import Item, ItemStatus, Job, new_job_id
from mirror.progress import ProgressEvent
from mirror.reference import ImageRef
from mirror.store import open_store
from tests.support.engines import engine_config, registry_with
from tests.support.faults import Fault, FaultProxy, fault_proxy

MULTI = "library/multi"
ATTEMPTS = 4


@pytest.fixture
async def proxy(lab: lab_module.Lab) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(lab.source) as found:
        yield found


def layers(lab: lab_module.Lab) -> list[str]:
    raw, _ = lab_module.pull_manifest(lab.source, MULTI, "1.0")
    return [layer["digest"] for layer in json.loads(raw)["layers"]]


def engine_for(lab: lab_module.Lab, proxy: FaultProxy) -> RegistryEngine:
    return RegistryEngine.standalone(
        insecure={proxy.address, lab.target}, attempts=ATTEMPTS, retry_wait=0.01
    )


def _ignore(_: ProgressEvent) -> None:
    return None


async def test_a_503_that_never_clears_costs_one_loop_of_attempts_not_a_product(
    lab: lab_module.Lab, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Through the job service, as the bot runs it: the engine's loop, nothing on top."""
    broken = layers(lab)[1]
    proxy.add(Fault("status", f"/blobs/{broken}$", status=503, times=-1))
    store = await open_store(tmp_path / "jobs.db")
    chooser = EngineChooser(
        "registry",
        {"registry": registry_with(attempts=ATTEMPTS, retry_wait=0.01)},
        engine_config(insecure={proxy.address, lab.target}),
    )
    service = JobService(store, chooser, attempts=3, retry_wait=0.01)
    source = ImageRef(proxy.address, MULTI, "1.0", None)
    target = ImageRef(lab.target, "retries/never", "1.0", None)
    job = Job(new_job_id(), "console:alice", "console:local", [Item("x", source, target, None)])
    try:
        done = await (await service.submit(job, lambda _: None))
    finally:
        await service.aclose()
        await chooser.aclose()
        await store.close()
    item = done.items[0]
    assert item.status is ItemStatus.FAILED
    assert item.error == f"The registry `{proxy.address}` kept failing (HTTP 503); try again later."
    assert len(proxy.requests("GET", f"/blobs/{broken}$")) == ATTEMPTS
    assert len(proxy.requests("GET", "/manifests/1.0$")) == 1  # planned once, not per attempt


async def test_a_blob_needed_by_two_copies_at_once_moves_once(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    engine = engine_for(lab, proxy)
    source = ImageRef(proxy.address, MULTI, "1.0", None)
    try:
        results = await asyncio.gather(
            *(
                engine.copy(
                    CopyRequest(source, ImageRef(lab.target, "retries/shared", tag, None), None),
                    _ignore,
                )
                for tag in ("a", "b")
            )
        )
    finally:
        await engine.aclose()
    assert {r.status for r in results} == {ItemStatus.SUCCEEDED}
    for digest in layers(lab):
        assert len(proxy.requests("GET", f"/blobs/{digest}$")) == 1
        lab_module.get_blob(lab.target, "retries/shared", digest)


LIMIT_HEADERS = {
    "Retry-After": "3600",
    "RateLimit-Limit": "100;w=21600",
    "RateLimit-Remaining": "0;w=21600",
}


async def test_a_pull_limit_ends_the_attempt_at_once_and_says_when_it_lifts(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    """Like Docker Hub past its limit: GETs of manifests answer 429, HEADs are not counted."""
    proxy.add(Fault("status", "/manifests/", status=429, headers=LIMIT_HEADERS, times=-1))
    engine = engine_for(lab, proxy)
    source = ImageRef(proxy.address, MULTI, "1.0", None)
    request = CopyRequest(source, ImageRef(lab.target, "retries/limited", "1.0", None), None)
    try:
        # the existence check is a HEAD: it still answers
        raw, _ = lab_module.pull_manifest(lab.source, MULTI, "1.0")
        assert (
            await engine.source_digest(request)
            == f"sha256:{lab_module.hashlib.sha256(raw).hexdigest()}"
        )
        before = datetime.now(UTC)
        with pytest.raises(PullLimitReached) as caught:
            await engine.copy(request, _ignore)
        limit = engine.client.pull_limit(proxy.address)
    finally:
        await engine.aclose()
    assert len(proxy.requests("GET", "/manifests/")) == 1  # not retried, not waited
    lifts = caught.value.lifts_at
    assert before + timedelta(seconds=3590) <= lifts <= datetime.now(UTC) + timedelta(seconds=3610)
    sentence = str(caught.value)
    assert re.fullmatch(
        rf"{re.escape(proxy.address)}'s pull limit of 100 is used up; it lifts at "
        r"(\d{4}-\d\d-\d\d )?\d\d:\d\d UTC\.",
        sentence,
    )
    assert lifts.strftime("%H:%M UTC") in sentence
    assert not caught.value.transient
    assert limit is not None and (limit.limit, limit.remaining) == (100, 0)


async def test_a_short_retry_after_is_waited_out_by_every_request_to_that_host(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    """One 429 on one blob moves the host's not-before time: the other blob reads wait too.

    One blob at a time, so every other read is sent after the 429 came back (the slot is
    free while the limited blob waits for its next attempt)."""
    raw, _ = lab_module.pull_manifest(lab.source, MULTI, "1.0")
    doc = json.loads(raw)
    # Blobs are read biggest first (ties in the manifest's order): the one read first.
    first = max([doc["config"], *doc["layers"]], key=lambda blob: blob["size"])["digest"]
    proxy.add(Fault("status", f"/blobs/{first}$", status=429, headers={"Retry-After": "1"}))
    engine = RegistryEngine.standalone(
        insecure={proxy.address, lab.target}, attempts=ATTEMPTS, retry_wait=0.01, blob_concurrency=1
    )
    source = ImageRef(proxy.address, MULTI, "1.0", None)
    try:
        result = await engine.copy(
            CopyRequest(source, ImageRef(lab.target, "retries/short", "1.0", None), None),
            _ignore,
        )
    finally:
        await engine.aclose()
    assert result.status is ItemStatus.SUCCEEDED
    limited = proxy.requests("GET", f"/blobs/{first}$")[0]
    assert limited.fault == "status"
    later = [s for s in proxy.seen if s.at > limited.at]
    assert len(later) >= len(layers(lab)) + 1  # the retry and every other blob
    assert all(s.at - limited.at >= 0.9 for s in later)


async def test_https_to_a_plain_http_registry_is_a_configuration_error(
    lab: lab_module.Lab,
) -> None:
    engine = RegistryEngine.standalone(
        insecure={lab.source}, allowed_internal={lab.source, lab.target}, retry_wait=0.01
    )
    request = CopyRequest(
        ImageRef(lab.source, "library/hello", "1.0", None),
        ImageRef(lab.target, "retries/tls", "1.0", None),
        None,
    )
    try:
        with pytest.raises(CopyFailed) as caught:
            await engine.copy(request, _ignore)
    finally:
        await engine.aclose()
    assert str(caught.value) == (
        f"The registry `{lab.target}` answers plain HTTP, not HTTPS: list it in "
        "MIRROR_INSECURE_REGISTRIES if that is intended."
    )
    assert not caught.value.transient


def test_the_daemons_plain_http_answer_is_a_configuration_error() -> None:
    target = ImageRef("registry.internal:5000", "team/app", "1", None)
    daemon_said = (
        'Get "https://registry.internal:5000/v2/": http: server gave HTTP response to HTTPS client'
    )
    error = explain(of_daemon(daemon_said, target.registry), target, pushing=True)
    assert isinstance(error, CopyFailed) and not error.transient
    assert "MIRROR_INSECURE_REGISTRIES" in str(error)


def test_the_daemons_pull_limit_is_not_retried() -> None:
    source = ImageRef("docker.io", "library/nginx", "1", None)
    daemon_said = (
        "toomanyrequests: You have reached your pull rate limit. You may increase the limit "
        "by authenticating and upgrading: https://www.docker.com/increase-rate-limit"
    )
    error = explain(of_daemon(daemon_said, source.registry), source, pushing=False)
    assert isinstance(error, CopyFailed) and not error.transient
    assert str(error).startswith("docker.io's pull limit is used up")
