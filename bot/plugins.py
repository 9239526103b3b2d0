"""Finding chat adapters by name through entry points, loading only the configured ones.

``bot`` never imports an adapter: like pytest plugins, adapters declare themselves in
``pyproject.toml`` under ``hub_mirror_bot.adapters``, and a chat SDK is imported only when its
adapter runs (``mirror-bot mirror`` starts without any).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Protocol

from bot.chat import ChatAdapter
from bot.settings import Settings

GROUP = "hub_mirror_bot.adapters"


class AdapterFactory(Protocol):
    def from_settings(self, settings: Settings) -> ChatAdapter: ...


def configured_adapters(settings: Settings) -> list[str]:
    """Every adapter whose credentials are set; the console when none is."""
    names = []
    if settings.slack_bot_token:
        names.append("slack")
    if settings.telegram_bot_token:
        names.append("telegram")
    return names or ["console"]


def load_adapter(name: str, settings: Settings) -> ChatAdapter:
    found = entry_points(group=GROUP, name=name)
    if not found:
        raise LookupError(f"No chat adapter named {name!r} is installed.")
    factory: AdapterFactory = next(iter(found)).load()
    return factory.from_settings(settings)
