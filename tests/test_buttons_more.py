"""Buttons that ask before acting (MIRROR_CONFIRM_BYTES, a bulk plan over MIRROR_MAX_IMAGES)
and buttons that mirror what ``/tags`` and ``/inspect`` show, in-process through
``MirrorBot.handle`` with the real store and the lab's registries (see tests/test_app.py).
The same flows through the real chat SDKs are in tests/test_telegram.py and test_slack.py."""

from __future__ import annotations

import re
from pathlib import Path

import lab as lab_module
from bot import actions
from bot.view import to_plain_text
from mirror.models import ItemStatus
from tests.test_app import finish, job_id_of, press, running_bot, say, settings_for, until
from tests.test_registry_engine import multi_arch


async def test_an_image_over_the_confirm_size_waits_for_its_requester(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """The live message asks with the size; someone else's /confirm is refused; the
    requester's press copies it, once; the console form names the command to type."""
    settings = settings_for(tmp_path, lab.target, lab.source, mirror_confirm_bytes=1000)
    async with running_bot(settings, asks=True) as bot:
        thread = await say(bot, "alice", "room1", f"/mirror {lab.source}/library/hello:1.0")
        job_id = job_id_of(thread)
        live = thread.messages[0]
        await until(lambda: "awaiting confirmation" in live.text)
        copy, cancel = live.views[-1].actions
        assert re.fullmatch(r"Copy \d+\.\d KB", copy.label) and cancel.label == "Cancel"
        assert f"This image is {copy.label.removeprefix('Copy ')}." in live.text
        assert f"[{copy.label}] type: /confirm {job_id} 1" in to_plain_text(live.views[-1])

        refused = await say(bot, "bob", "room1", f"/confirm {job_id}")
        assert refused.texts == [f"Only the requester or an admin may confirm job {job_id}."]
        job = bot.service.active(job_id)
        assert job is not None and job.items[0].status is ItemStatus.AWAITING
        stored = await bot.service.store.get_job(job_id)
        assert stored is not None and stored.items[0].status is ItemStatus.AWAITING

        assert await press(bot, "alice", "room1", copy.id, thread) == []
        assert thread.texts[1].startswith(f"Job {job_id}: copying")
        assert await press(bot, "alice", "room1", copy.id, thread) == [actions.USED]
        await finish(bot)
        assert "done: 1 image ready" in thread.texts[-1]
        assert live.views[-1].actions == ()
        late = await say(bot, "alice", "room1", f"/confirm {job_id}")
        assert late.texts == [f"Job `{job_id}` is not running."]


async def test_an_image_under_the_confirm_size_is_not_asked_about(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab.target, lab.source, mirror_confirm_bytes=10**9)
    async with running_bot(settings, asks=True) as bot:
        thread = await say(bot, "alice", "room1", f"/mirror {lab.source}/library/hello:1.0")
        await finish(bot)
        views = [view for message in thread.messages for view in message.views]
        assert not any("awaiting" in to_plain_text(view) for view in views)
        assert "done: 1 image ready" in thread.texts[-1]


async def test_a_bulk_plan_shows_sizes_and_only_an_admin_copies_all(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab.target, lab.source, mirror_max_images=2)
    images = [f"{lab.source}/library/{name}" for name in ("hello:1.0", "multi:1.0", "app:1.0.0")]
    async with running_bot(settings) as bot:
        plan = await say(bot, "alice", "room1", "/mirror " + "\n".join(images))
        [message] = plan.messages
        text = message.text
        assert text.startswith("That is 3 images, more than the 2 one command may copy.")
        assert f"- {images[1]}: 6.3 MB" in text and f"- {images[0]}: 66.3 KB" in text
        assert "In all 6.4 MB." in text and "An admin may confirm it" in text
        [copy_all] = message.views[-1].actions
        assert copy_all.label == "Copy all 3 images (6.4 MB)"
        assert await bot.service.store.recent_jobs("test:room1") == []

        only_admins = ["Only an admin may press this button; nothing was done."]
        assert await press(bot, "alice", "room1", copy_all.id, plan) == only_admins
        assert await press(bot, "bob", "room1", copy_all.id, plan) == only_admins
        typed = await say(bot, "alice", "room1", copy_all.command)
        assert typed.texts[0].startswith("Only an admin may confirm more than 2 images")
        assert await bot.service.store.recent_jobs("test:room1") == []

        assert await press(bot, "carol", "room1", copy_all.id, plan) == []
        await finish(bot)
        assert "done: 3 images ready" in plan.texts[-1], plan.texts
        [job] = await bot.service.store.recent_jobs("test:room1")
        assert job.requester == "test:carol"
        assert [str(i.source) for i in job.items] == [
            f"{lab.source}/library/hello:1.0",
            f"{lab.source}/library/multi:1.0",
            f"{lab.source}/library/app:1.0.0",
        ]


async def test_an_admins_copy_all_on_a_bulk_plan_asks_no_image_again(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    """The plan listed every size and the admin agreed to them all: no image of the job
    waits for a "Copy N GB", though each is over MIRROR_CONFIRM_BYTES; the agreement is
    stored with the job, so a restart does not ask either."""
    settings = settings_for(
        tmp_path, lab.target, lab.source, mirror_max_images=2, mirror_confirm_bytes=1000
    )
    images = [f"{lab.source}/library/{name}" for name in ("hello:1.0", "multi:1.0", "app:1.0.0")]
    async with running_bot(settings, asks=True) as bot:
        plan = await say(bot, "alice", "room1", "/mirror " + "\n".join(images))
        [copy_all] = plan.messages[0].views[-1].actions
        assert await press(bot, "carol", "room1", copy_all.id, plan) == []
        await until(lambda: any(w in plan.texts[-1] for w in ("awaiting", "done:")))
        assert "done: 3 images ready" in plan.texts[-1], plan.texts
        views = [view for message in plan.messages for view in message.views]
        assert not any("awaiting" in to_plain_text(view) for view in views)
        [job] = await bot.service.store.recent_jobs("test:room1")
        assert job.confirmed and all(item.status.ok for item in job.items)

        # A plain /mirror by the same admin (to a new name: nothing held yet) is asked about.
        thread = await say(bot, "carol", "room1", f"/mirror {images[0]}$hello-again")
        await until(lambda: "awaiting confirmation" in thread.messages[0].text)
        asked = await bot.service.store.get_job(job_id_of(thread))
        assert asked is not None and not asked.confirmed
        await say(bot, "carol", "room1", f"/cancel {asked.id}")
        await finish(bot)


async def test_tags_and_inspect_answers_carry_buttons_that_mirror_what_they_show(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, lab.target, lab.source)
    async with running_bot(settings) as bot:
        listed = await say(bot, "alice", "room1", f"/tags {lab.source}/library/app 1.1")
        buttons = listed.messages[0].views[-1].actions
        assert len(buttons) == 6 <= actions.TAG_BUTTONS
        assert {b.label for b in buttons} == {f"Mirror 1.1.{p}" for p in range(6)}
        pressed = next(b for b in buttons if b.label == "Mirror 1.1.3")
        assert pressed.command == f"/mirror {lab.source}/library/app:1.1.3"
        assert await press(bot, "bob", "room1", pressed.id, listed) == [
            actions.not_yours("test:alice")
        ]
        assert await press(bot, "alice", "room1", pressed.id, listed) == []
        await finish(bot)
        assert "done: 1 image ready" in listed.texts[-1]
        assert "app:1.1.3" in listed.texts[-1]

        seen = await say(bot, "alice", "room1", f"/inspect {lab.source}/library/multi:1.0")
        [mirror_it] = seen.messages[0].views[-1].actions  # one platform: no "All platforms"
        assert (mirror_it.label, mirror_it.command) == (
            "Mirror this image",
            f"/mirror {lab.source}/library/multi:1.0",
        )
        assert "[Mirror this image] type: /mirror" in seen.texts[0]


async def test_inspecting_a_multi_platform_image_offers_all_platforms_too(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    multi_arch(lab, "team/inspected")
    image = f"{lab.source}/team/inspected:1.0"
    settings = settings_for(tmp_path, lab.target, lab.source)
    async with running_bot(settings) as bot:
        seen = await say(bot, "alice", "room1", f"/inspect {image}")
        buttons = seen.messages[0].views[-1].actions
        assert [(b.label, b.command) for b in buttons] == [
            ("Mirror this image", f"/mirror {image}"),
            ("All platforms (exact copy)", f"/mirror {image} --platform all"),
        ]
        assert await press(bot, "alice", "room1", buttons[1].id, seen) == []
        await finish(bot)
        assert "done: 1 image ready" in seen.texts[-1]
        assert "digest identical to the source" in seen.texts[-1]
