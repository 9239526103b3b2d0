"""The message catalog (bot/locale) and the choice of language, without chat or lab.

The catalog is checked against the source (a fresh extraction), every Chinese entry against
its English one (translated, not fuzzy, the same placeholders), and the runtime against the
two ways it could go wrong for a user: a key instead of a sentence, or a template unfilled.
"""

from __future__ import annotations

import asyncio
import json
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

from bot import render
from bot.chat import ConfigurationError
from bot.commands import UsageError, discover, parse_command
from bot.commands.lang import LangArgs
from bot.i18n import (
    CHINESE,
    ENGLISH,
    LOCALE_DIR,
    _,
    console_tag,
    current,
    from_tag,
    localize,
    ngettext,
    speaking,
)
from bot.pacing import Pacer, Priority
from bot.settings import load_settings
from bot.view import Action, MessageView, to_plain_text
from mirror.errors import MirrorError, too_large
from mirror.reference import parse_reference
from mirror.text import Text, text_of
from tests.support.recording_chat import RecordingChat

ROOT = Path(__file__).resolve().parent.parent
POT = LOCALE_DIR / "messages.pot"


def catalog(language: str) -> Catalog:
    with (LOCALE_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=language)


def entries(found: Catalog) -> list[Message]:
    return [m for m in found if m.id]


def msgids(found: Catalog) -> set[Any]:
    return {tuple(m.id) if isinstance(m.id, list | tuple) else m.id for m in entries(found)}


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


# -- the catalog ------------------------------------------------------------------------------


def test_the_catalog_is_extracted_from_the_current_source(tmp_path: Path) -> None:
    """A sentence added to the code without `bash scripts/dev.sh i18n` fails here, so it cannot
    reach users untranslated; one removed from the code must leave the catalog too."""
    fresh = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "i18n.py"), "extract", "--output", str(fresh)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with fresh.open("rb") as pot:
        extracted = msgids(read_po(pot))
    assert len(extracted) > 200  # the extraction found the sentences, not an empty file
    with POT.open("rb") as pot:
        assert msgids(read_po(pot)) == extracted
    for language in (ENGLISH, CHINESE):
        assert msgids(catalog(language)) == extracted, language


def test_every_entry_has_a_chinese_translation() -> None:
    missing = [
        m.id
        for m in entries(catalog(CHINESE))
        if m.fuzzy or not m.string or (isinstance(m.string, tuple) and not all(m.string))
    ]
    assert missing == []


def test_each_translation_has_the_placeholders_of_its_english_entry() -> None:
    """Formatted with exactly the parameters the code passes for the English sentence."""
    for message in entries(catalog(CHINESE)):
        english = message.id[-1] if isinstance(message.id, list | tuple) else message.id
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        params = {name: f"<{name}>" for name in fields(english)}
        for form in forms:
            assert fields(form) == set(params), (english, form)
            if params:
                form.format(**params)  # neither a stray brace nor a format spec it cannot take


def test_commands_references_and_digests_stay_as_typed_in_chinese() -> None:
    for message in entries(catalog(CHINESE)):
        english = message.id[-1] if isinstance(message.id, list | tuple) else message.id
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        for code in (part for i, part in enumerate(english.split("`")) if i % 2):
            if not code.isupper():  # `IMAGE$NAME`-like placeholders may be translated
                assert all(f"`{code}`" in form for form in forms), (english, code)


# -- at run time ------------------------------------------------------------------------------


def test_a_sentence_from_mirror_is_rendered_in_the_language_spoken() -> None:
    error = too_large(parse_reference("nginx:1.25"), 300 << 20, 100 << 20)
    sentence = text_of(error)
    assert (
        str(error)
        == sentence
        == (
            "`nginx:1.25` is too large: 300.0 MiB, over the limit of 100.0 MiB "
            "(MIRROR_MAX_IMAGE_BYTES)."
        )
    )
    with speaking(CHINESE):
        chinese = localize(sentence)
    assert (
        chinese
        == "`nginx:1.25` 太大：300.0 MiB，超过了 100.0 MiB 的上限（MIRROR_MAX_IMAGE_BYTES）。"
    )
    with speaking(ENGLISH):
        assert localize(sentence) == sentence


def test_nested_sentences_are_translated_part_by_part() -> None:
    with pytest.raises(MirrorError) as raised:
        parse_command("/mirror Nginx:1.25", default_platform=None, max_images=11)
    with pytest.raises(UsageError) as malformed:
        parse_command("/frobnicate", default_platform=None, max_images=11)
    usage = discover().usage_line()
    with speaking(CHINESE):
        view = render.refusal(raised.value, usage)
        footer = render.refusal(malformed.value, usage).footer
    assert view.title == "`Nginx:1.25` 不是有效的镜像引用：仓库名称必须是小写。"
    assert footer is not None and footer.startswith("用法：/mirror ")


def test_plural_forms_follow_each_language() -> None:
    with speaking(ENGLISH):
        assert [ngettext("{n} image", "{n} images", n).format(n=n) for n in (1, 2)] == [
            "1 image",
            "2 images",
        ]
    with speaking(CHINESE):
        assert [ngettext("{n} image", "{n} images", n).format(n=n) for n in (1, 2)] == [
            "1 个镜像",
            "2 个镜像",
        ]


def test_a_missing_translation_is_english_never_a_key() -> None:
    unknown = Text("Nobody translated {what} yet.", what="`this`")
    with speaking(CHINESE):
        assert localize(unknown) == "Nobody translated `this` yet."
        assert _("Not in the catalog at all.") == "Not in the catalog at all."
        assert localize("Nor this plain string.") == "Nor this plain string."


def test_a_plain_string_read_back_from_the_store_is_still_translated() -> None:
    with speaking(CHINESE):
        assert localize("The job was cancelled.") == "任务已取消。"


def test_english_loads_no_catalog_and_chinese_loads_babel_only_when_spoken() -> None:
    probe = """
import json, sys
from bot import render
from bot.commands import discover
from bot.i18n import speaking
from bot.view import to_plain_text
english = to_plain_text(render.help_text(discover()))
before = "babel" in sys.modules
with speaking("zh_Hans"):
    chinese = to_plain_text(render.help_text(discover()))
after = "babel" in sys.modules
print(json.dumps([before, after, english.splitlines()[0], chinese.splitlines()[0]]))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    before, after, english, chinese = json.loads(done.stdout.strip().splitlines()[-1])
    assert (before, after) == (False, True)
    assert "copies images into a registry" in english
    assert "把镜像复制到" in chinese


async def test_a_chats_pacing_lane_runs_each_call_in_its_submitters_language() -> None:
    """One lane per chat serves every call, and it was started by the first asker: a later
    asker's call (an adapter's own notice is translated while it is sent) must still run in
    the later asker's language."""
    chat, pacer, release = RecordingChat(), Pacer(), asyncio.Event()
    heard: list[str] = []

    async def first() -> None:
        await release.wait()
        heard.append(current())

    async def second() -> None:
        heard.append(current())

    with speaking(ENGLISH):
        a = asyncio.ensure_future(pacer.send(chat, Priority.ACK, first, what="a", adapter="t"))
    await asyncio.sleep(0.01)  # the lane is open, in the first asker's context
    with speaking(CHINESE):
        b = asyncio.ensure_future(pacer.send(chat, Priority.ACK, second, what="b", adapter="t"))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(a, b)
    await pacer.aclose()
    assert heard == [ENGLISH, CHINESE]


# -- which language ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "language", "traditional"),
    [
        ("zh", CHINESE, False),
        ("zh-hans", CHINESE, False),
        ("zh-CN", CHINESE, False),
        ("zh_SG", CHINESE, False),
        ("zh_CN.UTF-8", CHINESE, False),
        ("zh-Hans-CN", CHINESE, False),
        ("zh-TW", ENGLISH, True),
        ("zh-hant", ENGLISH, True),
        ("zh-HK", ENGLISH, True),
        ("en", ENGLISH, False),
        ("en-GB", ENGLISH, False),
        ("en_US.UTF-8", ENGLISH, False),
        ("de", None, False),
        ("C.UTF-8", None, False),
        ("POSIX", None, False),
        (None, None, False),
    ],
)
def test_client_language_tags(tag: str | None, language: str | None, traditional: bool) -> None:
    found = from_tag(tag)
    assert (found.language, found.unsupported_chinese) == (language, traditional)


def test_the_console_reads_the_locale_variables_in_gettext_order() -> None:
    assert console_tag({"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}) == "zh_CN.UTF-8"
    assert console_tag({"LANG": "en_US.UTF-8", "LC_ALL": "zh_CN.UTF-8"}) == "zh_CN.UTF-8"
    assert console_tag({"LANG": "zh_CN.UTF-8", "LC_ALL": ""}) == "zh_CN.UTF-8"
    assert console_tag({}) is None


@pytest.mark.parametrize(
    ("text", "language"),
    [("/mirror lang zh", CHINESE), ("/lang en", ENGLISH), ("/mirror lang auto", None)],
)
def test_the_lang_command(text: str, language: str | None) -> None:
    invocation = parse_command(text, default_platform=None, max_images=11)
    assert invocation is not None
    assert (invocation.command.name, invocation.args) == ("lang", LangArgs(language))


def test_an_unknown_language_is_refused_naming_both() -> None:
    with pytest.raises(UsageError, match="`/mirror lang zh`"):
        parse_command("/mirror lang zh-TW", default_platform=None, max_images=11)


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("auto", "auto"),
        ("en", ENGLISH),
        ("zh_Hans", CHINESE),
        ("zh", CHINESE),
        ("zh-CN", CHINESE),
        ("ZH-hans", CHINESE),
    ],
)
def test_mirror_language_setting(monkeypatch: pytest.MonkeyPatch, value: str, kept: str) -> None:
    monkeypatch.setenv("MIRROR_LANGUAGE", value)
    assert load_settings().mirror_language == kept


def test_a_bad_mirror_language_is_one_sentence_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRROR_LANGUAGE", "klingon")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert str(raised.value) == "MIRROR_LANGUAGE: `klingon` is not auto, en or zh_Hans."


@pytest.mark.parametrize("value", ["zh-TW", "zh_Hant", "fr"])
def test_a_language_the_bot_does_not_speak_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MIRROR_LANGUAGE", value)
    with pytest.raises(ConfigurationError, match=f"`{value}` is not auto, en or zh_Hans"):
        load_settings()


def test_the_console_shows_a_button_as_its_command_with_the_hint_in_the_askers_language() -> None:
    view = MessageView("t", actions=(Action("a1", "取消", "/cancel job1"),))
    with speaking(CHINESE):
        assert to_plain_text(view).splitlines()[-1] == "[取消] 输入：/cancel job1"
    assert to_plain_text(view).splitlines()[-1] == "[取消] type: /cancel job1"
