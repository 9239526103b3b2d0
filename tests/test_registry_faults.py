"""The registry engine when the source misbehaves: a fault-injecting proxy in front of it.

What must hold: transient faults are retried and the copy completes; a corrupted blob is
refused; and whatever happens, the target never gets a tag (or any manifest) whose blobs are
missing or wrong.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

import lab as lab_module
from mirror.engines.base import CopyRequest
from mirror.engines.registry.engine import RegistryEngine
from mirror.errors import CopyFailed
from mirror.progress import ProgressEvent
from mirror.reference import ImageRef
from tests.support.faults import Fault, FaultProxy, fault_proxy

MULTI = "library/multi"


@pytest.fixture
async def proxy(lab: lab_module.Lab) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(lab.source) as found:
        yield found


def layers(lab: lab_module.Lab) -> list[str]:
    raw, _ = lab_module.pull_manifest(lab.source, MULTI, "1.0")
    return [layer["digest"] for layer in json.loads(raw)["layers"]]


def engine_for(
    lab: lab_module.Lab, proxy: FaultProxy, *, read_timeout: float = 30.0
) -> RegistryEngine:
    """Quick retries (4 attempts, 10 ms backoff) so faults cost no time; Retry-After still rules."""
    return RegistryEngine.standalone(
        insecure={proxy.address, lab.target},
        attempts=4,
        retry_wait=0.01,
        max_wait=5.0,
        read_timeout=read_timeout,
    )


async def copy(
    lab: lab_module.Lab, proxy: FaultProxy, repository: str, *, read_timeout: float = 30.0
) -> tuple[str, str]:
    engine = engine_for(lab, proxy, read_timeout=read_timeout)
    try:
        result = await engine.copy(
            CopyRequest(
                ImageRef(proxy.address, MULTI, "1.0", None),
                ImageRef(lab.target, repository, "1.0", None),
                None,
            ),
            _ignore,
        )
    finally:
        await engine.aclose()
    return result.source_digest or "", result.target_digest


def _ignore(_: ProgressEvent) -> None:
    return None


def assert_copied(lab: lab_module.Lab, repository: str) -> None:
    raw, _ = lab_module.pull_manifest(lab.target, repository, "1.0")
    assert raw == lab_module.pull_manifest(lab.source, MULTI, "1.0")[0]
    for digest in layers(lab):
        lab_module.get_blob(lab.target, repository, digest)  # there and intact


def assert_nothing_tagged(lab: lab_module.Lab, repository: str) -> None:
    with pytest.raises(lab_module.RegistryError) as caught:
        lab_module.pull_manifest(lab.target, repository, "1.0")
    assert caught.value.status == 404
    raw, _ = lab_module.pull_manifest(lab.source, MULTI, "1.0")
    digest = lab_module.hashlib.sha256(raw).hexdigest()
    with pytest.raises(lab_module.RegistryError):
        lab_module.pull_manifest(lab.target, repository, f"sha256:{digest}")


async def test_a_connection_dropped_mid_blob_is_resumed(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    big = layers(lab)[-1]
    proxy.add(Fault("drop", f"/blobs/{big}$", after=512 * 1024))
    source_digest, target_digest = await copy(lab, proxy, "f/dropped")
    assert source_digest == target_digest
    assert len(proxy.requests("GET", f"/blobs/{big}$")) == 2
    assert_copied(lab, "f/dropped")


async def test_a_stalled_blob_times_out_and_is_fetched_again(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    big = layers(lab)[-1]
    proxy.add(Fault("stall", f"/blobs/{big}$", after=256 * 1024, seconds=5))
    await copy(lab, proxy, "f/stalled", read_timeout=0.5)
    assert len(proxy.requests("GET", f"/blobs/{big}$")) == 2
    assert_copied(lab, "f/stalled")


async def test_429_waits_for_retry_after(lab: lab_module.Lab, proxy: FaultProxy) -> None:
    proxy.add(Fault("status", "/manifests/1.0$", status=429, headers={"Retry-After": "1"}, times=1))
    await copy(lab, proxy, "f/limited")
    first, second = proxy.requests("GET", "/manifests/1.0$")[:2]
    assert first.fault == "status"
    assert second.fault is None
    # The backoff alone is 10 ms here: a second's gap is the Retry-After being honoured.
    assert second.at - first.at >= 0.9
    assert_copied(lab, "f/limited")


async def test_503s_are_retried_then_the_copy_completes(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    for digest in layers(lab):
        proxy.add(Fault("status", f"/blobs/{digest}$", status=503, times=2))
    await copy(lab, proxy, "f/flaky")
    assert_copied(lab, "f/flaky")


async def test_a_registry_that_keeps_failing_leaves_no_tag(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    proxy.add(Fault("status", f"/blobs/{layers(lab)[1]}$", status=503, times=-1))
    with pytest.raises(CopyFailed) as caught:
        await copy(lab, proxy, "f/down")
    assert not caught.value.transient  # the engine retried: the job service must not
    assert str(caught.value) == (
        f"The registry `{proxy.address}` kept failing (HTTP 503); try again later."
    )
    assert len(proxy.requests("GET", f"/blobs/{layers(lab)[1]}$")) == 4  # every attempt
    assert_nothing_tagged(lab, "f/down")


async def test_a_corrupted_byte_is_refused_and_never_committed(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    bad = layers(lab)[0]
    proxy.add(Fault("corrupt", f"/blobs/{bad}$", after=300_000, times=-1))
    with pytest.raises(CopyFailed) as caught:
        await copy(lab, proxy, "f/corrupt")
    assert not caught.value.transient
    assert str(caught.value) == (
        f"Content of `{proxy.address}/{MULTI}:1.0` arrived corrupted from `{proxy.address}` "
        "(its sha256 did not match); nothing was tagged at the target."
    )
    assert_nothing_tagged(lab, "f/corrupt")
    with pytest.raises(lab_module.RegistryError) as missing:
        lab_module.get_blob(lab.target, "f/corrupt", bad)
    assert missing.value.status == 404


async def test_blobs_already_in_another_repository_are_mounted(
    lab: lab_module.Lab, proxy: FaultProxy
) -> None:
    engine = engine_for(lab, proxy)
    source = ImageRef(proxy.address, MULTI, "1.0", None)
    try:
        for repository in ("f/first", "f/second"):
            target = ImageRef(lab.target, repository, "1.0", None)
            await engine.copy(CopyRequest(source, target, None), _ignore)
    finally:
        await engine.aclose()
    blob_reads = proxy.requests("GET", "/blobs/")
    assert len(blob_reads) == len(layers(lab)) + 1  # layers and config, once: for f/first
    assert_copied(lab, "f/second")
