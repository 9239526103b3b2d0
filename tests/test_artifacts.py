"""What a manifest is and what a referrer is, from media types; how the answer counts them;
the setting that chooses what comes along."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.settings import Settings
from mirror.artifacts import (
    ArtifactKind,
    Referrer,
    ReferrerKind,
    along_text,
    artifact_type_of,
    manifest_kind,
    referrer_kind,
)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def manifest(config: str, *layers: str, artifact_type: str | None = None) -> dict[str, object]:
    doc: dict[str, object] = {
        "config": {"mediaType": config, "digest": "sha256:c", "size": 2},
        "layers": [{"mediaType": t, "digest": "sha256:l", "size": 1} for t in layers],
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    return doc


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        (manifest(OCI_CONFIG, "application/vnd.oci.image.layer.v1.tar+gzip"), ArtifactKind.IMAGE),
        (manifest("application/vnd.docker.container.image.v1+json"), ArtifactKind.IMAGE),
        ({"manifests": []}, ArtifactKind.IMAGE),
        (
            manifest(
                "application/vnd.cncf.helm.config.v1+json",
                "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            ),
            ArtifactKind.CHART,
        ),
        (manifest("application/vnd.wasm.config.v0+json", "application/wasm"), ArtifactKind.WASM),
        (
            manifest("application/vnd.oci.empty.v1+json", "text/plain", artifact_type="x/y"),
            ArtifactKind.ARTIFACT,
        ),
        (manifest("application/vnd.example.config+json"), ArtifactKind.ARTIFACT),
    ],
)
def test_manifest_kind(doc: dict[str, object], kind: ArtifactKind) -> None:
    assert manifest_kind(doc) is kind
    assert kind.runnable is (kind is ArtifactKind.IMAGE)


@pytest.mark.parametrize(
    ("artifact_type", "kind"),
    [
        ("application/vnd.dev.cosign.artifact.sig.v1+json", ReferrerKind.SIGNATURE),
        ("application/vnd.cncf.notary.signature", ReferrerKind.SIGNATURE),
        ("application/spdx+json", ReferrerKind.SBOM),
        ("application/vnd.cyclonedx+json", ReferrerKind.SBOM),
        ("application/vnd.in-toto+json", ReferrerKind.ATTESTATION),
        ("application/vnd.dsse.envelope.v1+json", ReferrerKind.ATTESTATION),
        ("application/vnd.example.thing", ReferrerKind.ARTIFACT),
    ],
)
def test_referrer_kind(artifact_type: str, kind: ReferrerKind) -> None:
    assert referrer_kind(artifact_type) is kind


def test_artifact_type_of_a_cosign_manifest_is_its_layers() -> None:
    cosign = manifest(OCI_CONFIG, "application/vnd.dev.cosign.simplesigning.v1+json")
    assert artifact_type_of(cosign) == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert artifact_type_of(manifest(OCI_CONFIG, "a/b", artifact_type="x/y")) == "x/y"
    assert artifact_type_of(manifest("application/vnd.cncf.helm.config.v1+json")) == (
        "application/vnd.cncf.helm.config.v1+json"
    )


def test_along_text_counts_each_kind() -> None:
    sig = Referrer("sha256:1", "s", ReferrerKind.SIGNATURE)
    sbom = Referrer("sha256:2", "b", ReferrerKind.SBOM)
    att = Referrer("sha256:3", "a", ReferrerKind.ATTESTATION)
    assert along_text(()) == ""
    assert along_text((sig,)) == "with 1 signature"
    assert along_text((sig, sbom)) == "with 1 signature and 1 SBOM"
    sig2 = Referrer("sha256:4", "s", ReferrerKind.SIGNATURE)
    assert along_text((sig, sig2, sbom, att)) == "with 2 signatures, 1 SBOM and 1 attestation"


def test_mirror_referrers_is_validated() -> None:
    assert Settings(_env_file=None).mirror_referrers == "all"  # type: ignore[call-arg]
    chosen = Settings(_env_file=None, mirror_referrers="signatures")  # type: ignore[call-arg]
    assert chosen.mirror_referrers == "signatures"
    with pytest.raises(ValidationError, match="mirror_referrers"):
        Settings(_env_file=None, mirror_referrers="some")  # type: ignore[call-arg]
