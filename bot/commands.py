"""The command grammar shared by every adapter (DESIGN.md §1, Chat commands).

Adapters hand over the text as the user typed it (``/mirror@MyBot nginx``, ``mirror nginx``
in a Slack DM); this module is the only place that knows the words and flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.i18n import N_, _, parse_language
from bot.paste import (
    Ambiguous,
    PastedFiles,
    Reading,
    looks_like_yaml,
    read_pasted,
    references,
)
from mirror.errors import MirrorError
from mirror.models import is_tag_filter
from mirror.naming import ImageSpec
from mirror.platform import Platform, parse_platform
from mirror.reference import ImageRef, parse_reference
from mirror.text import Text

USAGE = N_(
    "/mirror IMAGE [IMAGE ...] [--platform os/arch|all] · /tags IMAGE [FILTER] · "
    "/inspect IMAGE · /status [JOB] · /history · /cancel JOB · /confirm JOB [N] · "
    "/watch IMAGE[:TAG|FILTER] · /watches · /unwatch ID · /mirror lang en|zh · /help"
)


def usage_line() -> str:
    """:data:`USAGE` in the asker's language (the commands themselves stay as typed)."""
    return _(USAGE)


class UsageError(MirrorError):
    """The command is malformed; the sentence says how, and the reply adds the usage line."""


@dataclass(frozen=True)
class MirrorCommand:
    images: tuple[ImageSpec, ...]
    platform: Platform | None
    """The platform to copy; None means every platform (``--platform all``)."""
    platform_explicit: bool = False
    """Whether ``--platform`` was given (else ``platform`` is the configured default)."""
    readings: tuple[Reading, ...] = ()
    """How each image was read, in the order of ``images`` (empty: all typed as is)."""
    pasted: PastedFiles | None = None
    """Bulk text (manifests, compose, kubeadm output) the images came from: the answer
    adds a rewrite pointing it at the mirror."""
    confirmed: bool = False
    """``--confirm``: an admin copies more than MIRROR_MAX_IMAGES (up to
    :data:`MAX_CONFIRMED`) at once."""


@dataclass(frozen=True)
class PlanCommand:
    """A ``/mirror`` of more images than MIRROR_MAX_IMAGES: answered with the plan (count,
    sizes) and a button only an admin's press acts on."""

    mirror: MirrorCommand
    limit: int


@dataclass(frozen=True)
class StatusCommand:
    job_id: str | None = None


@dataclass(frozen=True)
class HistoryCommand:
    pass


@dataclass(frozen=True)
class CancelCommand:
    job_id: str


@dataclass(frozen=True)
class ConfirmCommand:
    """Copy what a job asked about (an image over MIRROR_CONFIRM_BYTES): one, or all."""

    job_id: str
    item: int | None = None
    """0-based index of the image, or None for every image of the job that waits."""


@dataclass(frozen=True)
class HelpCommand:
    pass


@dataclass(frozen=True)
class TagsCommand:
    image: ImageRef
    """The repository (its tag, if typed, became the filter)."""
    pattern: str | None = None
    """A version prefix, substring, glob or range (:func:`mirror.tags.filter_tags`)."""
    corrected_from: str | None = None


@dataclass(frozen=True)
class InspectCommand:
    image: ImageRef
    corrected_from: str | None = None


@dataclass(frozen=True)
class WatchCommand:
    image: ImageRef
    """The repository, without tag."""
    pattern: str
    """One tag (``latest``) or a tag filter (``1.27.*``, ``~1.27``)."""
    platform: Platform | None


@dataclass(frozen=True)
class WatchesCommand:
    pass


@dataclass(frozen=True)
class LanguageCommand:
    """``/mirror lang en|zh|auto`` (Telegram also ``/lang``): the asker's language, stored."""

    language: str | None
    """One of :data:`bot.i18n.LANGUAGES`, or None to follow the client again (``auto``)."""


@dataclass(frozen=True)
class UnwatchCommand:
    watch_id: str


Command = (
    MirrorCommand
    | PlanCommand
    | StatusCommand
    | HistoryCommand
    | CancelCommand
    | ConfirmCommand
    | HelpCommand
    | TagsCommand
    | InspectCommand
    | WatchCommand
    | WatchesCommand
    | UnwatchCommand
    | LanguageCommand
)

MAX_CONFIRMED = 100
"""Images one command may copy even when an admin confirms (MIRROR_MAX_IMAGES' own ceiling)."""

_MAX_TEXT = 8000
_MAX_PASTE = 256_000
"""A pasted manifest or ``helm template`` output is longer than any typed command."""
_COMMAND_WORDS = ("status", "history", "cancel", "help", "tags", "inspect")
_SUBCOMMANDS = ("watch", "watches", "unwatch", "confirm")
"""Words after ``/mirror`` that are commands (Slack has one slash command)."""


def _echo(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"


def parse_command(
    text: str,
    *,
    default_platform: Platform | None,
    max_images: int,
    bot_username: str | None = None,
) -> Command | None:
    """Parse one message; None when it is addressed to another bot (``/cmd@OtherBot``)."""
    if len(text) > (_MAX_PASTE if looks_like_yaml(text) else _MAX_TEXT):
        raise UsageError(Text("That message is too long ({count} characters).", count=len(text)))
    words = text.split()
    if not words:
        return HelpCommand()
    head, args = words[0], words[1:]
    rest = text.lstrip()[len(head) :]
    name = head.removeprefix("/")
    if "@" in name:
        name, _, addressee = name.partition("@")
        if bot_username and addressee.lower() != bot_username.lower():
            return None
    name = name.lower()
    if name == "mirror" and args and args[0].lower() in _SUBCOMMANDS:
        name, args = args[0].lower(), args[1:]  # `/mirror watch IMAGE`, where `/watch` is not
    if name == "mirror" and args and args[0].lower() in ("lang", "language"):
        name, args = "lang", args[1:]  # `/mirror lang zh`, where `/lang` is not
    if name == "lang":
        return _language(args)
    if name == "watch":
        return _watch(args, default_platform)
    if name == "watches":
        _no_options(args)
        if args:
            raise UsageError(Text("`/watches` takes no arguments."))
        return WatchesCommand()
    if name == "unwatch":
        _no_options(args)
        if len(args) != 1:
            raise UsageError(Text("`/unwatch` needs exactly one watch id, e.g. `/unwatch w4k2pq`."))
        return UnwatchCommand(args[0])
    if name == "mirror":
        return _mirror(rest, default_platform=default_platform, max_images=max_images)
    if name in ("help", "start"):
        return HelpCommand()
    if name == "status":
        _no_options(args)
        if len(args) > 1:
            raise UsageError(Text("`/status` takes at most one job id."))
        return StatusCommand(args[0] if args else None)
    if name == "history":
        _no_options(args)
        if args:
            raise UsageError(Text("`/history` takes no arguments."))
        return HistoryCommand()
    if name == "cancel":
        _no_options(args)
        if len(args) != 1:
            raise UsageError(Text("`/cancel` needs exactly one job id, e.g. `/cancel k3x9qa`."))
        return CancelCommand(args[0])
    if name == "confirm":
        _no_options(args)
        if not 1 <= len(args) <= 2 or (len(args) == 2 and not args[1].isdigit()):
            raise UsageError(
                Text(
                    "`/confirm` needs a job id and optionally an image number, "
                    "e.g. `/confirm k3x9qa`."
                )
            )
        number = int(args[1]) if len(args) == 2 else None
        if number == 0:
            raise UsageError(Text("Images of a job are numbered from 1."))
        return ConfirmCommand(args[0], None if number is None else number - 1)
    if name == "tags":
        _no_options(args)
        if not 1 <= len(args) <= 2:
            raise UsageError(
                Text("`/tags` needs an image and at most one filter, e.g. `/tags nginx 1.25`.")
            )
        ref, typed, tag = _one_image(args[0])
        return TagsCommand(ref, args[1] if len(args) > 1 else tag, typed)
    if name == "inspect":
        _no_options(args)
        if len(args) != 1:
            raise UsageError(
                Text("`/inspect` needs exactly one image, e.g. `/inspect nginx:1.25`.")
            )
        ref, typed, _ = _one_image(args[0])
        return InspectCommand(ref, typed)
    raise UsageError(Text("`{command}` is not a command I know.", command=_echo(head)))


def _no_options(args: list[str]) -> None:
    for arg in args:
        if arg.startswith("-"):
            raise UsageError(
                Text("`{option}` is not an option of this command.", option=_echo(arg))
            )


def _one_image(word: str) -> tuple[ImageRef, str | None, str | None]:
    """One image as /mirror reads it (an address or a name), how it was read, and the tag
    when one was written (``nginx`` alone means no tag, not ``latest``)."""
    found = references(read_pasted(word))
    if len(found) != 1 or found[0][0].name is not None:
        raise UsageError(Text("`{text}` is not one image reference.", text=_echo(word)))
    spec, reading = found[0]
    written = ":" in word.rsplit("/", 1)[-1] and reading.typed is None
    tag = spec.source.tag if written and spec.source.digest is None else None
    return spec.source, reading.typed, tag


def _watch(args: list[str], default_platform: Platform | None) -> WatchCommand:
    """``/watch IMAGE[:TAG|FILTER] [--platform os/arch|all]``."""
    platform, words = default_platform, []
    rest = iter(args)
    for arg in rest:
        if arg.startswith("--platform"):
            value = arg.partition("=")[2] or next(rest, "")
            if not value:
                raise UsageError(Text("`--platform` needs a value such as linux/arm64 or all."))
            platform = parse_platform(value)
        elif arg.startswith("-"):
            raise UsageError(
                Text(
                    "`{option}` is not an option of /watch; only --platform is.", option=_echo(arg)
                )
            )
        else:
            words.append(arg)
    if len(words) != 1:
        raise UsageError(
            Text("Name one image to watch, e.g. `/watch nginx:1.27` or `/watch nginx:~1.27`.")
        )
    text = words[0]
    if "$" in text:
        raise UsageError(Text("A watch keeps the image's own name; leave out `$NAME`."))
    name, colon, suffix = text.rpartition(":")
    if colon and "/" not in suffix and is_tag_filter(suffix):
        return WatchCommand(parse_reference(name).repo_only, suffix, platform)
    ref = parse_reference(text)
    if ref.digest is not None:
        raise UsageError(Text("A digest never moves; watch a tag, e.g. `/watch nginx:1.27`."))
    return WatchCommand(ref.repo_only, ref.tag or "latest", platform)


def _mirror(
    text: str, *, default_platform: Platform | None, max_images: int
) -> MirrorCommand | PlanCommand:
    """Images from whatever was pasted after ``/mirror`` (bot/paste.py), and its options."""
    _command_word(text)
    pasted = read_pasted(text, value_options=frozenset({"--platform"}))
    platform: Platform | None = default_platform
    explicit = confirmed = False
    for name, value in pasted.options:
        if name == "--confirm":
            confirmed = True
            continue
        if name != "--platform":
            raise UsageError(
                Text(
                    "`{option}` is not an option of /mirror; only --platform (and an "
                    "admin's --confirm) are.",
                    option=_echo(name),
                )
            )
        if not value:
            raise UsageError(Text("`--platform` needs a value such as linux/arm64 or all."))
        platform = parse_platform(value)
        explicit = True
    found = references(pasted)
    readings = tuple(reading for _, reading in found)
    if len(readings) > max(max_images, MAX_CONFIRMED):
        raise UsageError(
            Text(
                "You asked for {count} images; the limit is {limit} per command, "
                "and {most} even when an admin confirms.",
                count=len(readings),
                limit=max_images,
                most=MAX_CONFIRMED,
            )
        )
    if not readings:
        if pasted.source:
            raise UsageError(Text("I found no images in that {source}.", source=pasted.source))
        raise UsageError(Text("Name at least one image, e.g. `/mirror nginx:1.25`."))
    for reading in readings:
        if reading.platform is not None:
            parse_platform(reading.platform)  # a bad platform in a pull line is refused now
    images = tuple(spec for spec, _ in found)
    files = None
    if pasted.source:
        yaml_text = None
        if looks_like_yaml(text):
            first, _, rest = text.partition("\n")
            yaml_text = rest if first.lstrip().startswith("--") or not first.strip() else text
        files = PastedFiles(pasted.source, yaml_text)
    command = MirrorCommand(images, platform, explicit, readings, files, confirmed)
    if len(readings) > max_images and not confirmed:
        return PlanCommand(command, max_images)
    return command


def _command_word(text: str) -> None:
    """``/mirror status`` is the command as some chats spell it, or the image ``status``: ask."""
    words = text.split()
    if words and words[0].lower() in _COMMAND_WORDS:
        word = words[0].lower()
        rest = " ".join(words[1:])
        command = f"/{word} {rest}".strip()
        images = f"library/{word} {rest}".strip()
        raise Ambiguous(
            Text(
                "Did you mean the command `{command}`, or to mirror the image "
                "`{word}` (send `/mirror {images}` for that)?",
                command=_echo(command),
                word=word,
                images=_echo(images),
            )
        )


def _language(args: list[str]) -> LanguageCommand:
    """``/mirror lang en|zh|auto``."""
    _no_options(args)
    if len(args) != 1:
        raise UsageError(Text("Choose a language: `/mirror lang en` or `/mirror lang zh`."))
    if args[0].lower() == "auto":
        return LanguageCommand(None)
    try:
        return LanguageCommand(parse_language(args[0]))
    except ValueError:
        raise UsageError(
            Text(
                "I speak English (`/mirror lang en`) and Simplified Chinese "
                "(`/mirror lang zh`), not `{language}`.",
                language=_echo(args[0]),
            )
        ) from None
