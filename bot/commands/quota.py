"""``/quota``: how much of MIRROR_QUOTA the asker used in each window, and when it renews."""

from __future__ import annotations

from bot import render
from bot.commands._base import Context, NoArguments, command, no_arguments
from bot.i18n import N_, _
from bot.view import MessageView, Row, Tone
from mirror.quota import renewal


@command(
    "quota",
    usage="/quota",
    summary=N_("What your quota allows, what you used, and when it renews"),
    parse=no_arguments,
    aliases=("/mirror quota",),
    order=75,
)
async def quota(ctx: Context, args: NoArguments) -> MessageView:
    service = ctx.services.service
    rules = ctx.services.settings.mirror_quota
    if rules is None:
        return render.info(_("This bot sets no quota (MIRROR_QUOTA)."))
    if service.budget.quota_of(ctx.requester) is None:
        return render.info(
            _("Admins have no quota; everyone else has {quota}.").format(quota=str(rules))
        )
    now = service.clock()
    used = await service.used(ctx.requester, rules, now)
    rows = []
    for rule in rules.rules:
        spent = used[rule.window].of(rule.measure)
        left = max(0, rule.limit - spent)
        rows.append(
            Row(
                str(rule),
                _("{used} used, {left} left").format(
                    used=rule.amount(spent), left=rule.amount(left)
                ),
                Tone.SUCCESS if left else Tone.FAILURE,
                _("renews at {when}").format(when=renewal(rule.window.renews(now))),
            )
        )
    note = _(
        "Only copies that moved bytes count: an image already mirrored costs nothing, and "
        "one that failed is given back. Windows are calendar days and weeks (from Monday) "
        "in UTC."
    )
    title = _("Your quota ({person})").format(person=ctx.requester)
    return MessageView(title, Tone.INFO, tuple(rows), (note,))
