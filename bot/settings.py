"""Configuration from the environment or a ``.env`` file (DESIGN.md §1, Configuration).

Lists are comma- or space-separated (``MIRROR_ALLOWED_USERS=slack:U1,telegram:42``), as
operators write them in compose files, not JSON.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.chat import ConfigurationError
from bot.i18n import parse_language
from mirror.credentials import Credential
from mirror.errors import MirrorError
from mirror.naming import parse_target_base
from mirror.platform import parse_platform
from mirror.quota import Quota
from mirror.reference import is_valid_host, quote

PUBLIC_SOURCES = (
    "docker.io",
    "gcr.io",
    "k8s.gcr.io",
    "registry.k8s.io",
    "quay.io",
    "ghcr.io",
    "mcr.microsoft.com",
    "public.ecr.aws",
    "nvcr.io",
    "docker.elastic.co",
)

Names = Annotated[tuple[str, ...], NoDecode]

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Rate:
    count: int
    period: str

    @property
    def seconds(self) -> int:
        return _PERIODS[self.period]

    def __str__(self) -> str:
        return f"{self.count} per {self.period}"


def parse_rate(value: object) -> object:
    """``20/hour`` -> Rate(20, "hour"); anything else is left for pydantic to reject."""
    if not isinstance(value, str):
        return value
    count, _, period = value.strip().lower().partition("/")
    period = period.strip().removesuffix("s")
    if not count.strip().isdigit() or period not in _PERIODS or int(count) < 1:
        raise ValueError("write it as COUNT/PERIOD, e.g. 20/hour (second, minute, hour, day)")
    return Rate(int(count), period)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_DURATION_UNITS = {period[0]: seconds for period, seconds in _PERIODS.items()}


def parse_duration(value: object, *, zero: bool = False) -> object:
    """``5s``, ``10m``, ``6h``, ``1d`` -> seconds; a bare number is seconds. ``zero``: ``0s``
    is a duration too (``prune --older-than 0s``: everything)."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    found = _DURATION.fullmatch(text)
    if found:
        seconds = float(found.group(1)) * _DURATION_UNITS[found.group(2)]
    else:
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError("write it as a number and a unit, e.g. 5s, 10m, 6h or 1d") from None
    if seconds < 0 or (seconds == 0 and not zero):
        raise ValueError("it must be longer than nothing, e.g. 5s, 10m, 6h or 1d")
    return seconds


def parse_source_credentials(text: str) -> dict[str, Credential]:
    """``docker.io=USER:TOKEN,quay.io=USER:TOKEN`` (commas or spaces between entries), or a
    JSON object ``{"docker.io": "USER:TOKEN"}`` when a password holds a comma or a space.

    The password is everything after the first ``:``. No error message quotes an entry: it
    would print the password; hosts are named, entries counted.
    """
    import json

    from mirror.engines.registry.auth import canonical_host  # only when the variable is set

    text = text.strip()
    if text.startswith("{"):
        try:
            found = json.loads(text)
        except ValueError:
            msg = 'write it as JSON {"HOST": "USER:PASSWORD"} or as HOST=USER:PASSWORD'
            raise ValueError(msg) from None
        if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
            raise ValueError('write it as JSON {"HOST": "USER:PASSWORD"}, every value a string')
        entries = [(str(host), value) for host, value in found.items()]
    else:
        entries = []
        for number, entry in enumerate(text.replace(",", " ").split(), start=1):
            host, equals, pair = entry.partition("=")
            if not equals:
                raise ValueError(f"entry {number} is not written HOST=USER:PASSWORD")
            entries.append((host, pair))
    result: dict[str, Credential] = {}
    for host, pair in entries:
        if not is_valid_host(host):
            raise ValueError(
                f"{quote(host)} is not a registry host; write HOST=USER:PASSWORD with a host "
                "such as docker.io or registry.example.com:5000"
            )
        username, colon, password = pair.partition(":")
        if not (username and colon and password):
            raise ValueError(f"the entry for {host} is not written HOST=USER:PASSWORD")
        result[canonical_host(host)] = Credential(username, password)
    return result


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)")
_SIZE_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(value: object) -> object:
    """``2GB``, ``500MiB``, ``1.5 g``, plain bytes -> bytes (decimal units as registries
    show sizes, ``i`` for binary ones); empty, ``0`` or ``off`` -> None (no limit)."""
    if not isinstance(value, str):
        return value or None
    text = value.strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    found = _SIZE.fullmatch(text)
    if not found:
        raise ValueError("write it as a size, e.g. 2GB, 500MiB or plain bytes")
    number, unit = float(found.group(1)), found.group(2)
    base = 1024 if "i" in unit else 1000
    size = int(number * base ** _SIZE_POWERS[unit.rstrip("ib")])
    if size < 1:
        raise ValueError("it must be at least one byte, e.g. 2GB")
    return size


_QUOTA_IMAGES = re.compile(r"(\d+)\s*images?")
_QUOTA_FORM = "write it as N images/day|week or SIZE/day|week, e.g. 20 images/day, 10GB/week"


def parse_quota(value: object) -> object:
    """``20 images/day, 10GB/week`` -> a :class:`~mirror.quota.Quota` (every rule holds);
    empty or ``off`` -> None (no quota)."""
    from mirror.quota import Measure, Quota, Rule, Window

    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("", "off", "none"):
        return None
    rules: list[Rule] = []
    for part in (p.strip() for p in text.split(",")):
        amount, slash, window = part.rpartition("/")
        if not slash or window.strip().lower() not in ("day", "week"):
            raise ValueError(f"{quote(part)} is not a quota rule; {_QUOTA_FORM}")
        amount = amount.strip().lower()
        found = _QUOTA_IMAGES.fullmatch(amount)
        try:
            size = None if found else parse_size(amount)
        except ValueError:
            raise ValueError(f"{quote(part)} is not a quota rule; {_QUOTA_FORM}") from None
        limit = int(found.group(1)) if found else size
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"{quote(part)} allows nothing; {_QUOTA_FORM}")
        measure = Measure.IMAGES if found else Measure.BYTES
        rule = Rule(limit, measure, Window(window.strip().lower()))
        if any((r.measure, r.window) == (rule.measure, rule.window) for r in rules):
            raise ValueError(f"{quote(part)} repeats a rule for that measure and window")
        rules.append(rule)
    return Quota(tuple(rules))


def _http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host, or a ValueError naming it."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{quote(text)} is not an http:// or https:// URL")
    return text


_PLATFORM_WORD = re.compile(r"[a-z][a-z0-9_-]*")

T = TypeVar("T")


def _sentence(parse: Callable[[str], T], text: str) -> T:
    """A parser's one-sentence MirrorError as the ValueError pydantic reports."""
    try:
        return parse(text)
    except MirrorError as exc:
        raise ValueError(str(exc).rstrip(".")) from None


def _installed_platforms() -> str:
    from bot.plugins import GROUP  # at call time: bot.plugins imports this module

    names = sorted({ep.name for ep in entry_points(group=GROUP)})
    return f" (installed platforms: {', '.join(names)})" if names else ""


def _default_db() -> Path:
    import platformdirs  # only when MIRROR_DB is unset: ~10 ms of every start-up otherwise

    return Path(platformdirs.user_data_dir("hub-mirror-bot")) / "mirror.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    mirror_target: str | None = None
    mirror_target_username: str | None = None
    mirror_target_password: SecretStr | None = None
    mirror_source_credentials: SecretStr | None = None
    """Per-source registry credentials, ahead of the docker config: ``HOST=USER:PASSWORD``
    entries (``parse_source_credentials``); a login lifts Docker Hub's anonymous limit."""
    mirror_engine: str = "auto"
    """``auto`` or an installed engine's name (``hub_mirror_bot.engines``: docker, registry)."""
    mirror_default_platform: str = "linux/amd64"
    mirror_referrers: Literal["all", "signatures", "none"] = "all"
    """What an exact copy brings along: signatures, SBOMs and attestations (``all``), only
    signatures, or nothing."""
    mirror_allowed_sources: Names = PUBLIC_SOURCES
    mirror_insecure_registries: Names = ()
    mirror_allowed_users: Names = ()
    mirror_admins: Names = ()
    mirror_approval: Literal["off", "outside-allowlist", "all"] = "off"
    """What an admin approves in chat before it is copied: nothing (``off``: a source outside
    the allowlist is refused), sources outside the allowlist, or every request (``all``)."""
    mirror_admin_chat: str | None = None
    """``platform:chat_id`` where approvals are asked; unset: each admin privately."""
    mirror_max_images: int = Field(default=11, ge=1, le=100)
    mirror_max_image_bytes: int | None = Field(default=None, ge=1)
    """Refuse an image larger than this, written ``2GB``, ``500MiB`` or plain bytes."""
    mirror_confirm_bytes: int | None = Field(default=None, ge=1)
    """Ask the requester before copying an image larger than this (same spelling); off
    unless set."""
    mirror_concurrency: int = Field(default=16, ge=1, le=64)
    """The ceiling of copies at once; under it, the registry engine starts another while its
    source's link has room, and a daemon copies at most ``DAEMON_COPIES`` at once."""
    mirror_blob_streams: int = Field(default=6, ge=1, le=16)
    """Concurrent ``Range`` reads per large blob (16 MiB or more); 1 reads every blob as one
    stream. Spooled beside ``MIRROR_DB``; see docs/configuration.md for the measurements."""
    mirror_user_rate: Rate | None = None
    """Images one person may mirror per period, written ``20/hour`` (also minute, day)."""
    mirror_db: Path | str = Field(default_factory=_default_db)
    """A SQLite file (a path), or a PostgreSQL server (``postgresql://…``, kept as written:
    :func:`mirror.store.open_store` tells them apart and refuses any other URL)."""
    mirror_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Serve ``/metrics`` and ``/healthz`` on this port (``mirror-bot run`` only)."""
    mirror_metrics_listen: str = "0.0.0.0"
    mirror_web_url: str | None = None
    """The public base URL of the job pages and the operator's view (``https://mirror.example
    .com``); unset, there are none and no answer carries a link."""
    mirror_web_port: int = Field(default=8080, ge=1, le=65535)
    """Where those pages are served (``mirror-bot run`` only): a port of their own, never the
    metrics' (``/metrics`` stays off it)."""
    mirror_web_listen: str = "0.0.0.0"
    mirror_log_format: Literal["text", "json"] = "text"
    mirror_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    """Default INFO, WARNING for the console (whose screen the log would clutter)."""
    mirror_long_job_seconds: float = 60.0
    mirror_watch_interval: float = Field(default=6 * 3600.0, gt=0)
    """Seconds between two checks of one watch, written ``5s``, ``10m``, ``6h`` or ``1d``."""
    mirror_max_watches: int = Field(default=20, ge=0, le=1000)
    """Watches one chat may keep (0: watches are off)."""
    mirror_certs_dir: Path = Path("/etc/docker/certs.d")
    """CAs and client certificates per registry, ``DIR/HOST[:PORT]/ca.crt`` (and
    ``client.cert``, ``client.key``), as the docker client reads them."""
    mirror_language: str = "auto"
    """``auto`` (each asker's client language), ``en`` or ``zh_Hans`` (everyone, unless they
    chose with ``/mirror lang``)."""
    mirror_quota: Quota | None = None
    """Each person's budget over calendar windows in UTC (``20 images/day, 10GB/week``);
    admins are exempt. ``MIRROR_USER_RATE`` stays the rolling limit against floods."""
    mirror_target_max_repos: int | None = Field(default=None, ge=1)
    """Repositories the target may hold for the bot (a personal Aliyun ACR holds 300)."""
    mirror_retention: float | None = Field(default=None, ge=86400)
    """Prune copies nobody asked for in this long, once a day (``30d``; at least ``1d``)."""
    mirror_webhook_url: str | None = None
    """POST every finished image here (the audit row and the pull commands, signed)."""
    mirror_webhook_secret: SecretStr | None = None
    """Signs each webhook body: ``X-Mirror-Signature: sha256=HEX`` (HMAC-SHA256)."""
    docker_host: str | None = None

    @field_validator(
        "mirror_allowed_sources",
        "mirror_insecure_registries",
        "mirror_allowed_users",
        "mirror_admins",
        mode="before",
    )
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part for part in value.replace(",", " ").split() if part)
        return value

    @field_validator("mirror_target", mode="before")
    @classmethod
    def _target(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None  # set but empty: as if unset, and `check` says it is missing
        _sentence(parse_target_base, value)
        return value.strip()

    @field_validator("mirror_engine")
    @classmethod
    def _engine(cls, value: str) -> str:
        from mirror import engines

        if engines.is_mode(value):
            return value
        *others, last = [f"'{mode}'" for mode in engines.modes()]
        raise ValueError(f"Input should be {', '.join(others)} or {last}" if others else last)

    @field_validator("mirror_default_platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        platform = _sentence(parse_platform, value.strip())
        return str(platform) if platform is not None else "all"

    @field_validator("mirror_allowed_sources")
    @classmethod
    def _sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for source in value:
            if not is_valid_host(source.removeprefix("*.")):
                raise ValueError(
                    f"{quote(source)} is not a registry host; write it as quay.io, "
                    "registry.example.com:5000 or *.example.com (no scheme or path)"
                )
        return tuple(s.lower() for s in value)

    @field_validator("mirror_insecure_registries")
    @classmethod
    def _insecure(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for registry in value:
            if not is_valid_host(registry):
                raise ValueError(
                    f"{quote(registry)} is not a registry host; write it as host or host:port "
                    "(no scheme or path)"
                )
        return value

    @field_validator("mirror_allowed_users", "mirror_admins")
    @classmethod
    def _platform_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Ids are matched as ``platform:id``; one without a prefix would match nobody."""
        ids = []
        for text in value:
            prefix, colon, rest = text.partition(":")
            if not (colon and rest and _PLATFORM_WORD.fullmatch(prefix.lower())):
                raise ValueError(
                    f"{quote(text)} needs a platform prefix, written PLATFORM:ID"
                    f"{_installed_platforms()}"
                )
            ids.append(f"{prefix.lower()}:{rest}")
        return tuple(ids)

    @field_validator("mirror_approval", mode="before")
    @classmethod
    def _approval(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("mirror_admin_chat", mode="before")
    @classmethod
    def _admin_chat(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return None
        prefix, colon, rest = text.partition(":")
        if not (colon and rest and _PLATFORM_WORD.fullmatch(prefix.lower())):
            raise ValueError(
                f"{quote(text)} needs a platform prefix, written PLATFORM:CHAT_ID"
                f"{_installed_platforms()}"
            )
        return f"{prefix.lower()}:{rest}"

    @model_validator(mode="after")
    def _someone_approves(self) -> Settings:
        """Approval on with nobody to approve would hold every request for ever."""
        if self.mirror_approval != "off" and not self.mirror_admins:
            raise ValueError(
                f"MIRROR_APPROVAL is {self.mirror_approval} but MIRROR_ADMINS names nobody to "
                "approve; name the admins (PLATFORM:ID) or set MIRROR_APPROVAL=off"
            )
        return self

    @field_validator("mirror_certs_dir")
    @classmethod
    def _certs_dir(cls, value: Path) -> Path:
        """The default may be absent (no registry needs a CA); a directory named is checked."""
        if value.exists() and not value.is_dir():
            raise ValueError(f"{quote(str(value))} is not a directory")
        if not value.exists() and value != Path("/etc/docker/certs.d"):
            raise ValueError(f"{quote(str(value))} does not exist")
        return value

    @field_validator("mirror_source_credentials")
    @classmethod
    def _source_credentials(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        parse_source_credentials(value.get_secret_value())
        return value

    def source_credentials(self) -> dict[str, Credential]:
        """MIRROR_SOURCE_CREDENTIALS by registry host (already validated at start)."""
        value = self.mirror_source_credentials
        return parse_source_credentials(value.get_secret_value()) if value else {}

    @field_validator("mirror_log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        return value.strip().upper() or None if isinstance(value, str) else value

    @field_validator("mirror_db", mode="before")
    @classmethod
    def _db(cls, value: object) -> object:
        if isinstance(value, str) and "://" not in value:
            return Path(value)
        return value

    @property
    def data_dir(self) -> Path:
        """Where the bot keeps files of its own (the blob spool): beside a SQLite
        ``MIRROR_DB``, or in the user's data directory when the database is a server."""
        if isinstance(self.mirror_db, Path):
            return self.mirror_db.parent
        return _default_db().parent

    @field_validator("mirror_web_url", mode="before")
    @classmethod
    def _web_url(cls, value: object) -> object:
        """An http(s) URL people's browsers reach, without query or fragment; kept without
        its trailing slash, so a link is this plus ``/jobs/...``."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return None
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018  (raises on a port that is no number)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or parts.username
        ):
            raise ValueError(
                f"{quote(text)} is not the pages' public address; write it as "
                "https://HOST[:PORT][/PATH], without query or credentials"
            )
        return text.rstrip("/")

    @model_validator(mode="after")
    def _web_port(self) -> Settings:
        if self.mirror_web_url and self.mirror_web_port == self.mirror_metrics_port:
            raise ValueError(
                f"MIRROR_WEB_PORT: {self.mirror_web_port} is MIRROR_METRICS_PORT's; the pages "
                "need a port of their own"
            )
        return self

    @field_validator("mirror_watch_interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> object:
        return parse_duration(value)

    @field_validator("mirror_max_image_bytes", "mirror_confirm_bytes", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return parse_size(value)

    @field_validator("mirror_language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value.strip().lower() == "auto":
            return "auto"
        try:  # the spellings /mirror lang takes: en, zh, zh_Hans, zh-CN, any case
            return parse_language(value.strip())
        except ValueError:
            raise ValueError(f"{quote(value)} is not auto, en or zh_Hans") from None

    @field_validator("mirror_user_rate", mode="before")
    @classmethod
    def _rate(cls, value: object) -> object:
        return parse_rate(value) if value not in ("", None) else None

    @field_validator("mirror_quota", mode="before")
    @classmethod
    def _quota(cls, value: object) -> object:
        return parse_quota(value)

    @field_validator("mirror_target_max_repos", mode="before")
    @classmethod
    def _max_repos(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "off") else value

    @field_validator("mirror_retention", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "off"):
            return None
        seconds = parse_duration(value)
        if isinstance(seconds, float) and seconds < 86400:
            raise ValueError("keep copies at least a day, e.g. 1d or 30d")
        return seconds

    @field_validator("mirror_webhook_url", mode="before")
    @classmethod
    def _webhook_url(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return _http_url(value.strip()) if value.strip() else None

    @model_validator(mode="after")
    def _webhook_signed(self) -> Settings:
        """A webhook nobody can verify would let anyone post as the bot to its receiver."""
        secret = self.mirror_webhook_secret
        if self.mirror_webhook_url and not (secret and secret.get_secret_value()):
            raise ValueError(
                "MIRROR_WEBHOOK_URL is set but MIRROR_WEBHOOK_SECRET is not; set the secret "
                "the receiver checks the X-Mirror-Signature header with"
            )
        return self

    def secrets(self) -> list[str]:
        """Every secret value set, so logs and tests can make sure none leaks (each chat
        adapter lists its own: ``bot.plugins.AdapterSetup.secrets``)."""
        values = [self.mirror_target_password, self.mirror_webhook_secret]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        if sources := self.source_credentials():
            from mirror.engines.registry.auth import basic  # not on every start-up of the CLI

            for cred in sources.values():  # as typed, and as a Basic header carries it
                found += [cred.password, basic(cred).removeprefix("Basic ")]
        if isinstance(self.mirror_db, str):
            with contextlib.suppress(ValueError):
                password = urlsplit(self.mirror_db).password
                if password:
                    found += [password, unquote(password)]
        return found


def load_settings() -> Settings:
    """The settings from the environment, validated once; a bad one is one sentence naming it."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe(exc)) from None


def describe(exc: ValidationError, settings_type: type[BaseSettings] = Settings) -> str:
    """``MIRROR_CONCURRENCY: Input should be greater than or equal to 1.`` (the first error),
    worded alike for the bot's settings and every adapter's (``SLACK_PORT``, not ``port``)."""
    first = exc.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
    if not first["loc"]:  # a rule over several variables names them itself
        return f"{message}."
    prefix = str(settings_type.model_config.get("env_prefix") or "")
    variable = (prefix + "_".join(str(part) for part in first["loc"])).upper()
    return f"{variable}: {message}."
