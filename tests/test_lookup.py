"""A miss answered with the nearest real thing, ``/tags`` and ``/inspect`` (issue 12).

Against the lab's real registries: ``library/app`` on the source has many tags (listed in pages
``?n=10``), multi-arch indexes are pushed here, and the command line runs as a user runs it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pexpect
import pytest

import lab as lab_module
from mirror.egress import EgressGuard
from mirror.engines.base import CopyRequest
from mirror.engines.registry.client import RegistryClient
from mirror.engines.registry.engine import RegistryEngine
from mirror.errors import PlatformMissing, SourceMissing
from mirror.lookup import Lookups
from mirror.platform import Platform
from mirror.reference import ImageRef
from tests.support.cli import MIRROR_BOT, bot_env, run_json
from tests.test_registry_engine import multi_arch

S390X = Platform("linux", "s390x")


def lab_client(lab: lab_module.Lab) -> RegistryClient:
    hosts = {lab.source, lab.target, lab.auth}
    return RegistryClient(insecure=hosts, guard=EgressGuard(hosts))


@pytest.fixture
async def lookups(lab: lab_module.Lab) -> AsyncIterator[Lookups]:
    found = Lookups(lab_client(lab), page_size=10)
    yield found
    await found.client.aclose()


def app(lab: lab_module.Lab, tag: str) -> ImageRef:
    return ImageRef(lab.source, "library/app", tag, None)


# -- the registry side ---------------------------------------------------------------------------


async def test_tags_are_listed_across_pages(lab: lab_module.Lab) -> None:
    client = lab_client(lab)
    try:
        paged = await client.list_tags(lab.source, "library/app", page_size=10)
        whole = await client.list_tags(lab.source, "library/app")
    finally:
        await client.aclose()
    assert len(lab_module.APP_TAGS) > 20  # more than two pages of ten
    assert sorted(paged) == sorted(lab_module.APP_TAGS)
    assert sorted(whole) == sorted(paged)


async def test_a_missing_tag_gets_its_neighbours(lab: lab_module.Lab, lookups: Lookups) -> None:
    request = CopyRequest(app(lab, "1.2.5"), ImageRef(lab.target, "m/app", "1.2.5", None), None)
    advice = await lookups.advise(SourceMissing("not found"), request)
    assert advice is not None
    assert advice.suggestions[0] == f"{lab.source}/library/app:1.2.4"
    assert f"{lab.source}/library/app:2.0.0" in advice.suggestions  # the newest release
    assert len(advice.suggestions) <= 5
    tags = [s.rsplit(":", 1)[1] for s in advice.suggestions]
    assert not any("alpine" in t or "sha256" in t or "rc" in t for t in tags)
    assert advice.sentence.startswith(f"`{lab.source}/library/app:1.2.5` does not exist; nearest:")
    assert "`1.2.4`" in advice.sentence


async def test_a_tag_that_exists_gets_no_advice(lab: lab_module.Lab, lookups: Lookups) -> None:
    request = CopyRequest(app(lab, "1.2.4"), ImageRef(lab.target, "m/app", "1.2.4", None), None)
    assert await lookups.advise(SourceMissing("denied"), request) is None


async def test_a_missing_repository_is_looked_for_on_the_well_known_registries(
    lab: lab_module.Lab,
) -> None:
    lab_module.push_image(lab.target, "ghost", "1.0", lab_module.HELLO_LAYERS)
    missing = ImageRef(lab.source, "library/ghost", "1.0", None)
    request = CopyRequest(missing, ImageRef(lab.target, "m/ghost", "1.0", None), None)
    unreachable = "127.0.0.1:9"  # nothing listens: no answer is no suggestion

    everywhere = Lookups(
        lab_client(lab), hub=lab.source, well_known=(unreachable, lab.target), attempts=1
    )
    advice = await everywhere.advise(SourceMissing("not found"), request)
    await everywhere.client.aclose()
    assert advice is not None
    assert advice.suggestions == (f"{lab.target}/ghost:1.0",)
    assert advice.sentence == (
        f"`{lab.source}/library/ghost:1.0` is not on Docker Hub; it exists as "
        f"`{lab.target}/ghost:1.0`."
    )

    # A registry the source allowlist does not name is never asked.
    asked: list[str] = []

    def allowed(ref: ImageRef) -> bool:
        asked.append(ref.registry)
        return ref.registry != lab.target

    strict = Lookups(lab_client(lab), hub=lab.source, well_known=(lab.target,), allowed=allowed)
    assert await strict.advise(SourceMissing("not found"), request) is None
    await strict.client.aclose()
    assert asked == [lab.target]


async def test_a_missing_platform_names_the_platforms_with_sizes(
    lab: lab_module.Lab, lookups: Lookups
) -> None:
    multi_arch(lab, "team/twoarch")
    source = ImageRef(lab.source, "team/twoarch", "1.0", None)
    request = CopyRequest(source, ImageRef(lab.target, "m/twoarch", "1.0", None), S390X)
    engine = RegistryEngine.standalone(insecure={lab.source, lab.target})
    try:
        with pytest.raises(PlatformMissing) as caught:
            await engine.copy(request, lambda event: None)
    finally:
        await engine.aclose()
    seen = await lookups.inspect(source)
    sizes = {}
    index = json.loads(lab_module.pull_manifest(lab.source, "team/twoarch", "1.0")[0])
    for entry in index["manifests"]:
        child = json.loads(lab_module.pull_manifest(lab.source, "team/twoarch", entry["digest"])[0])
        platform = "/".join(v for v in entry["platform"].values() if v)
        sizes[platform] = child["config"]["size"] + sum(layer["size"] for layer in child["layers"])
    assert {p.platform: p.bytes for p in seen.platforms} == {
        "linux/amd64": sizes["amd64/linux"],
        "linux/arm64": sizes["arm64/linux/v8"],
    }
    advice = await lookups.advise(caught.value, request)
    assert advice is not None and advice.suggestions == ()
    assert advice.sentence.startswith(
        f"`{lab.source}/team/twoarch:1.0` has no image for linux/s390x; it has linux/amd64 ("
    )
    assert "linux/arm64 (" in advice.sentence and " KB)" in advice.sentence


async def test_tags_newest_first_filtered_and_dated(lab: lab_module.Lab, lookups: Lookups) -> None:
    found = await lookups.tags(app(lab, "latest"), "1.2")
    assert found.tags == ("1.2.4", "1.2.4-alpine", "1.2.3", "1.2.2", "1.2.1", "1.2.0")
    assert found.total == len(lab_module.APP_TAGS)
    created = datetime(2024, 1, 1, tzinfo=UTC)  # the lab's fixed image date
    assert found.created == {"1.2.4": created, "1.2.4-alpine": created, "1.2.3": created}
    everything = await lookups.tags(app(lab, "latest"))
    assert everything.tags[:2] == ("2.0.0", "2.0.0-rc1")
    assert "3f2a9c1d7e" not in everything.tags and not any("sha256" in t for t in everything.tags)


# -- through the command line and the console ----------------------------------------------------


@pytest.mark.parametrize("engine", ["registry", "docker"])
def test_cli_json_suggests_for_a_missing_tag(
    lab: lab_module.Lab, tmp_path: Path, engine: str
) -> None:
    env = bot_env(lab, tmp_path / "m.db")
    code, payload, _ = run_json(
        env, f"{lab.source}/library/app:1.2.5", "--engine", engine, "--platform", "linux/amd64"
    )
    assert code == 1
    [item] = payload
    assert item["status"] == "failed"
    assert item["suggestions"][0] == f"{lab.source}/library/app:1.2.4"
    assert "does not exist; nearest: `1.2.4`" in item["error"]


def test_cli_json_a_dockerhub_name_too_deep_is_refused_before_copying(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    env = bot_env(lab, tmp_path / "m.db", MIRROR_TARGET="docker.io/alice")
    done_code, payload, err = run_json(env, "--dry-run", f"{lab.source}/library/hello:1.0$lib/x")
    assert done_code == 2 and payload == []
    assert "Docker Hub takes only `namespace/name`" in err


def test_console_tags_and_inspect(lab: lab_module.Lab, tmp_path: Path) -> None:
    env = bot_env(lab, tmp_path / "console.db")
    child = pexpect.spawn(MIRROR_BOT, ["run"], env=env, encoding="utf-8", timeout=120)
    try:
        child.expect_exact("mirror> ")
        child.sendline(f"/tags {lab.source}/library/app 1.3")
        child.expect_exact(f"Tags of `{lab.source}/library/app` matching `1.3`, newest first (4)")
        child.expect_exact("mirror> ")
        listed = child.before
        assert "`1.3.2` · created 2024-01-01" in listed
        assert listed.index("`1.3.2`") < listed.index("`1.3.1`") < listed.index("`1.3.0-alpine`")

        child.sendline(f"/inspect {lab.source}/library/app:1.3.2")
        child.expect_exact(f"`{lab.source}/library/app:1.3.2`")
        child.expect_exact("linux/amd64")
        child.expect_exact("Not mirrored here yet.")
        child.expect_exact("mirror> ")

        child.sendline(f"/mirror {lab.source}/library/app:1.3.2")
        child.expect(r"Job \w{6} done: 1 image ready")
        child.expect_exact("mirror> ")
        child.sendline(f"/inspect {lab.source}/library/app:1.3.2")
        child.expect_exact("Mirrored here since")
        child.expect_exact("Upstream has not moved since the last copy.")
        child.expect_exact("mirror> ")

        lab_module.push_image(lab.source, "library/app", "1.3.2", lab_module.MULTI_LAYERS[:1])
        child.sendline(f"/inspect {lab.source}/library/app:1.3.2")
        child.expect_exact("Upstream moved since the last copy")
        child.expect_exact("mirror> ")

        child.sendline(f"/mirror {lab.source}/library/app:1.2.5")
        child.expect(r"Job \w{6} failed: nothing was mirrored")
        child.expect_exact("does not exist; nearest: `1.2.4`")
        child.expect_exact(f"/mirror {lab.source}/library/app:1.2.4")
        child.expect_exact("mirror> ")
    finally:
        child.close(force=True)
