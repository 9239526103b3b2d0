"""Reading one blob from the source, in order: one stream that resumes where it was cut, or,
for a large blob, several concurrent ``Range`` reads (issue 11 §2).

One TCP stream over a long, lossy link carries a few MB/s however wide the pipe; parallel
streams add up. A large blob is cut in parts; ``streams`` workers fetch parts with ``Range``
requests, each into its slot of a spool file (a ring of ``window`` parts under the data
directory, unlinked from the start), and the bytes are handed on in order as soon as the part
they belong to has them. Memory stays flat however large the blob; the disk holds at most
``window`` parts. A source that ignores ``Range`` (answers 200) is read as one stream.

A connection cut after some progress is resumed from the last byte received
(``Range: bytes=N-``), as containers/image's ``bodyReader`` does. A failure that made no
progress is the engine's to retry (its one loop), so resuming never multiplies its attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

from mirror.registry.client import RegistryClient
from mirror.registry.errors import Refused, TimedOut, Transient, Unreachable

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
"""Reads, spool writes and the chunks handed on are at most this long."""

RESUME_AFTER = 256 << 10
"""A cut connection is resumed when it delivered at least this many bytes since it was
opened; a connection that fails sooner is not progressing, and the engine retries the unit."""

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Ranged:
    """How a large blob is read: ``streams`` concurrent ranged reads of parts of at most
    ``part_size`` bytes, for blobs of ``threshold`` bytes or more; the spool under
    ``spool_dir`` (None: the system's temporary directory)."""

    streams: int = 4
    part_size: int = 16 << 20
    threshold: int = 16 << 20
    spool_dir: Path | None = None

    def part_for(self, size: int) -> int:
        """One part per stream for a blob that fits, so each stream asks once; bigger blobs
        in parts of ``part_size``, so the spool stays bounded (64 KiB aligned)."""
        per_stream = -(-size // self.streams)
        part = max(64 << 10, min(per_stream, self.part_size))
        return -(-part // (64 << 10)) * (64 << 10)


def _lost(registry: str, exc: BaseException) -> Transient:
    if isinstance(exc, TimeoutError):
        return TimedOut(registry, "stalled mid-blob")
    return Unreachable(registry, f"lost mid-blob: {type(exc).__name__}")


class _Cursor:
    """Bytes ``[done, end)`` of a blob (``end`` None: to its end), resumed after a cut.

    ``honours_range`` is what the first ranged answer said: True for 206; False for 200, when
    the source sends the whole blob: the bytes before ``done`` are skipped, and a cursor that
    may ``widen`` reads the whole blob from then on (the one-stream fallback).
    """

    def __init__(
        self,
        client: RegistryClient,
        registry: str,
        repository: str,
        digest: str,
        start: int,
        end: int | None,
        *,
        widen: bool = False,
    ) -> None:
        self._client = client
        self._registry = registry
        self._repository = repository
        self._digest = digest
        self.done = start
        self.end = end
        self._widen = widen
        self.honours_range: bool | None = None

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        opened_at = self.done
        while self.end is None or self.done < self.end:
            try:
                async for chunk in self._read():
                    yield chunk
                return
            except Transient as exc:
                error: Transient = exc
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                error = _lost(self._registry, exc)
            if self.done - opened_at < RESUME_AFTER:
                raise error
            log.info("resuming %s at byte %d after %s", self._digest[:19], self.done, error.detail)
            opened_at = self.done

    async def _read(self) -> AsyncIterator[bytes]:
        ranged = self.done > 0 or self.end is not None
        async with self._client.open_blob(
            self._registry, self._repository, self._digest, start=self.done, end=self.end
        ) as resp:
            skip = 0
            if resp.status == 206:
                found = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if found is None or int(found.group(1)) != self.done:
                    raise Refused(
                        self._registry, 206, f"answered a range other than from byte {self.done}"
                    )
                if self.honours_range is None:
                    self.honours_range = True
            elif ranged:
                if self.honours_range is None:
                    self.honours_range = False
                    if self._widen:
                        self.end = None
                skip = self.done  # the whole blob again: skip what we have
            async for chunk in resp.content.iter_chunked(_CHUNK):
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                if self.end is not None and self.done + len(chunk) >= self.end:
                    chunk = chunk[: self.end - self.done]
                    self.done += len(chunk)
                    yield chunk
                    return
                self.done += len(chunk)
                yield chunk
            if self.end is not None and self.done < self.end:
                raise Unreachable(self._registry, "the blob ended early")


@dataclass
class _Window:
    """The parts of one blob between the workers that fill them and the reader in order."""

    count: int
    slots: int
    filled: list[int] = field(default_factory=list)
    handed_on: int = 0
    """Parts handed on whole: their slots may be filled again."""
    failure: BaseException | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def __post_init__(self) -> None:
        self.filled = [0] * self.count


class BlobReader:
    """The bytes of one source blob, in order; close it (``async with``) to stop its workers."""

    def __init__(
        self,
        client: RegistryClient,
        registry: str,
        repository: str,
        digest: str,
        size: int | None,
        ranged: Ranged,
    ) -> None:
        self._client = client
        self._registry = registry
        self._repository = repository
        self._digest = digest
        self._size = size
        self._ranged = ranged
        self._tasks: list[asyncio.Task[None]] = []
        self._spool: IO[bytes] | None = None
        self.streams_used = 1
        """How many streams read the blob (1 when small, unsized, or ``Range`` is ignored)."""

    async def __aenter__(self) -> BlobReader:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def _cursor(self, start: int, end: int | None, *, widen: bool = False) -> _Cursor:
        return _Cursor(
            self._client, self._registry, self._repository, self._digest, start, end, widen=widen
        )

    async def chunks(self) -> AsyncIterator[bytes]:
        size, ranged = self._size, self._ranged
        if size is None or ranged.streams < 2 or size < ranged.threshold:
            async for chunk in self._cursor(0, None).chunks():
                yield chunk
            return
        part = ranged.part_for(size)
        head = self._cursor(0, part, widen=True)
        rest = head.chunks()
        async with contextlib.aclosing(rest):
            first = await anext(rest, b"")
            if not head.honours_range:
                log.debug("%s ignores Range: one stream for %s", self._registry, self._digest)
                if first:
                    yield first
                async for chunk in rest:
                    yield chunk
                return
            async for chunk in self._parallel(size, part, first, rest):
                yield chunk

    async def _parallel(
        self, size: int, part: int, first: bytes, rest: AsyncGenerator[bytes, None]
    ) -> AsyncIterator[bytes]:
        starts = range(0, size, part)
        window = _Window(len(starts), min(len(starts), 2 * self._ranged.streams))
        spool = self._spool = await asyncio.to_thread(self._open_spool)
        fd = spool.fileno()
        claims = itertools.count(1)  # part 0 is the head's, already open

        async def fill(k: int, chunks: AsyncGenerator[bytes, None], pending: bytes) -> None:
            """Write part ``k`` into its slot, a MiB at a time, telling the reader as it goes."""
            offset = (k % window.slots) * part
            buffer = bytearray(pending)
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    buffer += chunk
                    if len(buffer) >= _CHUNK:
                        await put(k, offset, bytes(buffer))
                        buffer.clear()
            if buffer:
                await put(k, offset, bytes(buffer))

        async def put(k: int, offset: int, data: bytes) -> None:
            await asyncio.to_thread(os.pwrite, fd, data, offset + window.filled[k])
            async with window.changed:
                window.filled[k] += len(data)
                window.changed.notify_all()

        async def worker(head: bool) -> None:
            try:
                if head:
                    await fill(0, rest, first)
                while (k := next(claims)) < window.count:
                    async with window.changed:
                        while k >= window.handed_on + window.slots:
                            await window.changed.wait()
                    start = starts[k]
                    cursor = self._cursor(start, min(start + part, size))
                    await fill(k, cursor.chunks(), b"")
            except Exception as exc:
                async with window.changed:
                    window.failure = window.failure or exc
                    window.changed.notify_all()

        self.streams_used = min(self._ranged.streams, window.count)
        self._tasks = [asyncio.create_task(worker(head=i == 0)) for i in range(self.streams_used)]
        try:
            for k, start in enumerate(starts):
                length = min(part, size - start)
                offset = (k % window.slots) * part
                done = 0
                while done < length:
                    async with window.changed:
                        while window.filled[k] <= done and window.failure is None:
                            await window.changed.wait()
                        if window.filled[k] <= done and window.failure is not None:
                            raise window.failure
                        have = window.filled[k]
                    while done < have:
                        data = await asyncio.to_thread(
                            os.pread, fd, min(_CHUNK, have - done), offset + done
                        )
                        done += len(data)
                        yield data
                async with window.changed:
                    window.handed_on = k + 1
                    window.changed.notify_all()
        finally:
            await self.aclose()

    def _open_spool(self) -> IO[bytes]:
        directory = self._ranged.spool_dir
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(prefix="blob-", dir=directory)
