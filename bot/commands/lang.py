"""``/lang en|zh|auto`` (also ``/mirror lang``, ``/mirror language``): the asker's language,
stored for every later answer; ``auto`` follows their client's again."""

from __future__ import annotations

from dataclasses import dataclass

from bot import render
from bot.commands._base import Context, Typed, UsageError, command, echo, no_options
from bot.i18n import ENGLISH, N_, _, parse_language, speaking
from bot.view import MessageView
from mirror.text import Text


@dataclass(frozen=True)
class LangArgs:
    language: str | None
    """One of :data:`bot.i18n.LANGUAGES`, or None to follow the client again (``auto``)."""


def _parse(typed: Typed) -> LangArgs:
    no_options(typed.args)
    if len(typed.args) != 1:
        raise UsageError(Text("Choose a language: `/mirror lang en` or `/mirror lang zh`."))
    word = typed.args[0]
    if word.lower() == "auto":
        return LangArgs(None)
    try:
        return LangArgs(parse_language(word))
    except ValueError:
        raise UsageError(
            Text(
                "I speak English (`/mirror lang en`) and Simplified Chinese "
                "(`/mirror lang zh`), not `{language}`.",
                language=echo(word),
            )
        ) from None


@command(
    "lang",
    usage="/lang en|zh|auto",
    summary=N_("Answer me in English or Chinese"),
    parse=_parse,
    aliases=("/mirror lang", "/mirror language"),
    order=110,
)
async def lang(ctx: Context, args: LangArgs) -> MessageView:
    """Store the sender's language (None: back to their client's) and confirm in it."""
    await ctx.store.set_language(ctx.requester, args.language)
    choice = await ctx.services.languages.of(ctx.incoming)
    with speaking(choice.language):
        if args.language is None:
            return render.info(_("I will answer you in your client's language again."))
        if args.language == ENGLISH:
            return render.info(_("I will answer you in English."))
        return render.info(_("I will answer you in Simplified Chinese."))
