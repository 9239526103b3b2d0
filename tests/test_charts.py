"""The images a chart deploys, read from its archive in memory (mirror/charts.py), the values
file that points them at the mirror, and which chart a request names (bot/chart_request.py).

The fixture charts are built here the way ``helm package`` builds them, shaped like well-known
ones: ingress-nginx's ``registry`` + ``image`` + ``digest`` blocks; Bitnami's ``registry`` +
``repository`` + ``tag`` with ``global.imageRegistry`` and packed subcharts switched by a
``condition``; a chart listing its images in the ``artifacthub.io/images`` annotation; podinfo's
empty tag meaning ``appVersion``. No network.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.chart_request import ChartAsk, ChartSource, chart_plan, find_chart
from bot.policy import Policy
from bot.settings import Settings
from mirror.charts import (
    MAX_ARCHIVE_BYTES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    ChartUnreadable,
    ImageBlock,
    mirror_values,
    read_chart,
    unplaced,
)
from mirror.errors import InvalidReference
from mirror.reference import ImageRef, parse_reference
from tests.support.charts import chart, chart_files, subchart_files, tgz

DIGEST = "sha256:" + "e4" * 32

INGRESS = chart(
    "ingress-nginx",
    "4.8.3",
    app_version="1.9.4",
    values={
        "controller": {
            "name": "controller",
            "image": {
                "chroot": False,
                "registry": "registry.k8s.io",
                "image": "ingress-nginx/controller",
                "tag": "v1.9.4",
                "digest": DIGEST,
                "pullPolicy": "IfNotPresent",
            },
            "admissionWebhooks": {
                "patch": {
                    "image": {
                        "registry": "registry.k8s.io",
                        "image": "ingress-nginx/kube-webhook-certgen",
                        "tag": "v20231011-8b53cabe0",
                        "digest": "",
                    }
                }
            },
        },
        "imagePullSecrets": [],
    },
)

MARIADB = chart(
    "mariadb",
    "14.1.4",
    app_version="11.1.3",
    values={
        "global": {"imageRegistry": "", "imagePullSecrets": []},
        "image": {
            "registry": "docker.io",
            "repository": "bitnami/mariadb",
            "tag": "11.1.3-debian-11-r0",
            "digest": "",
        },
        "metrics": {
            "enabled": False,
            "image": {
                "registry": "docker.io",
                "repository": "bitnami/mysqld-exporter",
                "tag": "0.15.0",
            },
        },
    },
)
WORDPRESS = chart(
    "wordpress",
    "18.1.14",
    app_version="6.4.1",
    dependencies=[
        {"name": "memcached", "version": "6.x.x", "condition": "memcached.enabled"},
        {"name": "mariadb", "version": "14.x.x", "condition": "mariadb.enabled"},
        {"name": "common", "version": "2.x.x", "tags": ["bitnami-common"]},
    ],
    values={
        "global": {"imageRegistry": "", "storageClass": ""},
        "image": {
            "registry": "docker.io",
            "repository": "bitnami/wordpress",
            "tag": "6.4.1-debian-11-r6",
            "digest": "",
        },
        "volumePermissions": {
            "image": {
                "registry": "docker.io",
                "repository": "bitnami/os-shell",
                "tag": "11-debian-11-r90",
            }
        },
        "mariadb": {"enabled": True, "image": {"tag": "11.1.3-debian-11-r1"}},
        "memcached": {"enabled": False},
    },
    packed={"mariadb-14.1.4.tgz": MARIADB},
    unpacked={
        "memcached": subchart_files(
            "memcached",
            "6.6.2",
            values={
                "image": {
                    "registry": "docker.io",
                    "repository": "bitnami/memcached",
                    "tag": "1.6.22",
                }
            },
        ),
        "common": subchart_files("common", "2.13.3", values={"exampleValue": "common-chart"}),
    },
)

ANNOTATED = chart(
    "kube-state-metrics",
    "5.15.2",
    app_version="2.10.1",
    annotations={
        "artifacthub.io/images": (
            "- name: kube-state-metrics\n"
            "  image: registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.10.1\n"
            "- name: kube-rbac-proxy\n"
            "  image: quay.io/brancz/kube-rbac-proxy:v0.15.0\n"
            "  platforms:\n"
            "    - linux/amd64\n"
        )
    },
    values={
        "image": {
            "registry": "registry.k8s.io",
            "repository": "kube-state-metrics/kube-state-metrics",
            "tag": "",
        },
        "kubeRBACProxy": {
            "enabled": False,
            "image": {
                "registry": "quay.io",
                "repository": "brancz/kube-rbac-proxy",
                "tag": "v0.15.0",
            },
        },
        "busybox": {"image": "docker.io/library/busybox:1.36"},
    },
)

PODINFO = chart(
    "podinfo",
    "6.5.0",
    app_version="6.5.0",
    values={
        "image": {
            "repository": "ghcr.io/stefanprodan/podinfo",
            "tag": "",
            "pullPolicy": "IfNotPresent",
        },
        "redis": {"enabled": False, "repository": "docker.io/redis", "tag": "7.0.7"},
        "ui": {"color": "#34577c"},
    },
)

GLOBAL_REGISTRY = chart(
    "nginx",
    "15.4.4",
    app_version="1.25.3",
    values={
        "global": {"imageRegistry": "registry.example.com"},
        "image": {
            "registry": "docker.io",
            "repository": "bitnami/nginx",
            "tag": "1.25.3-debian-11-r2",
        },
    },
)


def images_of(archive: bytes) -> list[tuple[str, str]]:
    return [(image.reference, image.chart) for image in read_chart(archive).images]


def test_ingress_nginx_style_blocks_with_a_digest() -> None:
    found = read_chart(INGRESS)
    assert (found.name, found.version, found.app_version) == ("ingress-nginx", "4.8.3", "1.9.4")
    assert not found.from_annotation
    assert [(i.reference, i.blocks) for i in found.images] == [
        (
            f"registry.k8s.io/ingress-nginx/controller:v1.9.4@{DIGEST}",
            (ImageBlock(("controller", "image"), "image", True, True),),
        ),
        (
            "registry.k8s.io/ingress-nginx/kube-webhook-certgen:v20231011-8b53cabe0",
            (
                ImageBlock(
                    ("controller", "admissionWebhooks", "patch", "image"), "image", True, True
                ),
            ),
        ),
    ]


def test_subcharts_packed_and_unpacked_with_their_conditions_and_the_parent_values() -> None:
    found = read_chart(WORDPRESS)
    assert images_of(WORDPRESS) == [
        ("docker.io/bitnami/wordpress:6.4.1-debian-11-r6", "wordpress"),
        ("docker.io/bitnami/os-shell:11-debian-11-r90", "wordpress"),
        # the parent's mariadb.image.tag wins over the subchart's own default
        ("docker.io/bitnami/mariadb:11.1.3-debian-11-r1", "mariadb"),
        ("docker.io/bitnami/mysqld-exporter:0.15.0", "mariadb"),
    ]
    assert found.disabled == ("memcached",)
    mariadb = found.images[2]
    assert mariadb.blocks == (ImageBlock(("mariadb", "image"), "repository", True, True),)


def test_the_annotation_lists_the_images_and_the_values_say_where_they_are() -> None:
    found = read_chart(ANNOTATED)
    assert found.from_annotation
    assert [i.reference for i in found.images] == [
        "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.10.1",
        "quay.io/brancz/kube-rbac-proxy:v0.15.0",
    ]  # busybox is in the values but not in the annotation: the annotation is the list
    assert found.images[0].blocks == (ImageBlock(("image",), "repository", True, False),)
    assert found.images[1].blocks == (
        ImageBlock(("kubeRBACProxy", "image"), "repository", True, False),
    )
    assert unplaced(found) == ()


def test_an_empty_tag_is_the_app_version() -> None:
    assert images_of(PODINFO) == [
        ("ghcr.io/stefanprodan/podinfo:6.5.0", "podinfo"),
        ("docker.io/redis:7.0.7", "podinfo"),  # `repository` + `tag`: an image block
    ]


def target(reference: str) -> ImageRef:
    ref = parse_reference(reference)
    name = f"{ref.registry}/{ref.repository}".replace("/", ".")
    return ImageRef("mirror.example.com:5000", f"team/{name}", ref.tag, None)


def targets(archive: bytes) -> dict[str, ImageRef]:
    return {
        str(parse_reference(i.reference)): target(i.reference) for i in read_chart(archive).images
    }


def test_the_values_file_points_every_block_at_its_copy() -> None:
    values = yaml.safe_load(mirror_values(read_chart(WORDPRESS), targets(WORDPRESS)))
    assert values == {
        "image": {
            "registry": "mirror.example.com:5000",
            "repository": "team/docker.io.bitnami.wordpress",
            "tag": "6.4.1-debian-11-r6",
            "digest": "",
        },
        "volumePermissions": {
            "image": {
                "registry": "mirror.example.com:5000",
                "repository": "team/docker.io.bitnami.os-shell",
                "tag": "11-debian-11-r90",
            }
        },
        "mariadb": {
            "image": {
                "registry": "mirror.example.com:5000",
                "repository": "team/docker.io.bitnami.mariadb",
                "tag": "11.1.3-debian-11-r1",
                "digest": "",
            },
            "metrics": {
                "image": {
                    "registry": "mirror.example.com:5000",
                    "repository": "team/docker.io.bitnami.mysqld-exporter",
                    "tag": "0.15.0",
                }
            },
        },
    }
    ingress = yaml.safe_load(mirror_values(read_chart(INGRESS), targets(INGRESS)))
    assert ingress["controller"]["image"] == {
        "registry": "mirror.example.com:5000",
        "image": "team/registry.k8s.io.ingress-nginx.controller",
        "tag": "v1.9.4",
        "digest": "",  # the copy's own digest is the one to pin, when it is exact
    }
    podinfo = yaml.safe_load(mirror_values(read_chart(PODINFO), targets(PODINFO)))
    assert podinfo["image"] == {
        "repository": "mirror.example.com:5000/team/ghcr.io.stefanprodan.podinfo",
        "tag": "6.5.0",
    }


def test_global_image_registry_is_pointed_too() -> None:
    found = read_chart(GLOBAL_REGISTRY)
    assert found.global_registry
    assert [i.reference for i in found.images] == [
        "registry.example.com/bitnami/nginx:1.25.3-debian-11-r2"
    ]
    values = yaml.safe_load(mirror_values(found, targets(GLOBAL_REGISTRY)))
    assert values["global"] == {"imageRegistry": "mirror.example.com:5000"}
    assert values["image"]["repository"] == "team/registry.example.com.bitnami.nginx"


def test_only_what_was_copied_is_pointed() -> None:
    found = read_chart(WORDPRESS)
    some = {k: v for k, v in targets(WORDPRESS).items() if "wordpress" in k}
    assert list(yaml.safe_load(mirror_values(found, some))) == ["image"]
    assert mirror_values(found, {}) == ""


# -- an archive from a stranger ------------------------------------------------------------------


def raw_tar(*members: tarfile.TarInfo, data: bytes = b"") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return raw.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    return info


@pytest.mark.parametrize(
    ("archive", "words"),
    [
        pytest.param(lambda: tgz({"../evil/Chart.yaml": "name: x"}), "a path outside", id="dotdot"),
        pytest.param(lambda: tgz({"/etc/cron.d/Chart.yaml": "x"}), "a path outside", id="absolute"),
        pytest.param(
            lambda: tgz({"app/../../Chart.yaml": "x"}), "a path outside", id="inner-dotdot"
        ),
        pytest.param(
            lambda: raw_tar(member("app/values.yaml", tarfile.SYMTYPE)), "a link", id="symlink"
        ),
        pytest.param(
            lambda: raw_tar(member("app/Chart.yaml", tarfile.LNKTYPE)), "a link", id="hardlink"
        ),
        pytest.param(
            lambda: raw_tar(member("app/dev", tarfile.CHRTYPE)), "a device or pipe", id="device"
        ),
        pytest.param(
            lambda: tgz({"app/values.yaml": b"a: 1\n" * (MAX_FILE_BYTES // 5 + 1)}),
            "larger than 4 MiB",
            id="large-file",
        ),
        pytest.param(lambda: b"\x1f\x8b" + os.urandom(64), "not a chart archive", id="not-gzip"),
        pytest.param(
            lambda: os.urandom(MAX_ARCHIVE_BYTES + 1), "larger than 16 MiB", id="large-archive"
        ),
        pytest.param(lambda: tgz({"README.md": "# hello"}), "no Chart.yaml", id="no-chart"),
        pytest.param(lambda: tgz({"app/Chart.yaml": "name: [unclosed"}), "not YAML", id="bad-yaml"),
    ],
)
def test_no_path_in_an_archive_is_trusted_and_sizes_are_capped(
    archive: Callable[[], bytes], words: str
) -> None:
    with pytest.raises(ChartUnreadable, match=words):
        read_chart(archive())


def test_a_gzip_bomb_stops_at_the_unpacked_cap() -> None:
    """80 MiB of zeros compress to a few dozen KiB; the reader stops at 64 MiB unpacked."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("app/templates/huge.yaml")
        info.size = 80 << 20
        archive.addfile(info, io.BytesIO(bytes(info.size)))
    bomb = gzip.compress(raw.getvalue())
    assert len(bomb) < 1 << 20
    with pytest.raises(ChartUnreadable, match="unpacks to more than 64 MiB"):
        read_chart(bomb)


def test_subcharts_are_read_so_deep_and_no_deeper() -> None:
    archive = chart("level", "1.0.0", values={"image": "docker.io/library/level:0"})
    for depth in range(1, MAX_DEPTH + 3):
        archive = chart(
            "level",
            "1.0.0",
            values={"image": f"docker.io/library/level:{depth}"},
            packed={f"level-{depth}.tgz": archive},
        )
    tags = [parse_reference(ref).tag for ref, _ in images_of(archive)]
    assert tags == [str(d) for d in range(MAX_DEPTH + 2, 1, -1)]


def test_a_chart_is_read_from_any_top_directory_name() -> None:
    files = chart_files("renamed", "0.1.0", values={"image": "nginx:1.25"})
    assert images_of(tgz(files)) == [("nginx:1.25", "renamed")]


# -- which chart a request names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ask"),
    [
        (
            "oci://ghcr.io/stefanprodan/charts/podinfo:6.5.0",
            ChartAsk(
                "oci://ghcr.io/stefanprodan/charts/podinfo:6.5.0",
                oci="ghcr.io/stefanprodan/charts/podinfo:6.5.0",
            ),
        ),
        (
            "helm install podinfo oci://ghcr.io/stefanprodan/charts/podinfo --version 6.5.0",
            ChartAsk(
                "helm install podinfo oci://ghcr.io/stefanprodan/charts/podinfo --version 6.5.0",
                oci="ghcr.io/stefanprodan/charts/podinfo:6.5.0",
            ),
        ),
        (
            "$ helm upgrade --install -n web my oci://registry-1.docker.io/bitnamicharts/nginx",
            ChartAsk(
                "$ helm upgrade --install -n web my oci://registry-1.docker.io/bitnamicharts/nginx",
                oci="docker.io/bitnamicharts/nginx",
            ),
        ),
        (
            "helm pull oci://example.com/charts/app --version=1.2.3+build.4",
            ChartAsk(
                "helm pull oci://example.com/charts/app --version=1.2.3+build.4",
                oci="example.com/charts/app:1.2.3_build.4",
            ),
        ),
        (
            "helm install my-redis redis --repo https://charts.bitnami.com/bitnami "
            "--version 17.0.0",
            ChartAsk(
                "helm install my-redis redis --repo https://charts.bitnami.com/bitnami "
                "--version 17.0.0",
                repo="https://charts.bitnami.com/bitnami",
                name="redis",
                version="17.0.0",
            ),
        ),
        (
            "helm show values ingress-nginx --repo https://kubernetes.github.io/ingress-nginx/",
            ChartAsk(
                "helm show values ingress-nginx --repo https://kubernetes.github.io/ingress-nginx/",
                repo="https://kubernetes.github.io/ingress-nginx",
                name="ingress-nginx",
            ),
        ),
    ],
)
def test_the_chart_a_request_names(text: str, ask: ChartAsk) -> None:
    assert find_chart(text) == ask
    assert find_chart(f"--confirm\n{text}", ("--confirm",)) == ask


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("helm install my-release bitnami/kafka", "Helm repository alias: `bitnami`"),
        ("helm install demo ./charts/demo", "a chart on your disk"),
        ("helm install demo demo-1.0.0.tgz", "a chart on your disk"),
        ("helm install r chart --repo ftp://example.com/charts", "not a Helm repository"),
    ],
)
def test_a_chart_only_the_asker_can_resolve_is_refused(text: str, words: str) -> None:
    with pytest.raises(InvalidReference, match=words):
        find_chart(text)


@pytest.mark.parametrize(
    "text",
    [
        "nginx:1.25",
        "oci://ghcr.io/a/chart:1.0 nginx:1.25",  # a chart among images: copied as it is
        "docker pull nginx",
        "helm repo add bitnami https://charts.bitnami.com/bitnami",
    ],
)
def test_no_chart_alone(text: str) -> None:
    assert find_chart(text) is None


def test_a_charts_images_go_through_the_policy(tmp_path: Path) -> None:
    """An image from a source that is not allowed is named and left out; with approvals on,
    one an admin may approve is planned (and held by the planner until approved), one at an
    internal address nobody named is still left out."""
    archive = chart(
        "mixed",
        "1.0.0",
        values={
            "web": {"image": "docker.io/library/nginx:1.25"},
            "tool": {"image": "quay.io/jetstack/cert-manager-controller:v1.13.2"},
            "local": {"image": "10.0.0.5:5000/team/app:1"},
        },
    )
    source = ChartSource(
        ChartAsk("oci://docker.io/x/mixed:1.0.0", oci="docker.io/x/mixed:1.0.0"),
        read_chart(archive),
        parse_reference("docker.io/x/mixed:1.0.0"),
    )

    def planned(**more: Any) -> tuple[list[str], tuple[str, ...]]:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            mirror_db=tmp_path / "m.db",
            mirror_target="127.0.0.1:5999/mirror",
            mirror_allowed_sources=("docker.io",),
            **more,
        )
        plan = chart_plan(source, Policy(settings))
        return [r.text for r in plan.readings], plan.refused

    assert planned() == (
        ["docker.io/x/mixed:1.0.0", "docker.io/library/nginx:1.25"],
        ("quay.io/jetstack/cert-manager-controller:v1.13.2", "10.0.0.5:5000/team/app:1"),
    )
    assert planned(mirror_approval="outside-allowlist", mirror_admins=("test:carol",)) == (
        [
            "docker.io/x/mixed:1.0.0",
            "docker.io/library/nginx:1.25",
            "quay.io/jetstack/cert-manager-controller:v1.13.2",
        ],
        ("10.0.0.5:5000/team/app:1",),
    )
