"""Who may do what, and which sources may be copied: checked before any network traffic.

A source is allowed (MIRROR_ALLOWED_SOURCES, or a repository an admin approved for good),
refused, or, with MIRROR_APPROVAL on, asked about: held until an admin approves it
(:mod:`bot.approvals`). An internal address the operator did not name is refused whatever
the mode: nobody can approve it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from bot.chat import Incoming
from bot.settings import Settings
from mirror.errors import MirrorError
from mirror.hosts import is_internal_host
from mirror.models import Item
from mirror.naming import parse_target_base
from mirror.reference import ImageRef
from mirror.text import Text


class Denied(MirrorError):
    """The policy refuses; the sentence says what and, where useful, how to get allowed."""


class Refused(Denied):
    """The policy refused a request whose images were already planned: ``items``, each
    ``REFUSED`` with the sentence, so the refusal is stored (the audit) before it is said."""

    def __init__(self, sentence: str, items: list[Item]) -> None:
        super().__init__(sentence)
        self.items = items


class Verdict(Enum):
    """What the policy says of a source."""

    ALLOWED = "allowed"
    ASK = "ask"
    """Held until an admin approves (MIRROR_APPROVAL); refused when approval is off."""
    REFUSED = "refused"
    """Never: an internal address the operator did not name, or approval is off."""


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
        self.approval = settings.mirror_approval
        """``off``, ``outside-allowlist`` or ``all``."""
        named = {s for s in self._sources if not s.startswith("*.")}
        named.update(r.lower() for r in settings.mirror_insecure_registries)
        if settings.mirror_target:
            named.add(parse_target_base(settings.mirror_target).registry.lower())
        self._named = frozenset(named)
        """Internal hosts the operator named: the only internal sources anyone may approve."""
        self.approved: frozenset[str] = frozenset()
        """Repositories approved for good (stored; kept current by :mod:`bot.approvals`)."""

    @property
    def asks(self) -> bool:
        return self.approval != "off"

    @property
    def configured_sources(self) -> tuple[str, ...]:
        """MIRROR_ALLOWED_SOURCES, as the operator wrote it (lower case)."""
        return self._sources

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

    def _listed(self, source: ImageRef) -> bool:
        registry = source.registry.lower()
        host = _host_only(registry)
        return (
            registry in self._sources
            or host in self._sources
            or (
                not is_internal_host(host)
                and any(s.startswith("*.") and host.endswith(s[1:]) for s in self._sources)
            )
        )

    def approvable(self, source: ImageRef) -> bool:
        """Whether an admin may approve ``source`` at all: not an internal address the operator
        did not name (MIRROR_ALLOWED_SOURCES, MIRROR_INSECURE_REGISTRIES, the target)."""
        registry = source.registry.lower()
        host = _host_only(registry)
        return not is_internal_host(host) or registry in self._named or host in self._named

    def judge(self, source: ImageRef) -> Verdict:
        """Allowed, asked about (held for an admin), or refused; no network."""
        if not self.approvable(source):
            return Verdict.REFUSED
        if source.name.lower() in self.approved:
            return Verdict.ALLOWED
        listed = self._listed(source)
        if self.approval == "all" or (self.approval == "outside-allowlist" and not listed):
            return Verdict.ASK
        return Verdict.ALLOWED if listed else Verdict.REFUSED

    def check_source(self, source: ImageRef) -> None:
        """Raise :class:`Denied` unless ``source`` may be read without asking anyone."""
        if self._listed(source) or (
            source.name.lower() in self.approved and self.approvable(source)
        ):
            return
        raise Denied(
            Text(
                "`{registry}` is not an allowed source registry; allowed: {allowed}.",
                registry=source.registry,
                allowed=", ".join(self._sources) or "none",
            )
        )
