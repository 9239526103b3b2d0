"""Copy engines, found by name: ``docker``, ``registry``, and whatever else is installed.

Like the chat adapters, an engine is a plugin: its distribution declares it under the
entry-point group ``hub_mirror_bot.engines``, and the object the entry point names is an
:class:`~mirror.engines.base.EnginePlugin`. The group's names and ``auto`` are what
``MIRROR_ENGINE`` and ``mirror-bot mirror --engine`` accept; docs/engines.md shows how to add
one.

``base`` (the protocol, its configuration, the plugin), ``chooser`` (the ``auto`` rule),
``remote`` (the one registry client a process shares), ``faults`` (faults -> sentences, for
every engine), ``docker`` and ``registry/`` (the two engines).

Start-up: ``MIRROR_ENGINE`` is checked on every start, and reading every installed
distribution's entry points costs milliseconds. So a name is looked up among this
distribution's own entry points first (one metadata file), and all are read only for a name
not found there (another package's engine, or a typo) or when the whole list is wanted. A
plugin is loaded (its module imported) only when its engine is wanted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution, entry_points

from mirror.engines.base import EnginePlugin
from mirror.errors import EngineUnavailable
from mirror.text import Text

GROUP = "hub_mirror_bot.engines"
AUTO = "auto"
"""Not an engine: the rule that picks one per image (``chooser.EngineChooser``)."""

_DISTRIBUTION = "hub-mirror-bot"


@functools.cache
def _own() -> dict[str, EntryPoint]:
    """This distribution's engines."""
    try:
        found = distribution(_DISTRIBUTION).entry_points
    except PackageNotFoundError:  # run from a tree that was never installed
        return {}
    return {entry.name: entry for entry in found.select(group=GROUP)}


@functools.cache
def _all() -> dict[str, EntryPoint]:
    """Every installed distribution's engines; ours win a clash of names."""
    return {**{entry.name: entry for entry in entry_points(group=GROUP)}, **_own()}


def names() -> tuple[str, ...]:
    """Every installed engine's name, sorted."""
    return tuple(sorted(_all()))


def modes() -> tuple[str, ...]:
    """What ``MIRROR_ENGINE`` and ``--engine`` accept."""
    return (AUTO, *names())


def is_mode(name: str) -> bool:
    """Whether ``name`` is ``auto`` or an installed engine (ours found without a scan)."""
    return name == AUTO or name in _own() or name in _all()


class Installed(Mapping[str, EnginePlugin]):
    """Every installed engine's plugin by name, each loaded when first read."""

    def __init__(self) -> None:
        self._loaded: dict[str, EnginePlugin] = {}

    def __getitem__(self, name: str) -> EnginePlugin:
        if name not in self._loaded:
            entry = _own().get(name) or _all()[name]  # KeyError: no such engine
            self._loaded[name] = _load(entry)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __len__(self) -> int:
        return len(names())


def installed() -> Installed:
    return Installed()


def _load(entry: EntryPoint) -> EnginePlugin:
    """The plugin an entry point names; a broken one is one sentence, not a traceback."""
    try:
        plugin = entry.load()
    except Exception as exc:  # a third party's broken install
        raise EngineUnavailable(
            Text(
                "The {engine} engine cannot be loaded ({entry}): {error}.",
                engine=entry.name,
                entry=entry.value,
                error=str(exc).rstrip("."),
            )
        ) from None
    if not isinstance(plugin, EnginePlugin):
        raise EngineUnavailable(
            Text(
                "The {engine} engine cannot be loaded ({entry}): {error}.",
                engine=entry.name,
                entry=entry.value,
                error="it names no EnginePlugin",
            )
        )
    return plugin
