"""The chat commands: one module each, found by name.

Every module of this package whose name does not start with ``_`` is a command: it declares
exactly one :class:`Command` of its own name with :func:`command` (``tags.py`` declares
``/tags``). Adding a command is adding its module (and translating its sentences); ``/help``,
the chat menus, Slack's sub-commands, ``slack-app-manifest.yml``, ``docs/commands.md`` and
``mirror-bot help`` all read :func:`discover`. ``_base.py`` holds what a module needs: the
declaration, the :class:`Context` a handler gets, the grammar and the parsing helpers.

Importing this package imports no command: :func:`discover` does, on first use, so the
modules may import the renderer and the services that import this package.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from bot.commands._base import (
    HELP,
    MIRROR,
    Command,
    Commands,
    Context,
    Invocation,
    NoArguments,
    Services,
    Typed,
    UsageError,
    command,
    echo,
    no_arguments,
    no_options,
    one_image,
)
from mirror.platform import Platform

__all__ = [
    "HELP",
    "MIRROR",
    "Command",
    "Commands",
    "Context",
    "Invocation",
    "NoArguments",
    "Services",
    "Typed",
    "UsageError",
    "command",
    "discover",
    "echo",
    "no_arguments",
    "no_options",
    "one_image",
    "parse_command",
]


@functools.cache
def discover() -> Commands:
    """Every command module of this package, imported once."""
    found: list[Command[Any]] = []
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        declared = [
            value
            for value in vars(module).values()
            if isinstance(value, Command) and value.module == module.__name__
        ]
        if [entry.name for entry in declared] != [module_info.name]:
            raise RuntimeError(
                f"{module.__name__} must declare exactly one command, /{module_info.name}; "
                f"it declares {[entry.name for entry in declared]}"
            )
        found.extend(declared)
    return Commands(found)


def parse_command(
    text: str,
    *,
    default_platform: Platform | None,
    max_images: int,
    bot_username: str | None = None,
    direct: bool = False,
) -> Invocation[Any] | None:
    """One message read by every command's grammar (:meth:`Commands.parse`)."""
    return discover().parse(
        text,
        default_platform=default_platform,
        max_images=max_images,
        bot_username=bot_username,
        direct=direct,
    )
