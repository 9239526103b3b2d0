"""Who may do what, and which sources may be copied: checked before any network traffic."""

from __future__ import annotations

from collections.abc import Iterable

from bot.chat import Incoming
from bot.settings import Settings
from mirror.errors import MirrorError
from mirror.hosts import is_internal_host
from mirror.reference import ImageRef
from mirror.text import Text


class Denied(MirrorError):
    """The policy refuses; the sentence says what and, where useful, how to get allowed."""


def _host_only(registry: str) -> str:
    if registry.startswith("["):
        return registry[1:].partition("]")[0]
    return registry.rpartition(":")[0] if registry.count(":") == 1 else registry


class Policy:
    def __init__(self, settings: Settings) -> None:
        self._allowed_users = frozenset(settings.mirror_allowed_users)
        self._admins = frozenset(settings.mirror_admins)
        self._sources = tuple(s.lower() for s in settings.mirror_allowed_sources)
        self.rate = settings.mirror_user_rate

    def _ids(self, incoming: Incoming) -> Iterable[str]:
        yield f"{incoming.platform}:{incoming.user_id}"
        yield f"{incoming.platform}:{incoming.chat_id}"

    def is_admin(self, incoming: Incoming) -> bool:
        return f"{incoming.platform}:{incoming.user_id}" in self._admins

    def check_user(self, incoming: Incoming) -> None:
        """Slack and the console are open by default; Telegram (anyone can write) is closed."""
        if self.is_admin(incoming):
            return
        if not self._allowed_users and not incoming.closed_by_default:
            return
        if any(i in self._allowed_users for i in self._ids(incoming)):
            return
        user, chat = self._ids(incoming)
        raise Denied(
            Text(
                "Sorry, you are not allowed to use this bot; ask an admin to add "
                "`{user}` (or this chat, `{chat}`) to MIRROR_ALLOWED_USERS.",
                user=user,
                chat=chat,
            )
        )

    def check_rate(self, incoming: Incoming, used: int, asking: int) -> None:
        """``used`` images in the last period plus ``asking`` now must fit the user's rate."""
        if self.rate is None or self.is_admin(incoming):
            return
        if used + asking > self.rate.count:
            left = max(0, self.rate.count - used)
            raise Denied(
                Text(
                    "You may mirror {rate} and have {left} left right now; "
                    "try again later or ask for fewer images.",
                    rate=str(self.rate),
                    left=left,
                )
            )

    def check_source(self, source: ImageRef) -> None:
        registry = source.registry.lower()
        host = _host_only(registry)
        listed = (
            registry in self._sources
            or host in self._sources
            or (
                not is_internal_host(host)
                and any(s.startswith("*.") and host.endswith(s[1:]) for s in self._sources)
            )
        )
        if not listed:
            raise Denied(
                Text(
                    "`{registry}` is not an allowed source registry; allowed: {allowed}.",
                    registry=source.registry,
                    allowed=", ".join(self._sources) or "none",
                )
            )
