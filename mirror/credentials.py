"""Registry credentials, kept out of reprs and logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credential:
    username: str
    password: str = field(repr=False)


Credentials = Mapping[str, Credential]
"""Registry host (``docker.io``, ``127.0.0.1:5000``) -> credential."""
