"""What the final answer says: where the copy is, whether it is exact, what to paste."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bot import actions, render
from bot.view import to_plain_text
from mirror.artifacts import ArtifactKind, Referrer, ReferrerKind
from mirror.lookup import Inspection, PlatformImage, TagList
from mirror.models import Item, ItemStatus, Job
from mirror.platform import DEFAULT_PLATFORM
from mirror.reference import parse_reference

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def done(source: str, target: str, *, sd: str = DIGEST_A, td: str = DIGEST_B) -> Item:
    return Item(
        source,
        parse_reference(source),
        parse_reference(target),
        DEFAULT_PLATFORM,
        status=ItemStatus.SUCCEEDED,
        engine="docker",
        source_digest=sd,
        target_digest=td,
        bytes=25_000_000,
        seconds=12.3,
    )


def test_answer_has_familiar_docker_lines_and_full_ctr_lines() -> None:
    item = done("nginx:1.25", "docker.io/alice/nginx:1.25")
    view = render.answer(Job("abcdef", "slack:U1", "slack:C1", [item]), render.RenderOptions())
    assert view.title == "Job abcdef done: 1 image ready"
    assert view.code == (
        "docker pull alice/nginx:1.25 && docker tag alice/nginx:1.25 nginx:1.25",
        "ctr -n k8s.io images pull docker.io/alice/nginx:1.25 && "
        "ctr -n k8s.io images tag docker.io/alice/nginx:1.25 docker.io/library/nginx:1.25",
    )
    text = to_plain_text(view)
    assert "25.0 MB" in text and "12s" in text
    assert "digest differs from the source" in text and "--platform all" in text


def test_exact_digest_copy_of_a_digest_reference_pulls_by_digest() -> None:
    source = f"quay.io/x/y@{DIGEST_A}"
    item = done(source, "127.0.0.1:5000/m/quay.io.x.y:sha256-aaaaaaaaaaaa", td=DIGEST_A)
    options = render.RenderOptions(
        insecure_registries=frozenset({"127.0.0.1:5000"}),
        login_registries=frozenset({"127.0.0.1:5000"}),
    )
    view = render.answer(Job("abcdef", "cli:me", "cli:local", [item]), options)
    assert view.code[0] == (
        f"docker pull 127.0.0.1:5000/m/quay.io.x.y@{DIGEST_A} && "
        f"docker tag 127.0.0.1:5000/m/quay.io.x.y@{DIGEST_A} quay.io/x/y:sha256-aaaaaaaaaaaa"
    )
    assert view.code[1].startswith("ctr -n k8s.io images pull --plain-http ")
    assert view.lines == (
        "The target is private: run `docker login 127.0.0.1:5000` before pulling.",
    )
    assert "digest identical to the source" in to_plain_text(view)


def test_partial_failure_names_the_reason_and_only_pastes_what_worked() -> None:
    ok = done("nginx:1.25", "docker.io/alice/nginx:1.25")
    bad = Item(
        "redis:9",
        parse_reference("redis:9"),
        parse_reference("docker.io/alice/redis:9"),
        DEFAULT_PLATFORM,
        status=ItemStatus.FAILED,
        error="`redis:9` was not found in `docker.io`: check the name and tag.",
    )
    view = render.answer(Job("abcdef", "u", "c", [ok, bad]), render.RenderOptions())
    assert view.title == "Job abcdef: 1 of 2 images ready"
    assert len(view.code) == 2
    assert view.rows[1].state == "failed" and view.rows[1].detail == bad.error


def test_an_exact_copy_says_what_came_along() -> None:
    item = done("quay.io/x/y:1.0", "127.0.0.1:5000/m/y:1.0", td=DIGEST_A)
    item.engine = "registry"
    item.referrers = (
        Referrer(
            "sha256:" + "1" * 64,
            "application/vnd.dev.cosign.simplesigning.v1+json",
            ReferrerKind.SIGNATURE,
        ),
        Referrer("sha256:" + "2" * 64, "application/spdx+json", ReferrerKind.SBOM),
    )
    view = render.answer(Job("abcdef", "cli:me", "cli:local", [item]), render.RenderOptions())
    assert "digest identical to the source · with 1 signature and 1 SBOM" in to_plain_text(view)


def test_a_daemon_copy_says_signatures_cannot_follow() -> None:
    item = done("nginx:1.25", "docker.io/alice/nginx:1.25")
    text = to_plain_text(
        render.answer(Job("abcdef", "cli:me", "cli:local", [item]), render.RenderOptions())
    )
    assert "signatures and SBOMs made for the source do not apply to it" in text
    assert "--platform all or MIRROR_ENGINE=registry" in text


def test_a_chart_is_pulled_and_installed_with_helm() -> None:
    item = done(
        "ghcr.io/stefanprodan/charts/podinfo:6.5.0", "docker.io/alice/podinfo:6.5.0", td=DIGEST_A
    )
    item.artifact = ArtifactKind.CHART
    view = render.answer(Job("abcdef", "cli:me", "cli:local", [item]), render.RenderOptions())
    assert view.code == (
        "helm pull oci://registry-1.docker.io/alice/podinfo --version 6.5.0",
        "helm install podinfo oci://registry-1.docker.io/alice/podinfo --version 6.5.0",
    )
    text = to_plain_text(view)
    assert "Helm chart" in text and "linux/amd64" not in text and "docker tag" not in text


def test_another_artifact_is_pulled_with_oras_over_plain_http() -> None:
    item = done("ghcr.io/acme/policy:v1", "127.0.0.1:5000/m/policy:v1", td=DIGEST_A)
    item.artifact = ArtifactKind.WASM
    options = render.RenderOptions(insecure_registries=frozenset({"127.0.0.1:5000"}))
    view = render.answer(Job("abcdef", "cli:me", "cli:local", [item]), options)
    assert view.code == ("oras pull --plain-http 127.0.0.1:5000/m/policy:v1",)
    assert "WASM module" in to_plain_text(view)


def test_buttons_cancel_while_running_then_retry_per_failed_image() -> None:
    failed = Item("nginx:1", parse_reference("nginx:1"), parse_reference("r/m/nginx:1"), None)
    cancelled = Item("redis:7", parse_reference("redis:7"), parse_reference("r/m/redis:7"), None)
    job = Job("abcdef", "console:alice", "console:local", [failed, cancelled])
    running = render.progress(job)
    assert [(a.label, a.command) for a in running.actions] == [("Cancel", "/cancel abcdef")]
    assert "[Cancel] type: /cancel abcdef" in to_plain_text(running)

    failed.status, failed.error = ItemStatus.FAILED, "Not found."
    cancelled.status = ItemStatus.CANCELLED
    assert render.progress(job).actions == ()  # the edit that ends the job removes Cancel
    [retry] = render.answer(job, render.RenderOptions()).actions
    assert retry.id == "abcdef.retry.0" and len(retry.id.encode()) <= 64
    assert retry.label == "Retry nginx:1"
    assert retry.command == "/mirror nginx:1 --platform all"


def test_a_one_platform_copy_that_is_not_exact_offers_all_platforms() -> None:
    rebuilt = done("nginx:1.25", "docker.io/alice/nginx:1.25")  # digests differ
    exact = done("redis:7", "docker.io/alice/redis:7", td=DIGEST_A)
    job = Job("abcdef", "cli:me", "cli:local", [rebuilt, exact])
    [button] = render.answer(job, render.RenderOptions()).actions
    assert button.label == "nginx:1.25: all platforms (exact copy)"
    assert button.command == "/mirror nginx:1.25 --platform all"
    assert button.id == "abcdef.all.0"


def test_a_miss_lists_its_suggestions_as_mirror_lines_best_first() -> None:
    item = Item(
        "app:1.2.5",
        parse_reference("app:1.2.5"),
        parse_reference("docker.io/alice/app:1.2.5"),
        DEFAULT_PLATFORM,
        status=ItemStatus.FAILED,
        error="`app:1.2.5` does not exist; nearest: `1.2.4`, `1.3.0`.",
        suggestions=("docker.io/library/app:1.2.4", "docker.io/library/app:1.3.0"),
    )
    view = render.answer(Job("j1", "console:me", "console:here", [item]), render.RenderOptions())
    assert view.code == ("/mirror app:1.2.4", "/mirror app:1.3.0")
    assert view.rows[0].detail == item.error
    # One button per suggestion, best first, instead of a Retry that would miss again.
    assert [(a.id, a.label, a.command) for a in view.actions] == [
        ("j1.s.0.0", "Mirror 1.2.4", "/mirror app:1.2.4 --platform linux/amd64"),
        ("j1.s.0.1", "Mirror 1.3.0", "/mirror app:1.3.0 --platform linux/amd64"),
    ]


def test_a_suggestion_in_another_registry_is_named_in_full() -> None:
    item = Item(
        "pause:3.9",
        parse_reference("pause:3.9"),
        parse_reference("docker.io/alice/pause:3.9"),
        None,
        status=ItemStatus.FAILED,
        error="`pause:3.9` is not on Docker Hub; it exists as `registry.k8s.io/pause:3.9`.",
        suggestions=("registry.k8s.io/pause:3.9",),
    )
    job = Job("j1", "cli:me", "cli:here", [item])
    [button] = render.answer(job, render.RenderOptions()).actions
    assert button.label == "Mirror registry.k8s.io/pause:3.9"
    assert button.command == "/mirror registry.k8s.io/pause:3.9 --platform all"


def test_tags_and_inspect_views() -> None:
    ref = parse_reference("quay.io/team/app:latest")
    when = datetime(2024, 1, 1, tzinfo=UTC)
    many = tuple(f"1.{n}.0" for n in range(40, 0, -1))
    view = render.tag_list(TagList(ref, many, 45, {"1.40.0": when}), "1.")
    text = to_plain_text(view)
    assert view.title == "Tags of `quay.io/team/app` matching `1.`, newest first (40)"
    assert view.lines[0].startswith("`1.40.0` · created 2024-01-01 (")
    assert len(view.lines) == render.TAGS_SHOWN and view.lines[1] == "`1.39.0`"
    assert "and 10 more; narrow them with `/tags quay.io/team/app FILTER`." in text
    empty = render.tag_list(TagList(ref, (), 45, {}), "9.")
    assert empty.title == "`quay.io/team/app` has 45 tags, none matching `9.`."

    seen = Inspection(
        ref,
        DIGEST_A,
        "application/vnd.oci.image.index.v1+json",
        (PlatformImage("linux/amd64", DIGEST_B, 3_400_000),),
        when,
    )
    copied = Item(
        "quay.io/team/app",
        ref,
        parse_reference("docker.io/alice/quay.io.team.app:latest"),
        DEFAULT_PLATFORM,
        status=ItemStatus.SUCCEEDED,
        source_digest="sha256:" + "c" * 64,
    )
    view = render.inspection(seen, [(copied, 0.0)])
    text = to_plain_text(view)
    assert "- linux/amd64: 3.4 MB" in text
    assert "Mirrored here since" in text
    # the name in backticks is what people copy: the platform stands outside it
    assert "as `docker.io/alice/quay.io.team.app:latest` (linux/amd64)." in text
    every = Item(**{**copied.__dict__, "platform": None})
    assert "`docker.io/alice/quay.io.team.app:latest` (all)." in to_plain_text(
        render.inspection(seen, [(every, 0.0)])
    )
    assert (
        "Upstream moved since the last copy" in text and "/mirror quay.io/team/app:latest" in text
    )
    same = Item(**{**copied.__dict__, "source_digest": DIGEST_B})
    assert "Upstream has not moved" in to_plain_text(render.inspection(seen, [(same, 0.0)]))
    assert "Not mirrored here yet." in to_plain_text(render.inspection(seen))


def waiting(source: str, size: int | None) -> Item:
    target = "docker.io/alice/" + source.replace("/", ".")
    return Item(
        source,
        parse_reference(source),
        parse_reference(target),
        DEFAULT_PLATFORM,
        status=ItemStatus.AWAITING if size else ItemStatus.QUEUED,
        bytes=size,
    )


def test_an_image_awaiting_confirmation_shows_its_size_and_a_copy_button() -> None:
    job = Job("abcdef", "slack:U1", "slack:C1", [waiting("nginx:1.25", 3_200_000_000)])
    view = render.progress(job)
    assert [(a.label, a.command) for a in view.actions] == [
        ("Copy 3.2 GB", "/confirm abcdef 1"),
        ("Cancel", "/cancel abcdef"),
    ]
    assert "- nginx:1.25: awaiting confirmation\n    This image is 3.2 GB." in to_plain_text(view)
    assert job.state == "awaiting confirmation"
    stored = {a.id for a in actions.confirmations(job)}
    assert {a.id for a in view.actions} - stored == {"abcdef.cancel"}


def test_many_waiting_images_share_one_copy_all_button() -> None:
    items = [waiting(f"app{n}:1", 2_000_000_000) for n in range(6)] + [waiting("small:1", None)]
    job = Job("abcdef", "slack:U1", "slack:C1", items)
    view = render.progress(job)
    assert [(a.label, a.command) for a in view.actions] == [
        ("Copy all 6 waiting (12.0 GB)", "/confirm abcdef"),
        ("Cancel", "/cancel abcdef"),
    ]
    assert {a.id for a in view.actions} - {a.id for a in actions.confirmations(job)} == {
        "abcdef.cancel"
    }
    few = Job("ghjkmn", "slack:U1", "slack:C1", items[:2] + items[-1:])
    assert [a.label for a in render.progress(few).actions] == [
        "Copy app0:1 (2.0 GB)",
        "Copy app1:1 (2.0 GB)",
        "Cancel",
    ]


def test_chinese_answers_write_durations_lists_and_brackets_the_chinese_way() -> None:
    """Durations and relative times from Babel's CLDR data (not ``6h00m``, ``11s 前``), lists
    joined with ``、``, brackets full-width: nothing English-shaped between Chinese words."""
    from datetime import timedelta

    from bot.i18n import CHINESE, speaking
    from bot.view import Bar, bar_text
    from mirror.models import Watch

    items = [done(name, f"docker.io/alice/{name}") for name in ("a:1", "b:1", "c:1", "d:1")]
    for item in items:
        item.seconds = 3723.0
    job = Job("abcdef", "u", "c", items)
    job.created -= 125  # minutes: a slow machine's second more does not change the words
    watch = Watch("w1", "u", "c", parse_reference("nginx").repo_only, "1.27", None)
    three_days = datetime.now(UTC) - timedelta(days=3, minutes=1)
    with speaking(CHINESE):
        answer = to_plain_text(render.answer(job, render.RenderOptions()))
        status = to_plain_text(render.status_list([job]))
        started = to_plain_text(render.watch_started(watch, 6 * 3600))
        bar = bar_text(Bar(10_000_000, 30_000_000, 1_000_000, 20))
        date = render._date(three_days)
    assert "1小时2分钟" in answer and "1h02m" not in answer
    assert "a:1、b:1、c:1" in status and "2分钟前" in status, status
    assert "每 6小时 检查" in started or "每6小时检查" in started, started
    assert "20秒" in bar and "ETA" not in bar, bar
    assert date == f"{three_days:%Y-%m-%d}（3天前）", date  # noqa: RUF001 (full-width, on purpose)
    with speaking("en"):  # English keeps its compact forms
        assert "1h02m" in to_plain_text(render.answer(job, render.RenderOptions()))
        english = to_plain_text(render.status_list([job]))
        assert re.search(r"a:1, b:1, c:1 and 1 more · 2m0\ds ago", english), english
        assert "ETA 20s" in bar_text(Bar(10_000_000, 30_000_000, 1_000_000, 20))


def test_images_stopped_for_one_reason_say_it_once() -> None:
    """A cancelled job of eleven images says "The job was cancelled." once, not per image;
    different reasons stay on their own rows."""
    cancelled = [
        Item(
            f"app:1.0.{n}",
            parse_reference(f"app:1.0.{n}"),
            parse_reference(f"docker.io/alice/app:1.0.{n}"),
            DEFAULT_PLATFORM,
            status=ItemStatus.CANCELLED,
            error="The job was cancelled.",
        )
        for n in range(11)
    ]
    job = Job("abcdef", "u", "c", cancelled)
    for view in (render.answer(job, render.RenderOptions()), render.progress(job)):
        assert to_plain_text(view).count("The job was cancelled.") == 1, to_plain_text(view)
        assert all(row.detail is None for row in view.rows)
    cancelled[0].status, cancelled[0].error = ItemStatus.FAILED, "`app:1.0.0` was not found."
    view = render.answer(job, render.RenderOptions())
    assert view.rows[0].detail == "`app:1.0.0` was not found."
    assert to_plain_text(view).count("The job was cancelled.") == 10
