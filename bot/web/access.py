"""Who may see the operator's view: one-time sign-in links, then sessions (issue 28).

An admin who types ``/web`` gets a link, privately, that works once and for
:data:`SIGN_IN_SECONDS`; following it and pressing "Sign in" (a POST, so a link scanner that
fetches the URL does not spend it) opens a :class:`Session`, carried by a cookie, with its own
token against cross-site requests. Both live in this process's memory: a restart signs
everyone out, which costs an admin one ``/web``. The clock is injected, so tests move it.

Nothing here imports aiohttp: ``/web`` issues links without the server's modules.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SIGN_IN_SECONDS = 600.0
"""A sign-in link's life: ten minutes from ``/web``."""
SESSION_SECONDS = 12 * 3600.0
"""A session's life from its sign-in; then ``/web`` again."""

Clock = Callable[[], float]


@dataclass(frozen=True)
class Session:
    id: str
    """The cookie's value."""
    admin: str
    """``platform:user`` of the admin who signed in."""
    csrf: str
    """What every form of this session sends back, compared before any change."""
    expires: float


def _secret() -> str:
    return secrets.token_urlsafe(32)


class SignIns:
    """Sign-in links not used yet: token -> (admin, expiry)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._links: dict[str, tuple[str, float]] = {}

    def issue(self, admin: str) -> str:
        """A new link's token for ``admin``; forgotten by itself after its ten minutes."""
        self._prune()
        token = _secret()
        self._links[token] = (admin, self._clock() + SIGN_IN_SECONDS)
        return token

    def revoke(self, token: str) -> None:
        """A link that could not be delivered must not work either."""
        self._links.pop(token, None)

    def admin(self, token: str) -> str | None:
        """Whose link this is while it works (the sign-in page asks; nothing is spent)."""
        self._prune()
        found = self._links.get(token)
        return found[0] if found else None

    def redeem(self, token: str) -> str | None:
        """Spend the link: its admin the first time within its life, None ever after."""
        self._prune()
        found = self._links.pop(token, None)
        return found[0] if found else None

    def _prune(self) -> None:
        now = self._clock()
        for token in [t for t, (_admin, expires) in self._links.items() if expires <= now]:
            del self._links[token]


class Sessions:
    """Signed-in admins, by the cookie's value."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._open: dict[str, Session] = {}
        self._notices: dict[str, str] = {}

    def open(self, admin: str) -> Session:
        now = self._clock()
        for expired in [s for s in self._open.values() if s.expires <= now]:
            self.close(expired.id)
        session = Session(_secret(), admin, _secret(), now + SESSION_SECONDS)
        self._open[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._open.get(session_id)
        if session is None:
            return None
        if session.expires <= self._clock():
            self.close(session.id)
            return None
        return session

    def close(self, session_id: str) -> None:
        self._open.pop(session_id, None)
        self._notices.pop(session_id, None)

    def tell(self, session_id: str, sentence: str) -> None:
        """What the session's next page says once (what an answer did, after its redirect)."""
        if session_id in self._open:
            self._notices[session_id] = sentence

    def notice(self, session_id: str) -> str | None:
        return self._notices.pop(session_id, None)


def same_secret(given: str | None, expected: str | None) -> bool:
    """Compare a token in constant time; nothing given, or nothing expected, is never equal."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
