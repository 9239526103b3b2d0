"""Exact copies bring their signatures, SBOMs and attestations, against real registries: the
lab's distribution 2.8 (no referrers API: the ``sha256-<hex>`` tag schema and cosign's tags)
and a registry of ours that serves the OCI 1.1 referrers API in front of a lab registry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import lab as lab_module
from mirror.artifacts import ReferrerKind
from mirror.engines.base import CopyRequest
from mirror.engines.registry.engine import ReferrerPolicy, RegistryEngine
from mirror.models import ItemStatus
from mirror.reference import ImageRef
from tests.support.cli import bot_env, run_json, run_mirror
from tests.support.referrers_api import referrers_registry
from tests.support.throttle import Seen, throttled

SPDX = "application/spdx+json"
COSIGN_SIG = "application/vnd.dev.cosign.simplesigning.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def ignore(_: object) -> None:
    """Progress is not what these tests are about."""


@dataclass
class Signed:
    image: str
    sbom: str
    signature: str
    sbom_signature: str


def tag_of(digest: str) -> str:
    return digest.replace(":", "-")


def sign(registry: str, repository: str, subject: str, text: str) -> str:
    """What ``cosign sign`` pushes: a manifest under ``sha256-<hex>.sig``, no ``subject``."""
    config = json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers"}}).encode()
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": subject}}, "t": text})
    return lab_module.push_artifact(
        registry,
        repository,
        tag_of(subject) + ".sig",
        [(COSIGN_SIG, payload.encode())],
        config=("application/vnd.oci.image.config.v1+json", config),
    )


def attach_sbom(registry: str, repository: str, subject: str, *, fallback: bool) -> str:
    """What ``oras attach --artifact-type application/spdx+json`` pushes; ``fallback`` also
    writes the ``sha256-<hex>`` index, as oras does on a registry without the API."""
    sbom = json.dumps({"spdxVersion": "SPDX-2.3", "name": repository}).encode()
    digest = lab_module.push_artifact(
        registry, repository, None, [(SPDX, sbom)], artifact_type=SPDX, subject=subject
    )
    if fallback:
        raw, media_type = lab_module.pull_manifest(registry, repository, digest)
        entry = {"mediaType": media_type, "digest": digest, "size": len(raw), "artifactType": SPDX}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        lab_module._put_manifest(
            registry, repository, tag_of(subject), json.dumps(index).encode(), OCI_INDEX, None, None
        )
    return digest


def signed_image(registry: str, repository: str, seed: int, *, fallback: bool = True) -> Signed:
    image = lab_module.push_image(
        registry, repository, "1.0", (lab_module.LayerSpec(16 * 1024, seed),), oci=True
    )
    sbom = attach_sbom(registry, repository, image, fallback=fallback)
    return Signed(
        image,
        sbom,
        sign(registry, repository, image, "image"),
        sign(registry, repository, sbom, "sbom"),  # a signature on the SBOM
    )


@pytest.fixture
async def make_engine(lab: lab_module.Lab) -> AsyncIterator[Callable[..., RegistryEngine]]:
    engines: list[RegistryEngine] = []

    def build(*extra: str, referrers: ReferrerPolicy = "all") -> RegistryEngine:
        engine = RegistryEngine.standalone(
            insecure={lab.source, lab.target, *extra}, referrers=referrers
        )
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        await engine.aclose()


def exists(registry: str, repository: str, reference: str) -> bool:
    try:
        lab_module.pull_manifest(registry, repository, reference)
    except lab_module.RegistryError as exc:
        assert exc.status == 404
        return False
    return True


async def test_signatures_and_sboms_come_along_without_the_referrers_api(
    lab: lab_module.Lab, make_engine: Callable[..., RegistryEngine]
) -> None:
    signed = signed_image(lab.source, "team/signed", 700)
    # Another copy already published an artifact for this image at the target: it must stay.
    other = lab_module.push_artifact(
        lab.target, "mirror/signed", None, [("text/plain", b"someone else's note")]
    )
    raw, media_type = lab_module.pull_manifest(lab.target, "mirror/signed", other)
    theirs = {"mediaType": media_type, "digest": other, "size": len(raw), "artifactType": "x/y"}
    lab_module._put_manifest(
        lab.target,
        "mirror/signed",
        tag_of(signed.image),
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [theirs]}).encode(),
        OCI_INDEX,
        None,
        None,
    )
    source = ImageRef(lab.source, "team/signed", "1.0", None)
    target = ImageRef(lab.target, "mirror/signed", "1.0", None)

    outcome = await make_engine().copy(CopyRequest(source, target, None), ignore)

    assert outcome.status is ItemStatus.SUCCEEDED
    assert outcome.target_digest == signed.image
    kinds = sorted((r.kind, r.digest) for r in outcome.referrers)
    assert kinds == sorted(
        [
            (ReferrerKind.SBOM, signed.sbom),
            (ReferrerKind.SIGNATURE, signed.signature),
            (ReferrerKind.SIGNATURE, signed.sbom_signature),
        ]
    )
    sbom_type = next(r.artifact_type for r in outcome.referrers if r.digest == signed.sbom)
    assert sbom_type == SPDX
    # Exact bytes: the cosign tags (the image's and the SBOM's) and the SBOM by digest.
    for reference in (
        tag_of(signed.image) + ".sig",
        tag_of(signed.sbom) + ".sig",
        signed.sbom,
    ):
        assert lab_module.pull_manifest(lab.target, "mirror/signed", reference) == (
            lab_module.pull_manifest(lab.source, "team/signed", reference)
        )
    # The fallback index lists the SBOM for tools, next to the entry that was there.
    index = json.loads(
        lab_module.pull_manifest(lab.target, "mirror/signed", tag_of(signed.image))[0]
    )
    listed = {entry["digest"] for entry in index["manifests"]}
    assert listed == {other, signed.sbom}

    # Again: nothing new to copy, the same referrers reported, the index not duplicated.
    again = await make_engine().copy(CopyRequest(source, target, None), ignore)
    assert again.status is ItemStatus.ALREADY_MIRRORED
    assert {r.digest for r in again.referrers} == {r.digest for r in outcome.referrers}
    index = json.loads(
        lab_module.pull_manifest(lab.target, "mirror/signed", tag_of(signed.image))[0]
    )
    assert [e["digest"] for e in index["manifests"]].count(signed.sbom) == 1


async def test_referrers_are_found_with_one_tag_listing_and_nothing_is_asked_twice(
    lab: lab_module.Lab, make_engine: Callable[..., RegistryEngine]
) -> None:
    """Counted at the source's link: the referrers API asked once for the registry (it has
    none), one tag listing per copy instead of a HEAD per digest and cosign suffix, and no
    request sent twice in a copy; every referrer still comes along."""
    first = signed_image(lab.source, "team/counted", 740)
    second = signed_image(lab.source, "team/counted2", 741)
    with throttled(lab.source, None) as link:
        engine = make_engine(link.address)
        requests: list[list[Seen]] = []
        for name, signed in (("counted", first), ("counted2", second)):
            link.reset_counts()
            source = ImageRef(link.address, f"team/{name}", "1.0", None)
            target = ImageRef(lab.target, f"mirror/{name}", "1.0", None)
            outcome = await engine.copy(CopyRequest(source, target, None), ignore)
            assert outcome.status is ItemStatus.SUCCEEDED
            assert {r.digest for r in outcome.referrers} == {
                signed.sbom,
                signed.signature,
                signed.sbom_signature,
            }
            requests.append(link.requests)
    for seen in requests:
        assert len(set(seen)) == len(seen), seen  # nothing asked twice
        assert sum("/tags/list" in s.path for s in seen) == 1
        assert not [s for s in seen if s.method == "HEAD"], seen
    api = [s for seen in requests for s in seen if "/referrers/" in s.path]
    assert len(api) == 1  # the first copy's probe; the second copy knew


async def test_with_the_api_each_subject_is_asked_once(
    lab: lab_module.Lab, make_engine: Callable[..., RegistryEngine]
) -> None:
    async with referrers_registry(lab.source) as source_api:
        signed = await asyncio.to_thread(
            signed_image, source_api.address, "team/api-once", 742, fallback=False
        )
        source = ImageRef(source_api.address, "team/api-once", "1.0", None)
        target = ImageRef(lab.target, "mirror/api-once", "1.0", None)
        source_api.seen.clear()
        outcome = await make_engine(source_api.address).copy(
            CopyRequest(source, target, None), ignore
        )
        assert outcome.status is ItemStatus.SUCCEEDED
        assert len(outcome.referrers) == 3
        seen = list(source_api.seen)
    asked = [p for m, p in seen if "/referrers/" in p]
    # The image and the SBOM have referrers; each subject asked once, the probe included.
    assert sorted(asked) == sorted(
        f"/v2/team/api-once/referrers/{d}"
        for d in (signed.image, signed.sbom, signed.signature, signed.sbom_signature)
    )
    assert len(seen) == len(set(seen))


async def test_signatures_only_leaves_the_sbom_behind(
    lab: lab_module.Lab, make_engine: Callable[..., RegistryEngine]
) -> None:
    signed = signed_image(lab.source, "team/sigonly", 710)
    source = ImageRef(lab.source, "team/sigonly", "1.0", None)
    target = ImageRef(lab.target, "mirror/sigonly", "1.0", None)

    outcome = await make_engine(referrers="signatures").copy(
        CopyRequest(source, target, None), ignore
    )

    assert [(r.kind, r.digest) for r in outcome.referrers] == [
        (ReferrerKind.SIGNATURE, signed.signature)
    ]
    assert exists(lab.target, "mirror/sigonly", tag_of(signed.image) + ".sig")
    assert not exists(lab.target, "mirror/sigonly", signed.sbom)
    assert not exists(lab.target, "mirror/sigonly", tag_of(signed.image))


async def test_none_copies_the_image_alone(
    lab: lab_module.Lab, make_engine: Callable[..., RegistryEngine]
) -> None:
    signed = signed_image(lab.source, "team/bare", 720)
    source = ImageRef(lab.source, "team/bare", "1.0", None)
    target = ImageRef(lab.target, "mirror/bare", "1.0", None)

    outcome = await make_engine(referrers="none").copy(CopyRequest(source, target, None), ignore)

    assert outcome.status is ItemStatus.SUCCEEDED and outcome.referrers == ()
    assert exists(lab.target, "mirror/bare", "1.0")
    assert not exists(lab.target, "mirror/bare", tag_of(signed.image) + ".sig")


async def test_the_referrers_api_is_asked_at_the_source_and_fills_the_target(
    lab: lab_module.Lab, make_engine: Callable[..., RegistryEngine]
) -> None:
    async with (
        referrers_registry(lab.source) as source_api,
        referrers_registry(lab.target) as target_api,
    ):
        # Pushed through the API registry, which indexes the SBOM by its subject; no
        # fallback tag anywhere, so only the API can find it.
        signed = await asyncio.to_thread(
            signed_image, source_api.address, "team/api", 730, fallback=False
        )
        assert not exists(lab.source, "team/api", tag_of(signed.image))
        source = ImageRef(source_api.address, "team/api", "1.0", None)
        target = ImageRef(target_api.address, "mirror/api", "1.0", None)
        engine = make_engine(source_api.address, target_api.address)

        outcome = await engine.copy(CopyRequest(source, target, None), ignore)

        assert outcome.status is ItemStatus.SUCCEEDED
        assert {(r.kind, r.digest) for r in outcome.referrers} == {
            (ReferrerKind.SBOM, signed.sbom),
            (ReferrerKind.SIGNATURE, signed.signature),
            (ReferrerKind.SIGNATURE, signed.sbom_signature),
        }
        asked = [p for m, p in source_api.seen if m == "GET" and "/referrers/" in p]
        assert f"/v2/team/api/referrers/{signed.image}" in asked
        # The target's API now lists the SBOM; it needs no fallback index.
        listed = target_api.index[("mirror/api", signed.image)]
        assert [e["digest"] for e in listed] == [signed.sbom]
        assert not exists(lab.target, "mirror/api", tag_of(signed.image))
        assert lab_module.pull_manifest(lab.target, "mirror/api", signed.sbom) == (
            lab_module.pull_manifest(lab.source, "team/api", signed.sbom)
        )


def target_repository(lab: lab_module.Lab, source_repository: str) -> str:
    return f"mirror/{lab.source.replace(':', '-')}.{source_repository.replace('/', '.')}"


def test_the_cli_says_what_came_along(lab: lab_module.Lab, tmp_path: Path) -> None:
    signed = signed_image(lab.source, "team/cli-signed", 740)
    env = bot_env(lab, tmp_path / "mirror.db")
    image = f"{lab.source}/team/cli-signed:1.0"

    code, [result], stderr = run_json(env, image, "--platform", "all")

    assert code == 0, stderr
    assert result["engine"] == "registry" and result["artifact"] == "image"
    assert sorted(result["referrers"], key=lambda r: r["digest"]) == sorted(
        [
            {"digest": signed.sbom, "artifact_type": SPDX},
            {"digest": signed.signature, "artifact_type": COSIGN_SIG},
            {"digest": signed.sbom_signature, "artifact_type": COSIGN_SIG},
        ],
        key=lambda r: r["digest"],
    )
    # The next answer (from the store: already mirrored) still says what is there.
    done = run_mirror(env, image, "--platform", "all")
    assert done.returncode == 0, done.stderr
    assert "already mirrored" in done.stdout
    assert "with 2 signatures and 1 SBOM" in done.stdout


def test_a_chart_goes_to_the_registry_engine_and_the_answer_is_helm(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """The default platform (one platform: the daemon first) does not send a chart to the
    daemon: the manifest says it is a chart, so it is copied exactly."""
    chart_config = json.dumps({"name": "podinfo", "version": "6.5.0", "apiVersion": "v2"})
    digest = lab_module.push_artifact(
        lab.source,
        "charts/podinfo",
        "6.5.0",
        [(HELM_CHART_LAYER, b"\x1f\x8b not really a tarball, the registry does not care")],
        config=(HELM_CONFIG, chart_config.encode()),
    )
    env = bot_env(lab, tmp_path / "mirror.db", MIRROR_DEFAULT_PLATFORM="linux/amd64")

    code, [result], stderr = run_json(env, f"oci://{lab.source}/charts/podinfo:6.5.0")

    assert code == 0, stderr
    repository = target_repository(lab, "charts/podinfo")
    assert result["engine"] == "registry"
    assert result["artifact"] == "chart"
    assert result["target_digest"] == result["source_digest"] == digest
    assert result["pull"] == (
        f"helm pull oci://{lab.target}/{repository} --version 6.5.0 --plain-http"
    )
    assert lab_module.pull_manifest(lab.target, repository, "6.5.0") == (
        lab_module.pull_manifest(lab.source, "charts/podinfo", "6.5.0")
    )
    text = run_mirror(env, f"{lab.source}/charts/podinfo:6.5.0").stdout
    assert f"helm install podinfo oci://{lab.target}/{repository} --version 6.5.0" in text
    assert "docker tag" not in text


def test_another_artifact_is_pulled_with_oras(lab: lab_module.Lab, tmp_path: Path) -> None:
    lab_module.push_artifact(
        lab.source,
        "tools/policy",
        "v1",
        [("application/vnd.example.policy.layer.v1+rego", b"package main\n")],
        artifact_type="application/vnd.example.policy.v1",
    )
    env = bot_env(lab, tmp_path / "mirror.db")

    code, [result], stderr = run_json(env, f"{lab.source}/tools/policy:v1")

    assert code == 0, stderr
    assert result["engine"] == "registry" and result["artifact"] == "artifact"
    repository = target_repository(lab, "tools/policy")
    assert result["pull"] == f"oras pull --plain-http {lab.target}/{repository}:v1"
