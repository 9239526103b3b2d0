"""One view in several languages, for a chat that shows each reader their own (the port's
``Multilingual``): who gets it, and what ``translated`` builds."""

from __future__ import annotations

from pathlib import Path

from bot.chat import Incoming
from bot.i18n import _, speaking
from bot.languages import Languages
from bot.view import MessageView, Tone, translated
from mirror.store import open_store


class Card:
    """A conversation whose messages carry both languages at once."""

    edit_interval = 0.0
    languages = ("en", "zh_Hans")

    async def post(self, view: MessageView) -> None:
        raise AssertionError(view)


class Plain:
    edit_interval = 0.0

    async def post(self, view: MessageView) -> None:
        raise AssertionError(view)


def cancelled() -> MessageView:
    return MessageView(_("Cancel"), Tone.INFO)


def test_translated_builds_the_view_in_each_language_the_reader_reads() -> None:
    with speaking("en"):
        assert translated(cancelled) == MessageView("Cancel")  # one language: as it was
    with speaking("en", readers=("en", "zh_Hans")):
        view = translated(cancelled)
        nested = speaking("zh_Hans")  # entering speaking without readers speaks one language
        with nested:
            assert translated(cancelled).translations == ()
    assert view.title == "Cancel"
    assert view.translations == (("en", MessageView("Cancel")), ("zh_Hans", MessageView("取消")))


async def test_only_an_unfixed_language_is_written_in_every_language_a_chat_shows(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path / "languages.db")
    try:
        languages = Languages(store)
        asker = Incoming("feishu", "ou_1", "ou_1", "oc_1", "/help")
        choice = await languages.of(asker)
        assert (choice.language, choice.fixed) == ("en", False)
        assert choice.readers(Card()) == ("en", "zh_Hans")
        assert choice.readers(Plain()) == ()
        tagged = await languages.of(Incoming("x", "u", "u", "c", "/help", language="zh-CN"))
        assert tagged.fixed and tagged.readers(Card()) == ()  # the client said which
        await store.set_language("feishu:ou_1", "zh_Hans")
        chosen = await languages.of(asker)
        assert (chosen.language, chosen.readers(Card())) == ("zh_Hans", ())
        assert (await languages.choice_of("feishu:ou_2")).readers(Card()) == ("en", "zh_Hans")
        pinned = Languages(store, default="zh_Hans")
        assert (await pinned.choice_of("feishu:ou_2")).readers(Card()) == ()
    finally:
        await store.close()
