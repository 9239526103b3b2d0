"""Large blobs over long, lossy links: parallel ``Range`` reads, resume after a cut, and the
one-stream fallback for a source that ignores ``Range`` (issue 11 §2).

A fault proxy of ours sits in front of the lab's source registry: it cuts connections, strips
``Range`` and counts the body bytes it sends, so each test can say how much was read twice.
Part sizes are small here (the production ones are tens of MiB) so a few-MiB layer has many
parts; the code paths are the same.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import lab as lab_module
from mirror.engines.base import CopyRequest
from mirror.engines.registry.blobread import RESUME_AFTER, Ranged, Streams
from mirror.engines.registry.engine import RegistryEngine
from mirror.progress import ProgressEvent
from mirror.reference import ImageRef
from tests.support.faults import Fault, FaultProxy, fault_proxy

BIG = "ranged/big"
LAYER = lab_module.LayerSpec(16 << 20, 4242)


@pytest.fixture
async def proxy(lab: lab_module.Lab) -> AsyncIterator[FaultProxy]:
    lab_module.push_image(lab.source, BIG, "1.0", [lab_module.LayerSpec(64 << 10, 4241), LAYER])
    async with fault_proxy(lab.source) as found:
        yield found


def big_layer(lab: lab_module.Lab) -> tuple[str, int]:
    raw, _ = lab_module.pull_manifest(lab.source, BIG, "1.0")
    layer = json.loads(raw)["layers"][-1]
    return layer["digest"], layer["size"]


async def copy(
    lab: lab_module.Lab, proxy: FaultProxy, repository: str, ranged: Ranged
) -> tuple[str, str]:
    engine = RegistryEngine.standalone(
        insecure={proxy.address, lab.target}, attempts=4, retry_wait=0.01, ranged=ranged
    )
    try:
        result = await engine.copy(
            CopyRequest(
                ImageRef(proxy.address, BIG, "1.0", None),
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


def assert_exact_copy(lab: lab_module.Lab, repository: str) -> None:
    """The target holds the source's manifest byte for byte, and every blob whole."""
    raw, _ = lab_module.pull_manifest(lab.target, repository, "1.0")
    assert raw == lab_module.pull_manifest(lab.source, BIG, "1.0")[0]
    for layer in json.loads(raw)["layers"]:
        data = lab_module.get_blob(lab.target, repository, layer["digest"])
        assert lab_module.hashlib.sha256(data).hexdigest() == layer["digest"].split(":")[1]


def parallel(
    tmp_path: Path, streams: int = 4, split_after: float = 0.0, part_size: int = 512 << 10
) -> Ranged:
    """Small parts for blobs from 1 MiB; split at once (``split_after`` 0: whatever the first
    stream's speed, which on loopback would never call for it)."""
    return Ranged(
        streams=streams,
        part_size=part_size,
        threshold=1 << 20,
        probe=0.0,
        split_after=split_after,
        spool_dir=tmp_path / "spool",
        measured=False,  # all the streams at once: these tests count parts
    )


def ranges(proxy: FaultProxy, digest: str) -> list[tuple[int, int | None]]:
    found = []
    for seen in proxy.requests("GET", f"/blobs/{digest}$"):
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", seen.range or "")
        assert match is not None, f"a GET without a range: {seen}"
        found.append((int(match.group(1)), int(match.group(2)) if match.group(2) else None))
    return found


async def test_a_large_blob_is_read_as_parallel_ranges_each_byte_once(
    lab: lab_module.Lab, proxy: FaultProxy, tmp_path: Path
) -> None:
    digest, size = big_layer(lab)
    source_digest, target_digest = await copy(lab, proxy, "r/parallel", parallel(tmp_path))
    assert source_digest == target_digest
    assert_exact_copy(lab, "r/parallel")
    asked = sorted(ranges(proxy, digest))
    assert len(asked) == -(-size // (512 << 10))  # every part asked for once
    assert asked[0][0] == 0
    for (_, last), (start, _) in itertools.pairwise(asked):
        assert last is not None and start == last + 1  # contiguous, no overlap
    assert asked[-1][1] == size - 1
    assert proxy.sent[f"/v2/{BIG}/blobs/{digest}"] == size  # nothing read twice
    assert list((tmp_path / "spool").iterdir()) == []  # the spool left nothing behind


async def test_a_fast_source_is_not_split(
    lab: lab_module.Lab, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Loopback is fast: the rest of the blob is one more stream, and no spool is made."""
    digest, size = big_layer(lab)
    await copy(lab, proxy, "r/fast", parallel(tmp_path, split_after=3600.0))
    assert_exact_copy(lab, "r/fast")
    assert ranges(proxy, digest) == [(0, (512 << 10) - 1), (512 << 10, None)]
    assert proxy.sent[f"/v2/{BIG}/blobs/{digest}"] == size
    assert not (tmp_path / "spool").exists()


async def test_a_small_blob_is_one_plain_stream(
    lab: lab_module.Lab, proxy: FaultProxy, tmp_path: Path
) -> None:
    raw, _ = lab_module.pull_manifest(lab.source, BIG, "1.0")
    small = json.loads(raw)["layers"][0]["digest"]
    await copy(lab, proxy, "r/small", parallel(tmp_path))
    (only,) = proxy.requests("GET", f"/blobs/{small}$")
    assert only.range is None


@pytest.mark.parametrize("streams", [1, 4])
async def test_a_cut_connection_resumes_from_the_last_byte(
    lab: lab_module.Lab, proxy: FaultProxy, tmp_path: Path, streams: int
) -> None:
    """Cut one connection mid-blob (with 4 streams: mid-part). The bytes the proxy sends in
    all are the blob and what was in flight when it cut (aiohttp drops what it had buffered
    but not handed on; on loopback up to a MiB or so): far fewer than the blob."""
    digest, size = big_layer(lab)
    cut_after = (3 << 20) if streams > 1 else size // 2  # a 4 MiB part, cut at 3 MiB
    proxy.add(Fault("drop", f"/blobs/{digest}$", after=cut_after))
    source_digest, target_digest = await copy(
        lab, proxy, f"r/resumed-{streams}", parallel(tmp_path, streams, part_size=8 << 20)
    )
    assert source_digest == target_digest
    assert_exact_copy(lab, f"r/resumed-{streams}")
    reread = proxy.sent[f"/v2/{BIG}/blobs/{digest}"] - size
    assert 0 <= reread < size // 4
    (cut,) = [seen for seen in proxy.seen if seen.fault == "drop"]
    start = int((cut.range or "bytes=0-").removeprefix("bytes=").partition("-")[0])
    last = (cut.range or "bytes=0-").partition("-")[2]
    resumed = [
        int(seen.range.removeprefix("bytes=").partition("-")[0])
        for seen in proxy.requests("GET", f"/blobs/{digest}$")
        if seen.at > cut.at and seen.range and seen.range.endswith(f"-{last}")
    ]
    assert any(start + RESUME_AFTER <= at <= start + cut_after for at in resumed), resumed
    assert start + cut_after - max(resumed) == reread  # re-read: only what was in flight


async def test_a_source_that_ignores_range_is_read_as_one_stream(
    lab: lab_module.Lab, proxy: FaultProxy, tmp_path: Path
) -> None:
    digest, size = big_layer(lab)
    proxy.strip_range = True
    source_digest, target_digest = await copy(lab, proxy, "r/whole", parallel(tmp_path))
    assert source_digest == target_digest
    assert_exact_copy(lab, "r/whole")
    (only,) = proxy.requests("GET", f"/blobs/{digest}$")
    assert only.range is not None  # it was asked for a part, answered with the whole
    assert proxy.sent[f"/v2/{BIG}/blobs/{digest}"] == size


async def test_a_cut_stream_resumes_even_when_the_source_ignores_range(
    lab: lab_module.Lab, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The source sends the whole blob again: what we already have is skipped, not doubled."""
    digest, size = big_layer(lab)
    proxy.strip_range = True
    proxy.add(Fault("drop", f"/blobs/{digest}$", after=size // 2))
    source_digest, target_digest = await copy(lab, proxy, "r/skipped", parallel(tmp_path))
    assert source_digest == target_digest
    assert_exact_copy(lab, "r/skipped")
    _, second = proxy.requests("GET", f"/blobs/{digest}$")
    resumed_at = int((second.range or "").removeprefix("bytes=").removesuffix("-"))
    assert RESUME_AFTER <= resumed_at <= size // 2  # less what was in flight at the cut


async def test_a_cut_without_progress_is_the_engines_retry_not_a_resume(
    lab: lab_module.Lab, proxy: FaultProxy, tmp_path: Path
) -> None:
    """A connection that dies before RESUME_AFTER bytes is not progressing: the unit is tried
    again from the start, within the engine's attempts, so resumes never multiply them."""
    digest, _size = big_layer(lab)
    proxy.add(Fault("drop", f"/blobs/{digest}$", after=1024))
    await copy(lab, proxy, "r/restart", parallel(tmp_path, streams=1))
    assert_exact_copy(lab, "r/restart")
    first, second = proxy.requests("GET", f"/blobs/{digest}$")
    assert (first.range, second.range) == (None, None)  # from zero again, a fresh upload


@pytest.mark.parametrize("size", [16 << 20, 128 << 20, 256 << 20, 1 << 30, (1 << 30) + 12345])
def test_parts_are_equal_and_as_many_for_every_stream(size: int) -> None:
    """Every stream reads the same bytes, so they all end together; no part outgrows the
    spool's slot size."""
    ranged = Ranged()
    part = ranged.part_for(size)
    rounds = -(-size // (ranged.streams * ranged.part_size))
    assert part <= ranged.part_size
    assert part % (64 << 10) == 0
    assert -(-size // part) == ranged.streams * rounds


class Link:
    """A link model for :class:`Streams`, on a clock of our own: ``per_stream`` bytes/s for
    each open stream, at most ``total`` for all of them. A new stream carries ``ramp`` of its
    rate for its first ``ramp_seconds`` (a new connection's set-up and TCP slow start)."""

    def __init__(
        self,
        streams: Streams,
        clock: list[float],
        per_stream: float,
        total: float,
        ramp: tuple[float, float] = (1.0, 0.0),
    ):
        self.streams, self.clock = streams, clock
        self.per_stream, self.total = per_stream, total
        self.ramp, self.ramp_seconds = ramp
        self.opened: list[float] = []

    @property
    def open(self) -> int:
        return len(self.opened)

    def close_one(self) -> None:
        self.opened.pop(0)

    def add(self, count: int) -> None:
        for _ in range(count):
            trial = self.streams.opened()
            self.opened.append(self.clock[0])
            self.run(0.05)
            if trial is not None:
                self.streams.flowing(trial)

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.01)):
            self.clock[0] += 0.01
            now = self.clock[0]
            offered = sum(
                self.per_stream * (self.ramp if now - at < self.ramp_seconds else 1.0)
                for at in self.opened
            )
            self.streams.received(round(min(offered, self.total) * 0.01))


def drive(
    per_stream: float, total: float, ceiling: int = 24, ramp: tuple[float, float] = (1.0, 0.0)
) -> tuple[Streams, Link]:
    clock = [0.0]
    streams = Streams(window=0.25, clock=lambda: clock[0])
    link = Link(streams, clock, per_stream, total, ramp)
    link.add(1)
    for _ in range(200):  # 10 s of asking every 50 ms, as a split blob's pilot does
        link.add(streams.more(ceiling - link.open))
        link.run(0.05)
        if streams.too_many():  # a stream that finished its part ends
            streams.closed()
            link.close_one()
    return streams, link


def test_streams_grow_while_each_connection_is_the_limit() -> None:
    """8 MB/s per connection and no cap on the link: every stream adds, up to the ceiling."""
    streams, link = drive(8e6, float("inf"), ceiling=24)
    assert link.open == 24
    assert streams.limit is None and not streams.full()


def test_streams_grow_though_new_ones_start_slow() -> None:
    """New streams that carry 60 % of their rate in their first 0.3 s (measured on the relay:
    a connection's set-up and slow start) still count as paying: a trial is judged full only
    when its streams bring under half a stream's worth each, not when they are still
    starting (a link judged full at 3/4 kept a copy to its first streams and took twice as
    long)."""
    streams, link = drive(8e6, float("inf"), ceiling=24, ramp=(0.6, 0.3))
    assert link.open == 24
    assert streams.limit is None


@pytest.mark.parametrize("ramp", [(1.0, 0.0), (0.6, 0.3)])
@pytest.mark.parametrize(("total", "enough"), [(24e6, 3), (40e6, 5)])
def test_streams_stop_growing_when_the_link_is_full(
    total: float, enough: int, ramp: tuple[float, float]
) -> None:
    """With a cap on the whole link, streams beyond what fills it bring nothing: the limit is
    what fills it, and the extra streams end after their part. Where new streams start slow,
    a trial measured while the last ones were still starting may keep one or two more than
    fill the link (they share it: a request each, no time), never fewer."""
    streams, link = drive(8e6, total, ramp=ramp)
    assert streams.limit is not None and streams.full()
    if ramp == (1.0, 0.0):
        assert streams.limit == enough
    else:
        assert enough <= streams.limit <= enough + 2
    assert link.open == streams.limit
