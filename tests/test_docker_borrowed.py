"""The Docker daemon is borrowed (issue 23): a copy through it leaves the host as it found it.

Every reference the daemon held before a copy (tags and digest references, the source's and
the target's) exists after it, naming the same image; every image that was there is still
there; what the copy added is gone; containers keep their images. Checked on the lab's real
daemon, with a multi-platform source the host had already pulled for another platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest

import lab as lab_module
from mirror.engines.base import CopyRequest
from mirror.engines.docker import DockerEngine
from mirror.errors import CopyFailed
from mirror.platform import parse_platform
from mirror.reference import parse_reference

AMD64 = parse_platform("linux/amd64")
ARM64 = parse_platform("linux/arm64")
_repos = itertools.count()


@dataclass(frozen=True)
class Source:
    repository: str  # without the registry
    name: str  # registry/repository
    index: str  # the manifest list's digest
    children: dict[str, str]  # platform -> its manifest digest


def _source(lab: lab_module.Lab, seed: int) -> Source:
    """A two-platform image (``1.0``) in a repository of its own, with layers no other test has."""
    repository = f"borrowed/app{next(_repos)}-{seed}"
    children = {
        "linux/amd64": lab_module.push_image(
            lab.source, repository, None, (lab_module.LayerSpec(8192, seed),), architecture="amd64"
        ),
        "linux/arm64": lab_module.push_image(
            lab.source,
            repository,
            None,
            (lab_module.LayerSpec(8192, seed + 1),),
            architecture="arm64",
        ),
    }
    index = lab_module.push_index(lab.source, repository, "1.0", list(children.values()))
    return Source(repository, f"{lab.source}/{repository}", index, children)


@pytest.fixture
def daemon(lab: lab_module.Lab) -> Iterator[docker.APIClient]:
    client = docker.APIClient(base_url=lab.docker_host)
    try:
        yield client
    finally:
        client.close()


def references(client: docker.APIClient, *names: str) -> dict[str, str]:
    """Every tag and digest reference of the repositories ``names``, with the image it names."""
    found = {}
    for image in client.images(all=True):
        for ref in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []):
            if ref.rpartition("@")[0] in names or ref.rpartition(":")[0] in names:
                found[ref] = image["Id"]
    return found


def image_ids(client: docker.APIClient) -> set[str]:
    return {image["Id"] for image in client.images(all=True)}


def platform(client: docker.APIClient, image: str) -> str:
    found = client.inspect_image(image)
    return f"{found['Os']}/{found['Architecture']}"


def clean_up(client: docker.APIClient, containers: list[str], *names: str) -> None:
    """What the test itself put in the daemon (the copies put nothing, or a test fails)."""
    for container in containers:
        client.remove_container(container, force=True)
    for ref in references(client, *names):
        with contextlib.suppress(docker.errors.NotFound):  # gone with an earlier reference
            client.remove_image(ref, force=True)


def engine(lab: lab_module.Lab, *, reads_source: bool = True) -> DockerEngine:
    """The docker engine on the lab's daemon; ``reads_source``: whether the bot itself can read
    the source registry (a bot whose daemon is on another machine may not)."""
    insecure = [lab.source, lab.target] if reads_source else [lab.target]
    return DockerEngine.standalone(lab.docker_host, insecure=insecure)


def pushed_platform(lab: lab_module.Lab, repository: str, tag: str) -> str:
    raw, _ = lab_module.pull_manifest(lab.target, repository, tag)
    digest = json.loads(raw)["config"]["digest"]
    config = json.loads(lab_module.get_blob(lab.target, repository, digest))
    return f"{config['os']}/{config['architecture']}"


@pytest.mark.parametrize("reads_source", [True, False])
async def test_a_copy_leaves_the_daemons_references_images_and_containers_as_they_were(
    lab: lab_module.Lab, daemon: docker.APIClient, reads_source: bool
) -> None:
    src = _source(lab, 9100 + reads_source * 10)
    target = f"{lab.target}/borrowed/mirror-{src.repository.rsplit('/', 1)[1]}"
    other = _source(lab, 9200 + reads_source * 10)
    containers: list[str] = []
    try:
        # The host pulled the source for arm64 (its tag and its index digest name that image),
        # and already holds the mirror's tag, as an image of its own; containers use both.
        daemon.pull(src.name, tag="1.0", platform="linux/arm64")
        daemon.pull(other.name, tag="1.0", platform="linux/amd64")
        daemon.tag(f"{other.name}:1.0", target, "1.0")
        for image in (f"{src.name}:1.0", f"{target}:1.0"):
            containers.append(daemon.create_container(image, command=["true"])["Id"])
        refs, ids = references(daemon, src.name, target), image_ids(daemon)
        assert platform(daemon, f"{src.name}:1.0") == "linux/arm64"

        copier = engine(lab, reads_source=reads_source)
        request = CopyRequest(
            parse_reference(f"{src.name}:1.0"), parse_reference(f"{target}:1.0"), AMD64
        )
        try:
            outcome = await copier.copy(request, lambda event: None)
        except CopyFailed as refused:
            # Without reading the source itself the bot can only pull the index's digest,
            # which this daemon keeps for the arm64 image: it says so rather than guess.
            assert not reads_source
            assert "another platform" in str(refused)
        else:
            assert outcome.source_digest == src.index
            assert pushed_platform(lab, target.split("/", 1)[1], "1.0") == "linux/amd64"
        finally:
            await copier.aclose()

        assert references(daemon, src.name, target) == refs
        assert image_ids(daemon) >= ids
        for container in containers:
            daemon.inspect_container(container)  # still there, with its image
    finally:
        clean_up(daemon, containers, src.name, other.name, target)


async def test_concurrent_copies_of_one_source_leave_nothing_behind(
    lab: lab_module.Lab, daemon: docker.APIClient
) -> None:
    """Two platforms to two targets and one platform to two targets, all at once: each copy
    holds what it pulled until it pushed, and the last one out removes only what none of them
    found there."""
    src = _source(lab, 9300)
    base = f"{lab.target}/borrowed/many-{src.repository.rsplit('/', 1)[1]}"
    asked = [(AMD64, f"{base}-a"), (AMD64, f"{base}-b"), (ARM64, f"{base}-c")]
    ids = image_ids(daemon)
    copier = engine(lab)
    try:
        outcomes = await asyncio.gather(
            *(
                copier.copy(
                    CopyRequest(
                        parse_reference(f"{src.name}:1.0"), parse_reference(f"{name}:1.0"), wanted
                    ),
                    lambda event: None,
                )
                for wanted, name in asked
            )
        )
    finally:
        await copier.aclose()
    assert len(copier._locks) == 0 and copier._shared == {}  # idle: nothing kept per source
    try:
        assert [o.source_digest for o in outcomes] == [src.index] * 3
        for wanted, name in asked:
            assert pushed_platform(lab, name.split("/", 1)[1], "1.0") == str(wanted)
        assert references(daemon, src.name, *(name for _, name in asked)) == {}
        assert image_ids(daemon) == ids
    finally:
        clean_up(daemon, [], src.name, *(name for _, name in asked))
