"""What a manifest holds (a runnable image, a Helm chart, a WASM module, another artifact) and
what a referrer is (signature, SBOM, attestation), read from media types alone.

The engine choice, the registry engine and the answer all ask these questions; answering them
in one place keeps "is this a chart?" the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mirror.text import N_, Text

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
IMAGE_CONFIGS = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
_WASM_WORDS = ("wasm",)


class ArtifactKind(StrEnum):
    IMAGE = "image"
    CHART = "chart"
    WASM = "wasm"
    ARTIFACT = "artifact"

    @property
    def runnable(self) -> bool:
        """Only images can go through a container daemon."""
        return self is ArtifactKind.IMAGE

    @property
    def noun(self) -> str:
        return _NOUNS[self]


_NOUNS = {
    ArtifactKind.IMAGE: Text("image"),
    ArtifactKind.CHART: Text("Helm chart"),
    ArtifactKind.WASM: Text("WASM module"),
    ArtifactKind.ARTIFACT: Text("OCI artifact"),
}


def _media_type(value: Any) -> str:
    return str(value.get("mediaType") or "") if isinstance(value, dict) else ""


def manifest_kind(document: dict[str, Any]) -> ArtifactKind:
    """The kind of a parsed manifest. An index counts as an image: its children are, in
    every case we know of, and telling otherwise would cost a read per child."""
    if "manifests" in document:
        return ArtifactKind.IMAGE
    artifact_type = str(document.get("artifactType") or "")
    config_type = _media_type(document.get("config"))
    layer_types = [_media_type(layer) for layer in document.get("layers") or []]
    if HELM_CONFIG in (artifact_type, config_type):
        return ArtifactKind.CHART
    if any(w in t for t in (artifact_type, config_type, *layer_types) for w in _WASM_WORDS):
        return ArtifactKind.WASM
    if artifact_type or (config_type and config_type not in IMAGE_CONFIGS):
        return ArtifactKind.ARTIFACT
    return ArtifactKind.IMAGE


class ReferrerKind(StrEnum):
    SIGNATURE = "signature"
    SBOM = "sbom"
    ATTESTATION = "attestation"
    ARTIFACT = "artifact"

    def counted(self, n: int) -> Text:
        """``1 signature``, ``2 SBOMs``: how the answer counts what came along."""
        singular, plural = _REFERRER_WORDS[self]
        return Text(singular if n == 1 else plural, n=n)


# One sentence per form (mirror/ has no plural rules; a catalog maps both to one form when
# its language has one).
_REFERRER_WORDS = {
    ReferrerKind.SIGNATURE: (N_("{n} signature"), N_("{n} signatures")),
    ReferrerKind.SBOM: (N_("{n} SBOM"), N_("{n} SBOMs")),
    ReferrerKind.ATTESTATION: (N_("{n} attestation"), N_("{n} attestations")),
    ReferrerKind.ARTIFACT: (N_("{n} other artifact"), N_("{n} other artifacts")),
}

# cosign's tag suffixes (``sha256-<hex>.sig``) say what the tag holds.
COSIGN_SUFFIXES = {
    ".sig": ReferrerKind.SIGNATURE,
    ".att": ReferrerKind.ATTESTATION,
    ".sbom": ReferrerKind.SBOM,
}
_SIGNATURE_WORDS = ("signature", "cosign.artifact.sig", "simplesigning", "notary", "notation")
_SBOM_WORDS = ("sbom", "spdx", "cyclonedx", "syft")
_ATTESTATION_WORDS = ("in-toto", "intoto", "dsse", "attestation", "provenance", "vex")


def referrer_kind(artifact_type: str) -> ReferrerKind:
    """From an artifact type (``application/vnd.dev.cosign.artifact.sig.v1+json``,
    ``application/spdx+json``, ``application/vnd.in-toto+json``, ...)."""
    text = artifact_type.lower()
    for words, kind in (
        (_SIGNATURE_WORDS, ReferrerKind.SIGNATURE),
        (_SBOM_WORDS, ReferrerKind.SBOM),
        (_ATTESTATION_WORDS, ReferrerKind.ATTESTATION),
    ):
        if any(word in text for word in words):
            return kind
    return ReferrerKind.ARTIFACT


def artifact_type_of(document: dict[str, Any]) -> str:
    """A manifest's artifact type as the referrers API reports it: ``artifactType``, else the
    config's media type; for cosign's manifests (image config type) the first layer's."""
    found = str(document.get("artifactType") or "")
    if found:
        return found
    config_type = _media_type(document.get("config"))
    if config_type and config_type not in IMAGE_CONFIGS and config_type != OCI_EMPTY:
        return config_type
    layers = document.get("layers") or []
    return _media_type(layers[0]) if layers else config_type


@dataclass(frozen=True)
class Referrer:
    """One artifact that came along with a copy (``--json``'s ``referrers``)."""

    digest: str
    artifact_type: str
    kind: ReferrerKind

    def as_dict(self) -> dict[str, str]:
        return {"digest": self.digest, "artifact_type": self.artifact_type}


def along_text(referrers: tuple[Referrer, ...] | list[Referrer]) -> str:
    """``with 1 signature and 1 SBOM``, or empty when nothing came along."""
    counts = {kind: sum(1 for r in referrers if r.kind is kind) for kind in ReferrerKind}
    parts = [kind.counted(n) for kind, n in counts.items() if n]
    if not parts:
        return ""
    if len(parts) == 1:
        return Text("with {things}", things=parts[0])
    listed = parts[0]
    for part in parts[1:-1]:
        listed = Text("{list}, {item}", list=listed, item=part)
    return Text("with {list} and {last}", list=listed, last=parts[-1])
