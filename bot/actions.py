"""Which buttons a job's messages carry, and what each one means.

A button is a request its owner could have typed: Cancel is ``/cancel JOB``, Retry is
``/mirror SPEC --platform P``, All platforms is ``/mirror SPEC --platform all``. Its meaning
is stored (:class:`~mirror.models.StoredAction`) before the message carrying it is sent,
under an id derived from the job, so re-rendering a view on every progress edit gives the
same ids and stores nothing new. Pressing runs the
stored command through the same path as typed text (:meth:`bot.app.MirrorBot.handle`), so
the policy, the rate limit and the allowlist apply unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.i18n import N_, _
from bot.view import Action, Style, human_bytes
from mirror.models import Item, ItemStatus, Job, StoredAction, platform_text
from mirror.reference import ImageRef, parse_reference

MAX_AGE_SECONDS = 30 * 24 * 3600.0
"""A button older than this is answered as expired: its job's context is long gone."""

EXPIRED = N_("This button has expired; type the command instead.")
TAG_BUTTONS = 8
"""Tags of a ``/tags`` answer that get a "Mirror TAG" button: the newest, which are the ones
people copy; a Telegram keyboard of one row each stays shorter than the list above it, and
Slack's 25 elements per block are far off."""

UNKNOWN = N_("I do not know this button (it may belong to another bot); type the command instead.")
USED = N_("This button was already pressed; nothing more to do.")


ADMINS = "admins"
"""The owner of a button only an admin's press acts on (a bulk plan's "Copy all"): no
requester is ever called that."""
ANYWHERE = "*"
"""The chat of a button that acts wherever it is pressed (an approval, asked in an admin chat
or in each admin's private chat): no chat is ever called that."""


def not_yours(owner: str) -> str:
    if owner == ADMINS:
        return _("Only an admin may press this button; nothing was done.")
    return _(
        "Only the requester ({owner}) or an admin may press this button; nothing was done."
    ).format(owner=owner)


def cancel(job: Job, *, shared: bool = False) -> Action:
    """Cancel; ``Cancel JOB`` in a live message several jobs share (the same stored id)."""
    label = _("Cancel {job}").format(job=job.id) if shared else _("Cancel")
    return Action(f"{job.id}.cancel", label, f"/cancel {job.id}", Style.DANGER)


def retry(job: Job, idx: int, item: Item) -> Action:
    command = f"/mirror {item.spec} --platform {platform_text(item.platform)}"
    label = (
        _("Retry") if len(job.items) == 1 else _("Retry {image}").format(image=item.source.familiar)
    )
    return Action(f"{job.id}.retry.{idx}", label, command, Style.PRIMARY)


def suggestion(job: Job, idx: int, n: int, item: Item, reference: str) -> Action:
    """ "Mirror 1.2.4" for the nearest real thing to a miss, on the platform that was asked."""
    ref = parse_reference(reference)
    shown = ref.tag if ref.name == item.source.name and ref.tag else ref.familiar
    command = f"/mirror {ref.familiar} --platform {platform_text(item.platform)}"
    label = _("Mirror {image}").format(image=shown)
    return Action(f"{job.id}.s.{idx}.{n}", label, command, Style.PRIMARY)


def all_platforms(job: Job, idx: int, item: Item) -> Action:
    command = f"/mirror {item.spec} --platform all"
    label = _("All platforms (exact copy)")
    if len(job.items) > 1:
        label = _("{image}: all platforms (exact copy)").format(image=item.source.familiar)
    return Action(f"{job.id}.all.{idx}", label, command, Style.DEFAULT)


COPY_BUTTONS = 5
"""Waiting images of one job that get a "Copy" button each; more get one "Copy all N waiting"
(Slack shows 25 buttons a message, and Cancel must stay among them)."""


def confirm(job: Job, idx: int, item: Item) -> Action:
    """ "Copy 3.2 GB" for an image over MIRROR_CONFIRM_BYTES; the job's Cancel is the no."""
    if len(job.items) > 1:
        size = human_bytes(item.bytes) if item.bytes is not None else "?"
        label = _("Copy {image} ({size})").format(image=item.source.familiar, size=size)
    elif item.bytes is not None:
        label = _("Copy {size}").format(size=human_bytes(item.bytes))
    else:
        label = _("Copy it")
    return Action(f"{job.id}.ok.{idx}", label, f"/confirm {job.id} {idx + 1}", Style.PRIMARY)


def confirm_all(job: Job, waiting: Sequence[Item] = ()) -> Action:
    size = human_bytes(sum(i.bytes for i in waiting if i.bytes is not None))
    label = _("Copy all {count} waiting ({size})").format(count=len(waiting), size=size)
    return Action(f"{job.id}.ok.all", label, f"/confirm {job.id}", Style.PRIMARY)


def confirmations(job: Job) -> tuple[Action, ...]:
    """Every "Copy" the job could ask for, stored with its acknowledgement: the question comes
    from the job service, which stores the item's state but knows no buttons, so the button
    behind it has to be there already when the live message shows it."""
    each = tuple(confirm(job, idx, item) for idx, item in enumerate(job.items))
    return (*each, confirm_all(job)) if len(job.items) > COPY_BUTTONS else each


def mirror_tags(key: str, image: ImageRef, tags: Sequence[str]) -> tuple[Action, ...]:
    """ "Mirror 1.27.3" for the newest tags a ``/tags`` answer lists; ``key`` is fresh per
    answer (nothing else names it)."""
    return tuple(
        Action(
            f"{key}.t.{n}",
            _("Mirror {image}").format(image=tag),
            f"/mirror {image.repo_only.familiar}:{tag}",
        )
        for n, tag in enumerate(tags[:TAG_BUTTONS])
    )


def mirror_inspected(key: str, image: ImageRef, *, every_platform: bool) -> tuple[Action, ...]:
    """ "Mirror this image" under ``/inspect``, and "All platforms (exact copy)" when it has
    several and a plain ``/mirror`` copies one."""
    label = _("Mirror this image")
    found = [Action(f"{key}.i.0", label, f"/mirror {image.familiar}", Style.PRIMARY)]
    if every_platform:
        command = f"/mirror {image.familiar} --platform all"
        found.append(Action(f"{key}.i.all", _("All platforms (exact copy)"), command))
    return tuple(found)


def every_platform(key: str, n: int, image: ImageRef) -> Action:
    """ "nginx: all platforms (exact copy)" under the platforms an image has, after a pull
    error named one it lacked."""
    label = _("{image}: all platforms (exact copy)").format(image=image.familiar)
    return Action(f"{key}.p.{n}", label, f"/mirror {image.familiar} --platform all")


def copy_all(key: str, command: str, count: int, size: str) -> Action:
    """A bulk plan's "Copy all 23 images (4.2 GB)": the same list with ``--confirm``."""
    label = _("Copy all {count} images ({size})").format(count=count, size=size)
    return Action(f"{key}.all", label, command, Style.PRIMARY)


def while_running(job: Job, *, shared: bool = False) -> tuple[Action, ...]:
    """The live message: "Copy N GB" per image awaiting its requester's answer, and Cancel,
    until the job ends; then nothing (the buttons go away). ``shared``: the message shows
    other jobs too, so Cancel names this one."""
    if job.finished:
        return ()
    waiting = [(i, item) for i, item in enumerate(job.items) if item.status is ItemStatus.AWAITING]
    stop = cancel(job, shared=shared)
    if len(waiting) > COPY_BUTTONS:
        return confirm_all(job, [item for _, item in waiting]), stop
    return (*(confirm(job, idx, item) for idx, item in waiting), stop)


def _one_platform_copy(item: Item) -> bool:
    """A copy of one platform whose digest differs from the source's: the answer already says
    an exact copy needs ``--platform all``, so the button offers just that."""
    return (
        item.status.ok
        and item.platform is not None
        and item.artifact is None
        and not item.digest_identical
    )


def when_finished(job: Job) -> tuple[Action, ...]:
    """The answer: per failed image its suggestions ("Mirror 1.2.4", best first), or a Retry
    when it has none (a miss is not fixed by asking again; a cancelled image was a choice),
    and "All platforms" per one-platform copy that is not exact."""
    found: list[Action] = []
    for idx, item in enumerate(job.items):
        if item.status is ItemStatus.FAILED and item.suggestions:
            found.extend(
                suggestion(job, idx, n, item, ref) for n, ref in enumerate(item.suggestions)
            )
        elif item.status is ItemStatus.FAILED:
            found.append(retry(job, idx, item))
        elif _one_platform_copy(item):
            found.append(all_platforms(job, idx, item))
    return tuple(found)


def stored(job: Job, actions: Iterable[Action]) -> list[StoredAction]:
    """What to write before sending: the buttons belong to the job's requester, in its chat."""
    return owned(job.requester, job.chat, actions)


def owned(owner: str, chat: str, actions: Iterable[Action]) -> list[StoredAction]:
    """Buttons of an answer that is not a job's (``/tags``, ``/inspect``): its asker's."""
    return [StoredAction(a.id, owner, chat, a.command) for a in actions]
