"""The command grammar shared by every adapter (DESIGN.md §1, Chat commands).

Adapters hand over the text as the user typed it (``/mirror@MyBot nginx``, ``mirror nginx``
in a Slack DM); this module is the only place that knows the words and flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirror.errors import MirrorError
from mirror.naming import ImageSpec, parse_image_spec
from mirror.platform import Platform, parse_platform

USAGE = (
    "/mirror IMAGE [IMAGE ...] [--platform os/arch|all] · /status [JOB] · /history · "
    "/cancel JOB · /help"
)


class UsageError(MirrorError):
    """The command is malformed; the sentence says how, and the reply adds the usage line."""


@dataclass(frozen=True)
class MirrorCommand:
    images: tuple[ImageSpec, ...]
    platform: Platform | None
    """The platform to copy; None means every platform (``--platform all``)."""
    platform_explicit: bool = False
    """Whether ``--platform`` was given (else ``platform`` is the configured default)."""


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
class HelpCommand:
    pass


Command = MirrorCommand | StatusCommand | HistoryCommand | CancelCommand | HelpCommand

_MAX_TEXT = 8000


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
    if len(text) > _MAX_TEXT:
        raise UsageError(f"That message is too long ({len(text)} characters).")
    words = text.split()
    if not words:
        return HelpCommand()
    head, args = words[0], words[1:]
    name = head.removeprefix("/")
    if "@" in name:
        name, _, addressee = name.partition("@")
        if bot_username and addressee.lower() != bot_username.lower():
            return None
    name = name.lower()
    if name == "mirror":
        return _mirror(args, default_platform=default_platform, max_images=max_images)
    if name in ("help", "start"):
        return HelpCommand()
    if name == "status":
        _no_options(args)
        if len(args) > 1:
            raise UsageError("`/status` takes at most one job id.")
        return StatusCommand(args[0] if args else None)
    if name == "history":
        _no_options(args)
        if args:
            raise UsageError("`/history` takes no arguments.")
        return HistoryCommand()
    if name == "cancel":
        _no_options(args)
        if len(args) != 1:
            raise UsageError("`/cancel` needs exactly one job id, e.g. `/cancel k3x9qa`.")
        return CancelCommand(args[0])
    raise UsageError(f"`{_echo(head)}` is not a command I know.")


def _no_options(args: list[str]) -> None:
    for arg in args:
        if arg.startswith("-"):
            raise UsageError(f"`{_echo(arg)}` is not an option of this command.")


def _mirror(
    args: list[str], *, default_platform: Platform | None, max_images: int
) -> MirrorCommand:
    platform: Platform | None = default_platform
    explicit = False
    images: list[ImageSpec] = []
    seen: set[str] = set()
    raw_count = 0
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--platform" or arg.startswith("--platform="):
            if "=" in arg:
                value = arg.partition("=")[2]
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise UsageError("`--platform` needs a value such as linux/arm64 or all.")
            platform = parse_platform(value)
            explicit = True
        elif arg.startswith("-"):
            raise UsageError(f"`{_echo(arg)}` is not an option of /mirror; only --platform is.")
        else:
            raw_count += 1
            if raw_count > max_images:
                count = raw_count + sum(1 for a in args[i + 1 :] if not a.startswith("-"))
                raise UsageError(
                    f"You asked for {count} images; the limit is {max_images} per command."
                )
            if arg not in seen:
                seen.add(arg)
                images.append(parse_image_spec(arg))
        i += 1
    if not images:
        raise UsageError("Name at least one image, e.g. `/mirror nginx:1.25`.")
    return MirrorCommand(tuple(images), platform, explicit)
