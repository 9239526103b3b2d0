"""The ``registry`` engine against real registries of the lab: exact copies, byte for byte.

Each copy is checked three ways: the raw manifest bytes at the target equal the source's, a
peer tool (``skopeo inspect --raw``) reads the same bytes, and the real daemon pulls the result.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from collections.abc import AsyncIterator

import docker
import pytest

import lab as lab_module
from mirror.engines.base import CopyRequest
from mirror.engines.registry.engine import RegistryEngine, _Hasher
from mirror.errors import CopyFailed
from mirror.models import ItemStatus
from mirror.platform import Platform
from mirror.progress import BlobDone, ProgressEvent, Stage, StageChanged
from mirror.reference import ImageRef

ARM64 = Platform("linux", "arm64")


@pytest.fixture
async def engine(lab: lab_module.Lab) -> AsyncIterator[RegistryEngine]:
    found = RegistryEngine.standalone(insecure={lab.source, lab.target, lab.auth})
    yield found
    await found.aclose()


def ref(
    registry: str, repository: str, tag: str | None = None, digest: str | None = None
) -> ImageRef:
    return ImageRef(registry, repository, tag, digest)


def multi_arch(
    lab: lab_module.Lab, repository: str, *, oci: bool = False, attestations: bool = False
) -> str:
    """A two-platform image (amd64, arm64/v8) at ``repository:1.0`` on the source."""
    children = [
        lab_module.push_image(
            lab.source,
            repository,
            None,
            (lab_module.LayerSpec(48 * 1024, 100 + n), lab_module.LayerSpec(8 * 1024, 200 + n)),
            architecture=arch,
            variant=variant,
            oci=oci,
        )
        for n, (arch, variant) in enumerate((("amd64", None), ("arm64", "v8")))
    ]
    return lab_module.push_index(
        lab.source, repository, "1.0", children, oci=oci, attestations=attestations
    )


def skopeo_raw(image: str) -> bytes:
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{image}"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout


def assert_same_tree(lab: lab_module.Lab, src_repo: str, dst_repo: str, reference: str) -> None:
    """Every manifest under ``reference`` is at the target with the same bytes and type."""
    raw, media_type = lab_module.pull_manifest(lab.source, src_repo, reference)
    copied, copied_type = lab_module.pull_manifest(lab.target, dst_repo, reference)
    assert copied == raw
    assert copied_type == media_type
    for child in json.loads(raw).get("manifests", []):
        assert_same_tree(lab, src_repo, dst_repo, child["digest"])


class Events(list[ProgressEvent]):
    def __call__(self, event: ProgressEvent) -> None:
        self.append(event)


async def test_manifest_list_is_copied_exactly_and_pulls(
    lab: lab_module.Lab, engine: RegistryEngine
) -> None:
    digest = multi_arch(lab, "team/list")
    request = CopyRequest(
        ref(lab.source, "team/list", "1.0"), ref(lab.target, "m/list", "1.0"), None
    )
    events = Events()
    result = await engine.copy(request, events)

    assert result.engine == "registry"
    assert result.source_digest == result.target_digest == digest
    assert result.digest_identical
    assert_same_tree(lab, "team/list", "m/list", "1.0")
    raw, _ = lab_module.pull_manifest(lab.source, "team/list", "1.0")
    assert skopeo_raw(f"{lab.target}/m/list:1.0") == raw
    assert StageChanged(Stage.COPYING) in events
    # 2 children x (config + 2 layers); the first layer of each child also holds /hello.
    assert len({e.blob for e in events if isinstance(e, BlobDone)}) >= 6
    assert await engine.target_digest(request.target) == digest

    client = docker.DockerClient(base_url=lab.docker_host)
    try:
        pulled = client.images.pull(f"{lab.target}/m/list", tag="1.0", platform="linux/amd64")
        assert pulled.attrs["Architecture"] == "amd64"
        assert f"{lab.target}/m/list@{digest}" in pulled.attrs["RepoDigests"]
        client.images.remove(pulled.id, force=True)
    finally:
        client.close()


async def test_oci_index_with_attestations_is_copied_exactly(
    lab: lab_module.Lab, engine: RegistryEngine
) -> None:
    digest = multi_arch(lab, "team/oci", oci=True, attestations=True)
    request = CopyRequest(ref(lab.source, "team/oci", "1.0"), ref(lab.target, "m/oci", "1.0"), None)
    result = await engine.copy(request, Events())

    assert result.target_digest == digest
    assert_same_tree(lab, "team/oci", "m/oci", "1.0")
    index, media_type = lab_module.pull_manifest(lab.target, "m/oci", "1.0")
    assert media_type == lab_module.MEDIA_OCI_INDEX
    attestations = [
        m
        for m in json.loads(index)["manifests"]
        if m.get("annotations", {}).get("vnd.docker.reference.type") == "attestation-manifest"
    ]
    assert len(attestations) == 2
    for entry in attestations:
        raw, _ = lab_module.pull_manifest(lab.target, "m/oci", entry["digest"])
        layer = json.loads(raw)["layers"][0]
        assert layer["mediaType"] == lab_module.MEDIA_IN_TOTO
        lab_module.get_blob(lab.target, "m/oci", layer["digest"])  # present and intact
    assert skopeo_raw(f"{lab.target}/m/oci:1.0") == index


async def test_digest_reference_keeps_pulling_by_digest(
    lab: lab_module.Lab, engine: RegistryEngine
) -> None:
    digest = multi_arch(lab, "team/pinned")
    source = ref(lab.source, "team/pinned", None, digest)
    request = CopyRequest(source, ref(lab.target, "m/pinned", "pinned"), None)
    assert await engine.source_digest(request) == digest
    result = await engine.copy(request, Events())

    assert result.target_digest == digest
    assert_same_tree(lab, "team/pinned", "m/pinned", digest)
    client = docker.DockerClient(base_url=lab.docker_host)
    try:
        pulled = client.images.pull(f"{lab.target}/m/pinned@{digest}", platform="linux/amd64")
        assert f"{lab.target}/m/pinned@{digest}" in pulled.attrs["RepoDigests"]
        client.images.remove(pulled.id, force=True)
    finally:
        client.close()


async def test_one_platform_out_of_an_index_keeps_its_digest(
    lab: lab_module.Lab, engine: RegistryEngine
) -> None:
    multi_arch(lab, "team/arm")
    index = json.loads(lab_module.pull_manifest(lab.source, "team/arm", "1.0")[0])
    [arm] = [m for m in index["manifests"] if m["platform"]["architecture"] == "arm64"]
    request = CopyRequest(
        ref(lab.source, "team/arm", "1.0"), ref(lab.target, "m/arm-linux-arm64", "1.0"), ARM64
    )
    assert await engine.source_digest(request) == arm["digest"]
    result = await engine.copy(request, Events())

    assert result.source_digest == result.target_digest == arm["digest"]
    raw, _ = lab_module.pull_manifest(lab.target, "m/arm-linux-arm64", "1.0")
    assert raw == lab_module.pull_manifest(lab.source, "team/arm", arm["digest"])[0]
    assert skopeo_raw(f"{lab.target}/m/arm-linux-arm64:1.0") == raw
    config = json.loads(
        lab_module.get_blob(lab.target, "m/arm-linux-arm64", json.loads(raw)["config"]["digest"])
    )
    assert (config["architecture"], config["variant"]) == ("arm64", "v8")
    client = docker.DockerClient(base_url=lab.docker_host)
    try:
        pulled = client.images.pull(
            f"{lab.target}/m/arm-linux-arm64", tag="1.0", platform="linux/arm64"
        )
        assert pulled.attrs["Architecture"] == "arm64"
        client.images.remove(pulled.id, force=True)
    finally:
        client.close()


async def test_second_copy_moves_no_blobs(lab: lab_module.Lab, engine: RegistryEngine) -> None:
    source = ref(lab.source, "library/multi", "1.0")
    request = CopyRequest(source, ref(lab.target, "m/again", "1.0"), None)
    first = await engine.copy(request, Events())
    events = Events()
    second = await engine.copy(request, events)
    assert first.status is ItemStatus.SUCCEEDED
    assert second.status is ItemStatus.ALREADY_MIRRORED
    assert (second.target_digest, second.bytes) == (first.target_digest, first.bytes)
    assert events == []  # answered from the manifests alone


@pytest.mark.parametrize(
    ("source", "platform", "sentence"),
    [
        (("library/hello", "nope"), None, "was not found in"),
        (("team/missing", "1.0"), None, "was not found in"),
        (("team/list", "1.0"), Platform("linux", "s390x"), "has no image for linux/s390x"),
        (("library/hello", "1.0"), ARM64, "is an image for linux/amd64 only"),
    ],
)
async def test_failures_are_one_sentence(
    lab: lab_module.Lab,
    engine: RegistryEngine,
    source: tuple[str, str],
    platform: Platform | None,
    sentence: str,
) -> None:
    if source[0] == "team/list":
        multi_arch(lab, "team/list")
    request = CopyRequest(ref(lab.source, *source), ref(lab.target, "m/fail", "1.0"), platform)
    with pytest.raises(CopyFailed) as caught:
        await engine.copy(request, Events())
    text = str(caught.value)
    assert sentence in text
    assert text.endswith(".") and "\n" not in text
    assert not caught.value.transient
    assert await engine.target_digest(ref(lab.target, "m/fail", "1.0")) is None


async def test_unreachable_registry_is_final_after_the_engine_retried(
    lab: lab_module.Lab,
) -> None:
    engine = RegistryEngine.standalone(insecure={"127.0.0.1:9"}, attempts=2, retry_wait=0.01)
    try:
        request = CopyRequest(
            ref("127.0.0.1:9", "library/hello", "1.0"), ref(lab.target, "m/x", "1"), None
        )
        with pytest.raises(CopyFailed) as caught:
            await engine.copy(request, Events())
    finally:
        await engine.aclose()
    assert not caught.value.transient  # retried here; the job service must not retry again
    assert str(caught.value) == (
        "The registry `127.0.0.1:9` could not be reached or dropped the connection."
    )


async def test_measure_counts_layers_and_config_from_manifests_alone(
    lab: lab_module.Lab, engine: RegistryEngine
) -> None:
    request = CopyRequest(
        ref(lab.source, "library/multi", "1.0"), ref(lab.target, "m/sized", "1.0"), None
    )
    raw, _ = lab_module.pull_manifest(lab.source, "library/multi", "1.0")
    manifest = json.loads(raw)
    expected = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    assert await engine.measure(request) == expected


async def test_a_large_blob_is_hashed_off_the_event_loop_in_order() -> None:
    """The sha256 of a large blob runs in a thread of its own (issue 23), chunk after chunk in
    order, so the event loop keeps serving while a core hashes; a small one is hashed in place."""
    chunks = [bytes([n]) * (1 << 20) for n in range(9)]
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    class Recording:
        def __init__(self) -> None:
            self.real = hashlib.sha256()

        def update(self, data: bytes) -> None:
            threads.add(threading.get_ident())
            self.real.update(data)

        def hexdigest(self) -> str:
            return self.real.hexdigest()

    hasher = _Hasher(threaded=True)
    hasher._sha = Recording()  # type: ignore[assignment]  # hashlib's, watched
    try:
        for chunk in chunks:
            await hasher.update(chunk)
        digest = await hasher.hexdigest()
    finally:
        hasher.close()
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert threads and loop_thread not in threads

    small = _Hasher(threaded=False)
    await small.update(b"abc")
    assert await small.hexdigest() == hashlib.sha256(b"abc").hexdigest()
