"""Pasted pull failures and whole charts, copied for real between the lab's registries.

The pastes are the real ones of tests/test_pasted_errors.py with their images renamed to the
lab's (only the names: every other byte as it was posted). The charts are built here like real
ones (subcharts, an ``artifacthub.io/images`` annotation, ``global.imageRegistry``) and pushed
to the lab's source as real OCI helm artifacts, next to the images they deploy. Each kind runs
through ``mirror-bot mirror`` (dry run and live copy) and through the bot in-process, in both
languages.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

import lab as lab_module
from bot.chat import Incoming
from tests.support.charts import chart, push_chart
from tests.support.cli import MIRROR_BOT, bot_env
from tests.support.local_http import serve_locally
from tests.test_app import PLATFORM, Thread, finish, press, running_bot, say, settings_for
from tests.test_pasted_errors import sample
from tests.test_registry_engine import multi_arch

HELLO_BYTES_RE = r"\d+\.\d KB"


def flat(lab: lab_module.Lab, path: str) -> str:
    """The target repository's last part for an image of the lab's source (the host's `:` a
    `-`, the path's `/` a `.`)."""
    return f"{lab.source.replace(':', '-')}.{path.replace('/', '.')}"


def on_lab(text: str, names: Mapping[str, str]) -> str:
    """The paste with its images renamed (longest first, so a name inside another is not cut)."""
    for old in sorted(names, key=len, reverse=True):
        text = text.replace(old, names[old])
    return text


def cli(env: dict[str, str], *args: str, stdin: str) -> tuple[int, Any, str]:
    done = subprocess.run(
        [MIRROR_BOT, "mirror", *args, "--from", "-"],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    parsed = json.loads(done.stdout) if "--json" in args and done.stdout.strip() else done.stdout
    return done.returncode, parsed, done.stderr


@pytest.fixture(scope="module")
def pasted(lab: lab_module.Lab) -> str:
    """One paste holding one sample of each kind, renamed to the lab's images."""
    multi_arch(lab, "errors/multiarch")
    src = lab.source
    return "\n".join(
        [
            on_lab(
                sample("ocs-rate-limit"),
                {"obsidiandynamics/kafdrop:latest": f"{src}/library/hello:1.0"},
            ),
            on_lab(
                sample("proxy-timeout"),
                {"registry.k8s.io/ingress-nginx/controller:v1.11.2": f"{src}/library/multi:1.0"},
            ),
            on_lab(
                sample("docker-arm"),
                {"ghcr.io/aquanauts/legit-server:latest": f"{src}/errors/multiarch:1.0"},
            ),
            on_lab(
                sample("docker-arm-pull"), {"konard/hive-mind:latest": f"{src}/library/app:1.0.0"}
            ),
            on_lab(
                sample("docker-manifest-unknown"),
                {
                    "ivangabriele/dockfish:latest": f"{src}/library/app:1.2.5",
                    "ivangabriele/dockfish": f"{src}/library/app:1.2.5",
                },
            ),
            sample("minikube-x509"),  # nothing is copied: no need to rename
        ]
    )


def by_source(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["source"]: o for o in objects}


def test_each_kind_of_pull_failure_planned_by_a_dry_run(
    lab: lab_module.Lab, pasted: str, tmp_path: Path
) -> None:
    env = bot_env(lab, tmp_path / "dry.db")
    code, objects, stderr = cli(env, "--dry-run", "--json", stdin=pasted)
    assert code == 0, stderr
    found = by_source(objects)
    src = lab.source
    assert {k: (v["status"], v["failure"], v["platform"]) for k, v in found.items()} == {
        f"{src}/library/hello:1.0": ("planned", "rate_limited", "linux/amd64"),
        f"{src}/library/multi:1.0": ("planned", "unreachable", "linux/amd64"),
        f"{src}/errors/multiarch:1.0": ("planned", "platform_missing", "linux/arm64"),
        f"{src}/library/app:1.0.0": ("planned", "platform_missing", "linux/arm64"),
        f"{src}/library/app:1.2.5": ("planned", "manifest_unknown", "linux/amd64"),
        "selenium/hub": ("not_copied", "untrusted", None),
    }
    assert found[f"{src}/library/hello:1.0"]["asked"] == [
        line.strip()
        for line in pasted.splitlines()
        if "Failed to pull image" in line and "hello" in line
    ] + [line.strip() for line in pasted.splitlines() if "Back-off" in line and "hello" in line]
    assert "/etc/docker/certs.d/registry-1.docker.io/ca.crt" in found["selenium/hub"]["error"]
    assert stderr.splitlines()[0] == (
        "From a pull error: 6 images; linux/arm64/v8 from docker's message."
    )


def test_each_kind_of_pull_failure_copied_for_real(
    lab: lab_module.Lab, pasted: str, tmp_path: Path
) -> None:
    env = bot_env(lab, tmp_path / "live.db", MIRROR_ENGINE="registry")
    code, objects, stderr = cli(env, "--json", stdin=pasted)
    assert code == 1, stderr  # two of them are not there to copy: said, with what there is
    found = by_source(objects)
    src = lab.source
    assert {k: v["status"] for k, v in found.items()} == {
        f"{src}/library/hello:1.0": "succeeded",
        f"{src}/library/multi:1.0": "succeeded",
        f"{src}/errors/multiarch:1.0": "succeeded",
        f"{src}/library/app:1.0.0": "failed",
        f"{src}/library/app:1.2.5": "failed",
        "selenium/hub": "not_copied",
    }
    arm = found[f"{src}/errors/multiarch:1.0"]
    assert arm["target"] == f"{lab.target}/mirror/{flat(lab, 'errors/multiarch')}-linux-arm64:1.0"
    assert arm["digest_identical"]  # the arm64 image itself, byte for byte
    amd_only = found[f"{src}/library/app:1.0.0"]
    assert re.search(r"has no image for linux/arm64; it has linux/amd64 \(", amd_only["error"])
    missing = found[f"{src}/library/app:1.2.5"]
    assert missing["suggestions"][0] == f"{src}/library/app:1.2.4"
    hello = found[f"{src}/library/hello:1.0"]
    assert hello["target"] == f"{lab.target}/mirror/{flat(lab, 'library/hello')}:1.0"


# -- charts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Charts:
    shop: str
    """``oci://`` of a chart with a packed subchart on and one off by its condition."""
    stack: str
    """``oci://`` of a chart listing its images in its annotation, with global.imageRegistry."""
    shop_archive: bytes


@pytest.fixture(scope="module")
def charts(lab: lab_module.Lab) -> Charts:
    """Charts on the lab's source, shaped like real ones, and the images they deploy there."""
    src = lab.source
    lab_module.push_image(src, "shop/web", "2.1.0", lab_module.HELLO_LAYERS)
    lab_module.push_image(src, "shop/db", "15.1.0-r0", (lab_module.LayerSpec(12 * 1024, 41),))
    lab_module.push_image(src, "shop/exporter", "0.15.0", (lab_module.LayerSpec(9 * 1024, 42),))
    db = chart(
        "db",
        "12.1.0",
        app_version="15.1.0",
        values={
            "global": {"imageRegistry": ""},
            "image": {"registry": src, "repository": "shop/db", "tag": "15.1.0-r0", "digest": ""},
            "metrics": {"image": {"registry": src, "repository": "shop/exporter", "tag": "0.15.0"}},
        },
    )
    cache = chart(
        "cache",
        "1.0.0",
        values={"image": {"registry": src, "repository": "shop/cache", "tag": "7"}},
    )
    shop = chart(
        "shop",
        "1.2.3",
        app_version="2.1.0",
        dependencies=[
            {"name": "db", "version": "12.x.x", "condition": "db.enabled"},
            {"name": "cache", "version": "1.x.x", "condition": "cache.enabled"},
        ],
        values={
            "image": {"registry": src, "repository": "shop/web", "tag": ""},
            "db": {"enabled": True},
            "cache": {"enabled": False},
        },
        packed={"db-12.1.0.tgz": db, "cache-1.0.0.tgz": cache},
    )
    stack = chart(
        "stack",
        "0.5.0",
        app_version="2.1.0",
        annotations={
            "artifacthub.io/images": (
                f"- name: web\n  image: {src}/shop/web:2.1.0\n"
                f"- name: exporter\n  image: {src}/shop/exporter:0.15.0\n"
            )
        },
        values={
            "global": {"imageRegistry": src},
            "image": {"registry": "docker.io", "repository": "shop/web", "tag": "2.1.0"},
            "exporter": {
                "image": {"registry": "docker.io", "repository": "shop/exporter", "tag": "0.15.0"}
            },
        },
    )
    push_chart(src, "charts/shop", shop)
    push_chart(src, "charts/stack", stack)
    return Charts(f"oci://{src}/charts/shop:1.2.3", f"oci://{src}/charts/stack:0.5.0", shop)


def values_file(text: str, indent: str = "") -> dict[str, Any]:
    """The values file an answer prints (between its heading and the install line); a chat
    answer's code is indented by ``indent`` in its plain-text form."""
    lines = text.splitlines()
    start = next(n for n, line in enumerate(lines) if "values-mirror.yaml: point" in line) + 1
    end = next(n for n, line in enumerate(lines) if n > start and "helm install" in line)
    values: dict[str, Any] = yaml.safe_load(
        "\n".join(line.removeprefix(indent) for line in lines[start:end])
    )
    return values


def test_a_chart_by_the_command_line_copies_its_images_and_writes_the_values(
    lab: lab_module.Lab, charts: Charts, tmp_path: Path
) -> None:
    env = bot_env(lab, tmp_path / "chart.db", MIRROR_ENGINE="registry")
    code, objects, stderr = cli(env, "--json", stdin=charts.shop)
    assert code == 0, stderr
    assert [(o["source"], o["artifact"], o["asked"]) for o in objects] == [
        (f"{lab.source}/charts/shop:1.2.3", "chart", [charts.shop]),
        (f"{lab.source}/shop/web:2.1.0", "image", [charts.shop]),  # empty tag: appVersion
        (f"{lab.source}/shop/db:15.1.0-r0", "image", [charts.shop]),
        (f"{lab.source}/shop/exporter:0.15.0", "image", [charts.shop]),
    ]  # cache is off by default: not read, not copied
    assert "Chart `shop` 1.2.3 deploys 3 images" in stderr
    assert "Subcharts off by default, not read: `cache`." in stderr

    code, text, stderr = cli(env, stdin=charts.stack)
    assert code == 0, stderr
    assert "as its artifacthub.io/images annotation says" in stderr
    values = values_file(text)
    assert values["global"] == {"imageRegistry": lab.target}
    assert values["image"] == {
        "registry": lab.target,
        "repository": f"mirror/{flat(lab, 'shop/web')}",
        "tag": "2.1.0",
    }
    assert values["exporter"]["image"]["repository"] == f"mirror/{flat(lab, 'shop/exporter')}"
    assert (
        f"helm install stack oci://{lab.target}/mirror/{flat(lab, 'charts/stack')} "
        "--version 0.5.0 --plain-http -f values-mirror.yaml"
    ) in text


def test_a_failed_helm_install_is_read_as_its_chart(
    lab: lab_module.Lab, charts: Charts, tmp_path: Path
) -> None:
    paste = on_lab(
        sample("helm-403"),
        {
            "ghcr.io/deliveryhero/helm-charts/node-problem-detector": f"{lab.source}/charts/shop",
            "--version 2.4.0": "--version 1.2.3",
        },
    )
    env = bot_env(
        lab, tmp_path / "helm.db", MIRROR_ENGINE="registry", MIRROR_TARGET=f"{lab.target}/helm"
    )
    code, objects, stderr = cli(env, "--dry-run", "--json", stdin=paste)
    assert code == 0, stderr
    assert [o["source"] for o in objects] == [f"{lab.source}/charts/shop:1.2.3"]
    assert "A dry run reads no chart" in stderr
    code, objects, stderr = cli(env, "--json", stdin=paste)
    assert code == 0, stderr
    assert [o["status"] for o in objects] == ["succeeded"] * 4
    assert objects[0]["asked"] == [paste.splitlines()[0].strip()]


# -- the bot in-process ---------------------------------------------------------------------------


async def test_a_pasted_error_in_chat_says_what_it_read_and_points_the_cluster(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    paste = on_lab(
        sample("ocs-rate-limit"),
        {"obsidiandynamics/kafdrop:latest": f"{lab.source}/library/hello:1.0"},
    )
    settings = settings_for(tmp_path, lab.target, lab.source)
    async with running_bot(settings) as bot:
        thread = await say(bot, "alice", "room1", f"/mirror\n{paste}")
        ack = thread.texts[0]
        assert ack.startswith("Job ") and "mirroring 1 image" in ack
        assert "From a pull error: 1 image." in ack
        assert (
            f"`{lab.source}/library/hello:1.0`: its registry's pull limit stopped the pull; "
            "mirroring it." in ack
        )
        assert "read `" not in ack  # the origin says it, not a "read X as Y" per image
        await finish(bot)
        answer = thread.texts[-1]
        assert "done: 1 image ready" in answer
        assert "From a pull error: 1 image." in answer
        assert f"- name: {lab.source}/library/hello" in answer  # kustomize's images block
        assert f"  newName: {lab.target}/app/{flat(lab, 'library/hello')}" in answer


async def test_a_missing_platform_is_copied_and_the_platforms_there_are_listed(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    multi_arch(lab, "errors/arm")
    paste = on_lab(
        sample("docker-arm"),
        {"ghcr.io/aquanauts/legit-server:latest": f"{lab.source}/errors/arm:1.0"},
    )
    settings = settings_for(tmp_path, lab.target, lab.source)
    async with running_bot(settings) as bot:
        thread = await say(bot, "alice", "room1", f"/mirror {paste}")
        assert (
            "From a pull error: 1 image; linux/arm64/v8 from docker's message." in thread.texts[0]
        )
        about = next(m for m in thread.messages if m.text.startswith("About the pull error"))
        assert re.search(
            rf"`{lab.source}/errors/arm:1.0` has linux/amd64 \({HELLO_BYTES_RE}\), "
            rf"linux/arm64 \({HELLO_BYTES_RE}\)\.",
            about.text,
        )
        [every] = about.views[-1].actions
        assert every.command == f"/mirror {lab.source}/errors/arm:1.0 --platform all"
        await finish(bot)
        assert "done: 1 image ready" in thread.texts[-1]
        assert f"{flat(lab, 'errors/arm')}-linux-arm64:1.0" in thread.texts[-1]
        assert await press(bot, "alice", "room1", every.id, thread) == []
        await finish(bot)
        assert "done: 1 image ready" in thread.texts[-1]
        [latest, _first] = await bot.service.store.recent_jobs(f"{PLATFORM}:room1")
        assert latest.items[0].platform is None  # every platform


async def test_a_certificate_the_puller_distrusts_copies_nothing(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab.target, lab.source)
    async with running_bot(settings) as bot:
        thread = await say(bot, "alice", "room1", f"/mirror {sample('kubeadm-x509')}")
        [answer] = thread.texts
        assert answer.startswith("Nothing to copy")
        assert "From a pull error: 5 images." in answer
        assert "/etc/docker/certs.d/k8s.gcr.io/ca.crt" in answer
        assert await bot.service.store.recent_jobs(f"{PLATFORM}:room1") == []


async def test_a_chart_in_chat_with_its_images_and_the_values_file(
    lab: lab_module.Lab, charts: Charts, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab.target, lab.source)
    async with running_bot(settings) as bot:
        thread = await say(bot, "alice", "room1", f"/mirror {charts.shop}")
        assert "mirroring 4 images" in thread.texts[0]
        assert "Chart `shop` 1.2.3 deploys 3 images" in thread.texts[0]
        await finish(bot)
        answer = thread.texts[-1]
        assert "done: 4 images ready" in answer
        values = values_file(answer, "    ")
        assert values["db"]["image"] == {
            "registry": lab.target,
            "repository": f"app/{flat(lab, 'shop/db')}",
            "tag": "15.1.0-r0",
            "digest": "",
        }
        assert values["image"]["repository"] == f"app/{flat(lab, 'shop/web')}"
        assert "-f values-mirror.yaml" in answer


async def test_a_chart_over_the_limit_is_planned_first_and_an_admin_copies_it(
    lab: lab_module.Lab, charts: Charts, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab.target, lab.source, mirror_max_images=2)
    async with running_bot(settings) as bot:
        plan = await say(
            bot,
            "alice",
            "room1",
            f"/mirror helm install shop {charts.shop.rsplit(':', 1)[0]} --version 1.2.3",
        )
        [message] = plan.messages
        assert message.text.startswith("That is 4 images, more than the 2 one command may copy.")
        [copy_all] = message.views[-1].actions
        assert copy_all.command == f"/mirror --confirm {charts.shop}"
        assert await bot.service.store.recent_jobs(f"{PLATFORM}:room1") == []
        assert await press(bot, "carol", "room1", copy_all.id, plan) == []
        await finish(bot)
        assert "done: 4 images ready" in plan.texts[-1]


@asynccontextmanager
async def helm_repository(files: Mapping[str, bytes]) -> AsyncIterator[str]:
    """A classic Helm repository (``index.yaml`` and archives) on a loopback port."""

    async def serve(request: web.Request) -> web.Response:
        body = files.get(request.match_info["name"])
        return web.Response(body=body) if body is not None else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/charts/{name}", serve)
    runner, port = await serve_locally(app)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_chart_from_an_http_repository_copies_its_images(
    lab: lab_module.Lab, charts: Charts, tmp_path: Path
) -> None:
    import hashlib

    archive = charts.shop_archive
    index = {
        "apiVersion": "v1",
        "entries": {
            "shop": [
                {
                    "name": "shop",
                    "version": "1.2.3",
                    "urls": ["shop-1.2.3.tgz"],
                    "digest": hashlib.sha256(archive).hexdigest(),
                },
                {"name": "shop", "version": "1.0.0", "urls": ["shop-1.0.0.tgz"]},
            ]
        },
    }
    files = {"index.yaml": yaml.safe_dump(index).encode(), "shop-1.2.3.tgz": archive}
    async with helm_repository(files) as host:
        settings = settings_for(tmp_path, lab.target, lab.source, host)
        async with running_bot(settings) as bot:
            typed = f"/mirror helm install shop shop --repo http://{host}/charts"
            thread = await say(bot, "alice", "room1", typed)
            assert "mirroring 3 images" in thread.texts[0], thread.texts
            assert f"The chart itself stays in `http://{host}/charts`" in thread.texts[0]
            await finish(bot)
            answer = thread.texts[-1]
            assert "done: 3 images ready" in answer
            assert (
                f"helm install shop shop --repo http://{host}/charts --version 1.2.3 "
                "-f values-mirror.yaml" in answer
            )
        (tmp_path / "other").mkdir()
        other = settings_for(tmp_path / "other", lab.target, lab.source)
        async with running_bot(other) as bot:
            refused = await say(
                bot, "alice", "room1", f"/mirror helm pull shop --repo http://{host}/charts"
            )
            assert refused.texts == [
                f"`{host}` is not an allowed source registry; allowed: {lab.source}, docker.io."
            ]


async def test_in_chinese(lab: lab_module.Lab, charts: Charts, tmp_path: Path) -> None:
    paste = on_lab(
        sample("proxy-timeout"),
        {"registry.k8s.io/ingress-nginx/controller:v1.11.2": f"{lab.source}/library/multi:1.0"},
    )
    settings = settings_for(tmp_path, lab.target, lab.source)
    async with running_bot(settings) as bot:
        thread = Thread()
        await bot.handle(
            Incoming(PLATFORM, "li", "li", "room2", f"/mirror {paste}", language="zh-CN"), thread
        )
        assert "从拉取错误中读到：1 个镜像。" in thread.texts[0]
        assert "连不上它的镜像仓库" in thread.texts[0]
        chart_thread = Thread()
        await bot.handle(
            Incoming(PLATFORM, "li", "li", "room2", f"/mirror {charts.stack}", language="zh-CN"),
            chart_thread,
        )
        assert (
            "Chart `stack` 0.5.0 部署 2 个镜像（来自它的 artifacthub.io/images 注解）。"
            in chart_thread.texts[0]
        )
        await finish(bot)
        assert "values-mirror.yaml" in chart_thread.texts[-1]


async def test_a_chart_whose_archive_is_refused_is_still_copied_alone(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """A link in the archive (or any other reason not to read it) leaves the chart an OCI
    artifact like any other: copied exactly, never unpacked, and the answer says why no images
    came along."""
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        meta = yaml.safe_dump({"apiVersion": "v2", "name": "linked", "version": "0.1.0"}).encode()
        info = tarfile.TarInfo("linked/Chart.yaml")
        info.size = len(meta)
        archive.addfile(info, io.BytesIO(meta))
        link = tarfile.TarInfo("linked/values.yaml")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        archive.addfile(link)
    push_chart(lab.source, "charts/linked", raw.getvalue())
    settings = settings_for(tmp_path, lab.target, lab.source)
    async with running_bot(settings) as bot:
        asked = f"oci://{lab.source}/charts/linked:0.1.0"
        thread = await say(bot, "alice", "room1", f"/mirror {asked}")
        assert "mirroring 1 image" in thread.texts[0]
        assert (
            f"I could not read which images `{asked}` deploys: The chart archive holds a link "
            "(`linked/values.yaml`). Copying the chart alone." in thread.texts[0]
        )
        await finish(bot)
        assert "done: 1 image ready" in thread.texts[-1]
        assert "helm install linked oci://" in thread.texts[-1]
        assert "values-mirror.yaml" not in thread.texts[-1]
