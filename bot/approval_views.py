"""What approvals say, as neutral :class:`MessageView` s: the question to the admins, the notes
to requesters, the answer to an admin, and ``/sources``.

Kept beside :mod:`bot.render` (which shows held, denied and refused images in a job's own
messages) rather than in it: these messages belong to the approval flow alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot.i18n import _, localize, ngettext
from bot.view import Action, MessageView, Row, Style, Tone
from mirror.models import ApprovedSource, Job, Watch, platform_text
from mirror.reference import quote
from mirror.units import utc_clock


def buttons(request: str) -> tuple[Action, ...]:
    """Approve, Approve this repository always, Deny: the typed commands an admin's press
    runs (the buttons act in any chat an admin presses them in)."""
    return (
        Action(f"{request}.approve", _("Approve"), f"/approve {request} all", Style.PRIMARY),
        Action(
            f"{request}.always",
            _("Approve this repository always"),
            f"/approve {request} all always",
        ),
        Action(f"{request}.deny", _("Deny"), f"/deny {request}", Style.DANGER),
    )


def _who(requester: str, name: str | None) -> str:
    return f"{name} ({requester})" if name and name not in requester else requester


def job_request(job: Job, held: Sequence[int], name: str | None) -> MessageView:
    """The question: who asks, from which chat, for which images (numbered as in the job)."""
    rows = tuple(
        Row(
            f"{idx + 1}. {job.items[idx].source.familiar}",
            f"{job.items[idx].target.name}:{job.items[idx].target.tag}",
            Tone.INFO,
            platform_text(job.items[idx].platform),
        )
        for idx in held
    )
    how = _(
        "Answer with the buttons, or type `/approve {job} [N|all] [always]` or "
        "`/deny {job} [reason]`; `mirror-bot approve {job}` works too."
    ).format(job=job.id)
    return MessageView(
        _("Approval needed: job {job}").format(job=job.id),
        Tone.INFO,
        rows,
        (
            _("{who} asks in {chat} to mirror:").format(
                who=_who(job.requester, name), chat=job.chat
            ),
            how,
        ),
        actions=buttons(job.id),
    )


def watch_request(watch: Watch, name: str | None) -> MessageView:
    how = _(
        "Answer with the buttons, or type `/approve {watch} [always]` or `/deny {watch} [reason]`."
    ).format(watch=watch.id)
    return MessageView(
        _("Approval needed: watch {watch}").format(watch=watch.id),
        Tone.INFO,
        lines=(
            _("{who} asks in {chat} to watch {image} and mirror it whenever it moves.").format(
                who=_who(watch.requester, name), chat=watch.chat, image=quote(watch.shown)
            ),
            how,
        ),
        actions=buttons(watch.id),
    )


def approved(job: Job, indexes: Sequence[int], admin: str) -> MessageView:
    """The requester's note: their held images go on."""
    if len(indexes) == len(job.items) and len(indexes) > 1:
        what = _("every image")
    else:
        what = ", ".join(quote(job.items[i].source.familiar) for i in indexes)
    return MessageView(
        _("Job {job}: an admin ({admin}) approved {what}; copying now.").format(
            job=job.id, admin=admin, what=what
        ),
        Tone.INFO,
    )


def watch_held() -> str:
    """The line a held watch's announcement carries."""
    return _("An admin must approve this source first; nothing is checked until then.")


def watch_approved(watch: Watch, admin: str) -> MessageView:
    return MessageView(
        _("Watch {watch}: an admin ({admin}) approved it; mirroring {image} now.").format(
            watch=watch.id, admin=admin, image=quote(watch.shown)
        ),
        Tone.INFO,
    )


def watch_ended(watch: Watch, reason: str) -> MessageView:
    return MessageView(
        _("Watch {watch} of {image} is stopped: {reason}").format(
            watch=watch.id, image=quote(watch.shown), reason=localize(reason)
        ),
        Tone.FAILURE,
    )


def decided(
    request: str,
    kind: str,
    approve: bool,
    count: int,
    others: int,
    always: Sequence[str],
    refused: Sequence[str],
) -> MessageView:
    """The admin's answer: what their decision did."""
    if kind == "watch":
        title = (_("Watch {watch} approved.") if approve else _("Watch {watch} denied.")).format(
            watch=request
        )
    elif approve:
        title = ngettext(
            "Approved {count} image of job {job}.", "Approved {count} images of job {job}.", count
        ).format(count=count, job=request)
    else:
        title = ngettext(
            "Denied {count} image of job {job}.", "Denied {count} images of job {job}.", count
        ).format(count=count, job=request)
    lines: list[str] = []
    if others:
        lines.append(
            ngettext(
                "The same answer went to {count} identical request.",
                "The same answer went to {count} identical requests.",
                others,
            ).format(count=others)
        )
    if always:
        lines.append(
            _("Approved for good (see /sources): {repositories}.").format(
                repositories=", ".join(quote(r) for r in always)
            )
        )
    for repository in refused:
        lines.append(
            _("{repository} is internal and not named by the operator: never approvable.").format(
                repository=quote(repository)
            )
        )
    return MessageView(title, Tone.SUCCESS if approve else Tone.INFO, lines=tuple(lines))


def sources(
    configured: Sequence[str], approved_sources: Sequence[ApprovedSource], approval: str
) -> MessageView:
    """``/sources``: the registries the operator allowed, and the repositories admins approved."""
    allowed = ", ".join(configured) or _("none")
    lines = [_("Allowed registries (MIRROR_ALLOWED_SOURCES): {allowed}").format(allowed=allowed)]
    if approval == "off":
        lines.append(_("Other sources are refused (MIRROR_APPROVAL is off)."))
    elif approval == "all":
        lines.append(_("Every request waits for an admin's approval, but those listed below."))
    else:
        lines.append(_("Other sources wait for an admin's approval."))
    rows = tuple(
        Row(
            source.repository,
            _("approved by {admin}").format(admin=source.added_by),
            Tone.SUCCESS,
            utc_clock(datetime.fromtimestamp(source.added, UTC)),
        )
        for source in approved_sources
    )
    if not rows:
        lines.append(_("No repository was approved for good yet."))
    return MessageView(_("Sources"), Tone.INFO, rows, tuple(lines))
