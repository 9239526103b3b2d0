"""The job pages and the operator's view (``MIRROR_WEB_URL``, issue 28): what a chat message
is too small for.

A job's page, ``{MIRROR_WEB_URL}/jobs/{job}/{token}``, is a capability URL: whoever has the
link from the chat may look; without the job's token there is nothing to see. The operator's
view, ``/admin``, is entered by a one-time link an admin gets with ``/web``. Both are server
-rendered (Jinja2, autoescaped) on a port of their own (``MIRROR_WEB_PORT``), and every page
has a ``.json`` twin built from the same data (:mod:`bot.web.pages`).

- :mod:`bot.web.access` — sign-in links and sessions;
- :mod:`bot.web.changes` — a running job's changes, for its page's event stream;
- :mod:`bot.web.pages` — what each page shows, as data; :mod:`bot.web.chart` — the
  throughput chart's geometry;
- :mod:`bot.web.app` — the aiohttp application: routes, headers, templates, the server.

This module and the first three import neither aiohttp nor Jinja2: the bot builds a
:class:`Web` and ``/web`` issues links before (and without) the server's modules.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.web.access import Clock, Sessions, SignIns
from bot.web.changes import JobChanges

if TYPE_CHECKING:
    from bot.chat import ChatAdapter
    from bot.settings import Settings

__all__ = ["Web"]


@dataclass
class Web:
    """The pages' state in this process: where they are, who may sign in, who watches."""

    url: str
    """``MIRROR_WEB_URL`` without its trailing slash."""
    listen: str = "0.0.0.0"
    port: int = 8080
    clock: Clock = time.monotonic
    sign_ins: SignIns = field(init=False)
    sessions: Sessions = field(init=False)
    changes: JobChanges = field(default_factory=JobChanges)
    adapters: Mapping[str, ChatAdapter] = field(default_factory=dict)
    """The chats this process serves: ``/web`` writes to an admin privately through them."""

    def __post_init__(self) -> None:
        self.sign_ins = SignIns(self.clock)
        self.sessions = Sessions(self.clock)

    @classmethod
    def of(cls, settings: Settings) -> Web | None:
        """The pages ``settings`` ask for; None without ``MIRROR_WEB_URL``."""
        if not settings.mirror_web_url:
            return None
        return cls(settings.mirror_web_url, settings.mirror_web_listen, settings.mirror_web_port)

    @property
    def base(self) -> str:
        """The URL's path (``/mirror`` behind a proxy that keeps it, else empty): every route
        is served under it."""
        return urlsplit(self.url).path.rstrip("/")

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``, what a browser sends as ``Origin`` from these pages."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    @property
    def secure(self) -> bool:
        """Cookies are marked ``Secure`` when people reach the pages over https."""
        return self.url.lower().startswith("https://")

    def sign_in_url(self, token: str) -> str:
        return f"{self.url}/admin/signin/{token}"
