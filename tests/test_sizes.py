"""One image, one size (issue 23): the progress bar, the answer and ``/inspect`` agree.

"bytes" is compressed blob bytes everywhere (DESIGN.md §4): the config and the layers, as the
source's manifest lists them — what ``/inspect`` shows for the platform, what the answer says
the copy moved, and the total of the bar in each stage of the copy, whichever engine copies.
"""

from __future__ import annotations

import asyncio
import json

import pytest

import lab as lab_module
from mirror.egress import EgressGuard
from mirror.engines.base import CopyRequest, Engine
from mirror.engines.docker import DockerEngine
from mirror.engines.registry.client import RegistryClient
from mirror.engines.registry.engine import RegistryEngine
from mirror.lookup import Lookups
from mirror.platform import parse_platform
from mirror.progress import ProgressEvent, ProgressTracker, Stage
from mirror.reference import ImageRef

AMD64 = parse_platform("linux/amd64")


def build(lab: lab_module.Lab, name: str) -> Engine:
    insecure = [lab.source, lab.target]
    if name == "docker":
        return DockerEngine.standalone(lab.docker_host, insecure=insecure)
    return RegistryEngine.standalone(insecure=insecure)


@pytest.mark.parametrize("engine_name", ["docker", "registry"])
async def test_progress_answer_and_inspect_count_the_same_bytes(
    lab: lab_module.Lab, engine_name: str
) -> None:
    repository = f"sizes/{engine_name}"
    lab_module.push_image(
        lab.source,
        repository,
        "1.0",
        (lab_module.LayerSpec(70_000, 7101), lab_module.LayerSpec(30_000, 7102)),
    )
    raw, _ = lab_module.pull_manifest(lab.source, repository, "1.0")
    manifest = json.loads(raw)
    expected = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])

    client = RegistryClient(insecure=[lab.source], guard=EgressGuard([lab.source]))
    try:
        [seen] = (
            await Lookups(client).inspect(ImageRef(lab.source, repository, "1.0", None))
        ).platforms
    finally:
        await client.aclose()

    # What a live message can show: the tracker between two turns of the event loop.
    loop = asyncio.get_running_loop()
    tracker = ProgressTracker()
    totals: dict[Stage, set[int | None]] = {Stage.COPYING: set(), Stage.PUSHING: set()}
    last: dict[Stage, tuple[int, int | None]] = {}

    def look() -> None:
        snap = tracker.snapshot()
        if snap.stage in totals:
            totals[snap.stage].add(snap.total)
            last[snap.stage] = (snap.done, snap.total)

    def sink(event: ProgressEvent) -> None:
        tracker.feed(event)
        loop.call_soon(look)

    engine = build(lab, engine_name)
    try:
        outcome = await engine.copy(
            CopyRequest(
                ImageRef(lab.source, repository, "1.0", None),
                ImageRef(lab.target, f"sizes/{engine_name}-copy", "1.0", None),
                AMD64,
            ),
            sink,
        )
    finally:
        await engine.aclose()

    assert seen.bytes == expected  # /inspect
    assert outcome.bytes == expected  # the answer
    for stage in (Stage.COPYING, Stage.PUSHING):  # the bar: the whole image in each stage
        assert totals[stage] == {expected}, stage
        assert last[stage] == (expected, expected), stage
