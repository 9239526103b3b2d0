"""A chart from a classic (HTTP) Helm repository: its ``index.yaml``, then the archive.

``helm install NAME CHART --repo URL --version V`` fetches ``URL/index.yaml``, finds CHART at
version V (the newest release when none is given) and downloads the first of its ``urls``,
relative to the repository. This does the same, through the same egress guard as every registry
request (:mod:`mirror.egress`: an internal address nobody named is refused, also after a
redirect) and the same TLS trust (``certs.d``), with a size cap on both downloads and the
archive's ``digest`` checked when the index gives one. An index that points at ``oci://`` (as
Bitnami's does now) is answered with that reference: the chart is then an OCI artifact.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from mirror.charts import MAX_ARCHIVE_BYTES, newest_version
from mirror.egress import EgressGuard
from mirror.errors import ChartUnreadable, EgressDenied
from mirror.reference import quote
from mirror.text import Text

MAX_INDEX_BYTES = 32 << 20
"""Large public repositories' indexes run to a few MiB; a cap well above them."""


@dataclass(frozen=True)
class RepoChart:
    """Where a repository's chart is, and its archive unless that is an OCI reference."""

    name: str
    version: str
    url: str
    """The archive's address (``https://…/name-1.2.3.tgz`` or ``oci://host/path:1.2.3``)."""
    archive: bytes | None = None

    @property
    def oci(self) -> str | None:
        """``host/path:tag`` when the index points at a registry."""
        return self.url.removeprefix("oci://") if self.url.startswith("oci://") else None


class HelmRepos:
    """Reads charts from HTTP repositories; one short-lived session per chart."""

    def __init__(
        self,
        guard: EgressGuard,
        ssl_for: Callable[[str], ssl.SSLContext | bool],
        *,
        timeout: float = 60.0,
    ) -> None:
        self._guard = guard
        self._ssl_for = ssl_for
        self._timeout = timeout

    async def chart(self, repo: str, name: str, version: str | None) -> RepoChart:
        """CHART at VERSION (None: the newest release) in the repository at ``repo``."""
        import aiohttp

        index_url = repo.rstrip("/") + "/index.yaml"
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            trust_env=True,
            connector=aiohttp.TCPConnector(resolver=self._guard.resolver()),
            trace_configs=[self._guard.trace_config()],
        )
        async with session:
            index = _parse_index(await self._get(session, index_url, MAX_INDEX_BYTES), repo)
            entry = _entry(index, repo, name, version)
            urls = entry.get("urls")
            if not isinstance(urls, list) or not urls or not isinstance(urls[0], str):
                raise ChartUnreadable(
                    Text("{repo} lists no download for {chart}.", repo=quote(repo), chart=name)
                )
            found = str(entry.get("version"))
            url = urls[0] if "://" in urls[0] else urljoin(repo.rstrip("/") + "/", urls[0])
            if url.startswith("oci://"):
                return RepoChart(name, found, url)
            archive = await self._get(session, url, MAX_ARCHIVE_BYTES)
        digest = entry.get("digest")
        if isinstance(digest, str) and hashlib.sha256(archive).hexdigest() != digest:
            raise ChartUnreadable(
                Text(
                    "{url} is not the archive {repo}'s index describes.", url=quote(url), repo=repo
                )
            )
        return RepoChart(name, found, url, archive)

    async def _get(self, session: Any, url: str, limit: int) -> bytes:
        """The body at ``url``, refused past ``limit`` bytes."""
        import aiohttp

        try:
            async with session.get(url, ssl=self._ssl_for(url)) as resp:
                if resp.status != 200:
                    raise ChartUnreadable(
                        Text("{url} answered HTTP {status}.", url=quote(url), status=resp.status)
                    )
                chunks, received = [], 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    received += len(chunk)
                    if received > limit:
                        raise ChartUnreadable(
                            Text(
                                "{url} is larger than {size} MiB; I stopped reading it.",
                                url=quote(url),
                                size=limit >> 20,
                            )
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except EgressDenied:
            raise
        except aiohttp.ClientError as exc:
            if isinstance(getattr(exc, "os_error", None), EgressDenied):
                raise exc.os_error from exc  # type: ignore[attr-defined]
            raise ChartUnreadable(
                Text(
                    "{url} could not be read ({reason}).", url=quote(url), reason=type(exc).__name__
                )
            ) from exc
        except TimeoutError:
            raise ChartUnreadable(Text("{url} did not answer in time.", url=quote(url))) from None


def _parse_index(data: bytes, repo: str) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        index = yaml.load(data, Loader=loader)  # a safe loader, C when built with it
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError):
        index = None
    if not isinstance(index, dict) or not isinstance(index.get("entries"), dict):
        raise ChartUnreadable(
            Text("{repo} has no Helm repository index I can read.", repo=quote(repo))
        )
    return index


def _entry(index: dict[str, Any], repo: str, name: str, version: str | None) -> dict[str, Any]:
    listed = [e for e in index["entries"].get(name) or () if isinstance(e, dict)]
    if not listed:
        raise ChartUnreadable(
            Text("{repo} has no chart named {chart}.", repo=quote(repo), chart=quote(name))
        )
    by_version = {str(e.get("version")): e for e in listed}
    wanted = version or newest_version(list(by_version))
    if wanted is None or wanted not in by_version:
        wanted_v = (version or "").removeprefix("v")
        alike = next((v for v in by_version if v.removeprefix("v") == wanted_v), None)
        if alike is None:
            raise ChartUnreadable(
                Text(
                    "{repo} has no version {version} of {chart}.",
                    repo=quote(repo),
                    version=quote(version or "?"),
                    chart=quote(name),
                )
            )
        wanted = alike
    return by_version[wanted]
