"""The lab itself: a real dockerd, real registries, real images (DESIGN.md §3)."""

from __future__ import annotations

import json
import urllib.request

import docker
import pytest

from lab import MEDIA_DOCKER_MANIFEST, Lab, RegistryError, get_blob, pull_manifest


def test_lab_parts_answer(lab: Lab) -> None:
    assert lab.healthy()
    env = lab.env()
    assert env["DOCKER_HOST"] == lab.docker_host
    assert env["MIRROR_TARGET"] == f"{lab.target}/mirror"
    for registry in (lab.source, lab.target):
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=5) as answer:
            assert answer.status == 200


def test_docker_pulls_seeded_multi_layer_image(lab: Lab) -> None:
    raw, media_type = pull_manifest(lab.source, "library/multi", "1.0")
    assert media_type == MEDIA_DOCKER_MANIFEST
    manifest = json.loads(raw)
    config_digest = manifest["config"]["digest"]
    config = json.loads(get_blob(lab.source, "library/multi", config_digest))
    assert len(manifest["layers"]) == 3
    assert (config["architecture"], config["os"]) == ("amd64", "linux")

    client = docker.DockerClient(base_url=lab.docker_host, timeout=120)
    try:
        image = client.images.pull(f"{lab.source}/library/multi", tag="1.0")
        assert image.id == config_digest  # schema2: the image id is the config digest
        assert len(image.attrs["RootFS"]["Layers"]) == 3
        assert image.attrs["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
        assert image.attrs["Config"]["Cmd"] == config["config"]["Cmd"]
    finally:
        client.close()


def test_auth_registry_requires_credentials(lab: Lab) -> None:
    with pytest.raises(RegistryError) as anonymous:
        pull_manifest(lab.auth, "library/hello", "1.0")
    assert anonymous.value.status == 401

    with pytest.raises(RegistryError) as wrong:
        pull_manifest(lab.auth, "library/hello", "1.0", lab.auth_user, "not-the-password")
    assert wrong.value.status == 401

    raw, _ = pull_manifest(lab.auth, "library/hello", "1.0", lab.auth_user, lab.auth_password)
    # Same layer specs give the same bytes, so the two registries hold the same manifest.
    assert raw == pull_manifest(lab.source, "library/hello", "1.0")[0]


def test_docker_pulls_from_auth_registry_only_with_credentials(lab: Lab) -> None:
    client = docker.DockerClient(base_url=lab.docker_host, timeout=120)
    try:
        with pytest.raises(docker.errors.APIError):
            client.images.pull(f"{lab.auth}/library/hello", tag="1.0")
        image = client.images.pull(
            f"{lab.auth}/library/hello",
            tag="1.0",
            auth_config={"username": lab.auth_user, "password": lab.auth_password},
        )
        assert len(image.attrs["RootFS"]["Layers"]) == 1
    finally:
        client.close()
