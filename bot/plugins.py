"""Chat adapters are plugins: each is found through its entry point and brings everything else.

``bot`` never imports an adapter and names no chat platform. Like pytest plugins, an adapter
declares itself in its distribution's metadata under ``hub_mirror_bot.adapters``; the object
the entry point names is an :class:`AdapterPlugin`. It reads the adapter's own settings (its
own environment prefix), says whether the environment asks for it, builds it, checks it for
``mirror-bot check`` and lists its secrets for log redaction. A new platform is one module
and one entry point; ``docs/adapters.md`` shows how.

A platform whose SDK is heavy comes as a pip extra (``hub-mirror-bot[feishu]``): its module
imports the SDK only in ``build``/``check``/``serve`` and its plugin declares the
:class:`Extra`. Whatever its weight, an adapter's module is loaded only when a variable with its
prefix (its entry point's name: ``SLACK_``) is set, so a bot configured for one platform never
imports another's SDK. Configured without the
extra installed, it stops ``run`` and ``check`` with one sentence naming the variable that
asked for it and the ``pip install`` to run.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Generic, Protocol, TypeVar, runtime_checkable

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.chat import ChatAdapter, ConfigurationError
from bot.settings import describe

GROUP = "hub_mirror_bot.adapters"


class AdapterSetup(Protocol):
    """An adapter's settings, read and validated: enough to build, check and redact."""

    def secrets(self) -> Iterable[str]:
        """Every secret value set (tokens, signing secrets), kept out of the logs."""
        ...

    def build(self) -> ChatAdapter:
        """The adapter, not yet serving; raises ConfigurationError if the settings cannot work."""
        ...

    async def check(self) -> str:
        """Reach the chat service once, for ``mirror-bot check``: a short note of who the bot
        is there, or ConfigurationError with one sentence saying what to fix."""
        ...


@runtime_checkable
class AdapterPlugin(Protocol):
    """What an entry point in ``hub_mirror_bot.adapters`` names: one chat platform, whole.

    The entry point's name is the platform's name: the ``platform`` of every
    :class:`bot.chat.Incoming` the adapter makes, and the prefix in ``MIRROR_ALLOWED_USERS``.
    """

    @property
    def fallback(self) -> bool:
        """Run only when no other adapter is configured (the terminal console)."""
        ...

    def configure(self) -> AdapterSetup | None:
        """Read this adapter's settings from the environment (and ``.env``).

        ``None`` when the environment does not ask for the adapter (its token is unset).
        Raises :class:`ConfigurationError`, one sentence naming the variable, when a
        setting is wrong or the SDK it needs is not installed (:meth:`Extra.require`), so
        ``mirror-bot run`` stops at start instead of at first use.
        """
        ...


class AdapterSettings(BaseSettings, ABC):
    """The usual way to be an :class:`AdapterSetup`: settings that build their adapter.

    Subclass it with the adapter's own prefix (``class S(AdapterSettings, env_prefix="X_")``);
    it reads the bot's ``.env`` file too, and finds secrets by type (``SecretStr``).
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    @property
    def configured(self) -> bool:
        """Whether the environment asks for this adapter: by default, any of its variables set."""
        return bool(self.model_fields_set)

    @property
    def asked_by(self) -> str:
        """The variable that asks for this adapter, named in sentences to the operator: by
        default the first one set (override it with ``configured``)."""
        prefix = str(self.model_config.get("env_prefix") or "")
        fields = [name for name in type(self).model_fields if name in self.model_fields_set]
        return (prefix + (fields[0] if fields else "*")).upper()

    def secrets(self) -> list[str]:
        values = (getattr(self, name) for name in type(self).model_fields)
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]

    @abstractmethod
    def build(self) -> ChatAdapter: ...

    async def check(self) -> str:
        return "nothing to reach"


S = TypeVar("S", bound=BaseSettings)
A = TypeVar("A", bound=AdapterSettings)


@dataclass(frozen=True)
class Extra:
    """The pip extra a chat platform's SDK comes in, when it is too heavy for every install.

    ``modules`` are the top-level modules the adapter imports in ``build``, ``check`` and
    ``serve`` (never at the top of its own module); they are looked for, not imported.
    """

    name: str
    """``feishu``: installed with ``pip install 'hub-mirror-bot[feishu]'``."""
    modules: tuple[str, ...]
    distribution: str = "hub-mirror-bot"
    """Whose extra it is: another distribution's, for an adapter installed from elsewhere."""

    @property
    def install(self) -> str:
        return f"pip install '{self.distribution}[{self.name}]'"

    def missing(self) -> list[str]:
        return [module for module in self.modules if not _importable(module)]

    def require(self, asked_by: str) -> None:
        """Raise :class:`ConfigurationError` unless every module is installed: one sentence
        naming ``asked_by``, the variable that asked for the adapter, and what to install."""
        if missing := self.missing():
            raise ConfigurationError(
                f"{asked_by} is set, but the chat SDK it needs ({', '.join(missing)}) is not "
                f"installed: run {self.install}."
            )


def _importable(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing; a module without a spec
        return False


@dataclass(frozen=True)
class SettingsPlugin(Generic[A]):
    """The usual entry point object: ``plugin = SettingsPlugin(SlackSettings)``, or with the
    extra its SDK comes in: ``SettingsPlugin(FeishuSettings, extra=Extra("feishu", ...))``."""

    settings_type: type[A]
    fallback: bool = False
    extra: Extra | None = None

    def configure(self) -> A | None:
        settings = read_settings(self.settings_type)
        if not settings.configured:
            return None
        if self.extra is not None:
            self.extra.require(settings.asked_by)
        return settings


def read_settings(settings_type: type[S]) -> S:
    """``settings_type()`` from the environment, its first error one sentence naming the
    variable (``SLACK_PORT``, not ``port``), as :class:`ConfigurationError`."""
    try:
        return settings_type()
    except ValidationError as exc:
        raise ConfigurationError(describe(exc, settings_type)) from None


# -- finding the adapters ----------------------------------------------------------------------


@dataclass(frozen=True)
class Configured:
    """One adapter the environment asks for: its name (the platform) and its settings."""

    name: str
    setup: AdapterSetup
    fallback: bool


def installed(*, asked: bool = False) -> dict[str, AdapterPlugin]:
    """Every adapter installed, by name, its module loaded; with ``asked``, only those whose
    variables the environment (or ``.env``) sets, so an unconfigured platform's SDK is never
    imported (Slack's and Telegram's come with their modules)."""
    entries = list(entry_points(group=GROUP))
    if asked:
        names = _variables_set()
        entries = [entry for entry in entries if _asks_for(entry.name, names)]
    return {entry.name: _load(entry) for entry in entries}


def _variables_set() -> frozenset[str]:
    """The names of every variable set, in the environment or the ``.env`` file the settings
    read, in capitals (pydantic-settings matches them without regard to case)."""
    from dotenv import dotenv_values  # pydantic-settings' own reader of .env

    names = set(os.environ)
    if Path(".env").is_file():
        names.update(dotenv_values(".env"))
    return frozenset(name.upper() for name in names)


def _asks_for(name: str, variables: frozenset[str]) -> bool:
    """An adapter's variables start with its entry point's name (``SLACK_``, ``FEISHU_``)."""
    prefix = name.upper() + "_"
    return any(variable.startswith(prefix) for variable in variables)


def _load(entry: EntryPoint) -> AdapterPlugin:
    try:
        plugin = entry.load()
    except Exception as exc:  # a third party's broken install: one sentence, not a traceback
        raise ConfigurationError(
            f"The chat adapter {entry.name!r} ({entry.value}) cannot be loaded: {exc}"
        ) from None
    if not isinstance(plugin, AdapterPlugin):
        raise ConfigurationError(
            f"The chat adapter {entry.name!r} ({entry.value}) is not an adapter plugin: it has "
            "no `fallback` and `configure()`."
        )
    return plugin


def configured_adapters(plugins: dict[str, AdapterPlugin] | None = None) -> list[Configured]:
    """Every adapter whose settings are set; the fallback adapters (the console) when none is.

    Only the adapters whose variables are set are loaded and read (a wrong setting stops the
    start); the others are loaded only when none of those is configured, to find the
    fallback.
    """
    if plugins is not None:
        return _configured(plugins)
    return _configured(installed(asked=True)) or _configured(installed())


def _configured(plugins: dict[str, AdapterPlugin]) -> list[Configured]:
    chosen: list[Configured] = []
    fallbacks: list[Configured] = []
    for name, plugin in plugins.items():
        setup = plugin.configure()
        if setup is not None:
            entry = Configured(name, setup, plugin.fallback)
            (fallbacks if plugin.fallback else chosen).append(entry)
    return chosen or fallbacks
