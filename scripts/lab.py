#!/usr/bin/env python3
"""The lab: real local parts for tests, benchmarks and the demo.

DESIGN.md §3 says we test against real things we can run, not mocks. This module starts them:
one Docker daemon on a private socket and three CNCF distribution registries on 127.0.0.1
(``source`` and ``target`` anonymous, ``auth`` behind htpasswd), and it makes real images
offline (real gzip'd tar layers, a real image config, a Docker schema2 manifest) and pushes
them over the distribution API.

It is stdlib only on purpose: ``scripts/dev.sh`` runs it before the project's dependencies
are installed, and the same file is imported by ``tests/conftest.py`` and the benchmarks.

Command line::

    python scripts/lab.py up   [--root .lab]   # start detached (or reuse), print the env file
    python scripts/lab.py seed [--root .lab]   # push the demo images
    python scripts/lab.py env  [--root .lab]   # print `export K='V'` lines
    python scripts/lab.py down [--root .lab]   # stop everything
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self
from urllib.parse import urlencode, urlsplit

MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_IN_TOTO = "application/vnd.in-toto+json"
MEDIA_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MANIFEST_ACCEPT = ", ".join(
    (MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_MANIFEST_LIST, MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX)
)

AUTH_USER = "mirror"
# Fixed timestamps keep generated images byte-for-byte reproducible: same specs, same digest.
_CREATED = "2024-01-01T00:00:00Z"
_MTIME = 1704067200
_CACHE_FORMAT = "v1"  # bump when the layer layout changes, so stale cache entries are ignored
_CHUNK = 1 << 20
_HELLO = b"Hello from the hub-mirror-bot lab.\n"
# A unix socket path must fit in sun_path (108 bytes). containerd puts sockets ~35 characters
# below dockerd's exec-root, so a runtime dir longer than this moves to a short /tmp dir.
_MAX_RUNTIME_DIR = 60


class LabError(RuntimeError):
    """The lab could not start, or a part of it misbehaved."""


class RegistryError(LabError):
    """A registry answered with an unexpected HTTP status (kept in ``status`` for tests)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------
# Images: real layers, config and manifest, built offline and pushed over the distribution API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """One layer: a file of ``size`` pseudo-random bytes drawn from ``seed``.

    Random bytes do not compress, so the blob is about ``size`` bytes on the wire: what a
    benchmark needs. The same spec always gives the same blob, so pushes are reproducible.
    """

    size: int
    seed: int


@dataclass(frozen=True)
class _Blob:
    path: Path
    digest: str  # sha256 of the gzip'd bytes: the blob digest
    diff_id: str  # sha256 of the uncompressed tar: rootfs.diff_ids
    size: int


def default_cache_dir() -> Path:
    """Where generated layers are kept (``LAB_CACHE_DIR``, else the user's cache directory).

    Generating a 1 GiB layer takes ~20 s (gzip is the cost); a benchmark re-pushes it in seconds.
    """
    explicit = os.environ.get("LAB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hub-mirror-bot" / "lab-layers"


class _LayerWriter:
    """Hashes the tar stream, gzips it (level 1) and hashes/writes the result, in one pass."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._deflate = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip, mtime 0
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.tar_size = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self.diff.update(data)
        self.tar_size += len(data)
        self._emit(self._deflate.compress(data))

    def close(self) -> None:
        self._emit(self._deflate.flush())

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob.update(data)
            self.size += len(data)
            self._out.write(data)


def _tar_member(out: _LayerWriter, name: str, *, size: int = 0, directory: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = 0 if directory else size
    info.mtime = _MTIME
    info.uname = info.gname = "root"
    out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))


def _tar_pad(out: _LayerWriter, size: int) -> None:
    remainder = size % tarfile.BLOCKSIZE
    if remainder:
        out.write(b"\0" * (tarfile.BLOCKSIZE - remainder))


def _write_layer(out: _LayerWriter, spec: LayerSpec, with_hello: bool) -> None:
    # The tar is written by hand (not tarfile.addfile) to stream 1 MiB chunks straight into
    # zlib: constant memory, and no 16 KiB copy loop on the hot path.
    if with_hello:
        _tar_member(out, "hello", size=len(_HELLO))
        out.write(_HELLO)
        _tar_pad(out, len(_HELLO))
    folder = f"layer-{spec.seed}"
    _tar_member(out, folder + "/", directory=True)
    _tar_member(out, f"{folder}/data.bin", size=spec.size)
    rng = random.Random(spec.seed)
    left = spec.size
    while left:
        n = min(left, _CHUNK)
        out.write(rng.randbytes(n))
        left -= n
    _tar_pad(out, spec.size)
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))  # end-of-archive marker
    _tar_pad_record(out)


def _tar_pad_record(out: _LayerWriter) -> None:
    remainder = out.tar_size % tarfile.RECORDSIZE  # as tarfile pads, so `tar` tools are happy
    if remainder:
        out.write(b"\0" * (tarfile.RECORDSIZE - remainder))


def _layer_blob(spec: LayerSpec, with_hello: bool, cache_dir: Path) -> _Blob:
    """The layer's gzip blob on disk, generated once per (size, seed, hello) and then reused."""
    if spec.size < 0:
        raise ValueError(f"layer size must be >= 0, not {spec.size}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{_CACHE_FORMAT}-{spec.size}-{spec.seed}-{'h' if with_hello else 'n'}"
    path, meta_path = cache_dir / f"{stem}.tar.gz", cache_dir / f"{stem}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        meta = json.loads(meta_path.read_text())
        if path.stat().st_size == meta["size"]:
            return _Blob(path, meta["digest"], meta["diff_id"], meta["size"])
    # Write to temporary names and rename: concurrent test runs share the cache safely.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as raw:
            writer = _LayerWriter(raw)
            _write_layer(writer, spec, with_hello)
            writer.close()
        blob = _Blob(
            path,
            f"sha256:{writer.blob.hexdigest()}",
            f"sha256:{writer.diff.hexdigest()}",
            writer.size,
        )
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; the cache may be shared
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    meta_text = json.dumps({"digest": blob.digest, "diff_id": blob.diff_id, "size": blob.size})
    fd, tmp_meta = tempfile.mkstemp(prefix=f".{stem}.", dir=cache_dir)
    with os.fdopen(fd, "w") as handle:
        handle.write(meta_text)
    os.chmod(tmp_meta, 0o644)
    os.replace(tmp_meta, meta_path)
    return blob


def _basic(user: str | None, password: str | None) -> dict[str, str]:
    if user is None and password is None:
        return {}
    token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _http(
    registry: str,
    method: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | BinaryIO | None = None,
    user: str | None = None,
    password: str | None = None,
    expect: Sequence[int] = (200,),
    timeout: float = 120.0,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One plain-HTTP request to a lab registry; ``target`` is a path or an absolute URL.

    http.client rather than urllib: no proxy variables get in the way of 127.0.0.1, a file
    body is streamed in 1 MiB blocks, and a 401 is just a status, not an exception.
    Basic credentials go on every request (registry 2.8 htpasswd has no token dance).
    """
    host, path = registry, target
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        host, path = parts.netloc, parts.path + (f"?{parts.query}" if parts.query else "")
    all_headers = {**_basic(user, password), **(headers or {})}
    conn = http.client.HTTPConnection(host, timeout=timeout, blocksize=_CHUNK)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        data = b"" if method == "HEAD" else response.read()
        if response.status not in expect:
            detail = data[:300].decode("utf-8", "replace").strip()
            raise RegistryError(
                f"{method} http://{host}{path}: HTTP {response.status} {detail}",
                response.status,
            )
        return response.status, response.headers, data
    finally:
        conn.close()


def _push_blob(
    registry: str,
    repository: str,
    digest: str,
    size: int,
    body: bytes | Path,
    user: str | None,
    password: str | None,
) -> None:
    with contextlib.suppress(RegistryError):
        _http(registry, "HEAD", f"/v2/{repository}/blobs/{digest}", user=user, password=password)
        return  # already there
    _, headers, _ = _http(
        registry,
        "POST",
        f"/v2/{repository}/blobs/uploads/",
        headers={"Content-Length": "0"},
        expect=(202,),
        user=user,
        password=password,
    )
    location = headers.get("Location")
    if not location:
        raise LabError(f"{registry}: upload started without a Location header")
    location += ("&" if "?" in location else "?") + urlencode({"digest": digest})
    put_headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    with contextlib.ExitStack() as stack:
        data = stack.enter_context(body.open("rb")) if isinstance(body, Path) else body
        _http(
            registry,
            "PUT",
            location,
            headers=put_headers,
            body=data,
            expect=(201,),
            user=user,
            password=password,
        )


def _put_manifest(
    registry: str,
    repository: str,
    reference: str | None,
    manifest: bytes,
    media_type: str,
    user: str | None,
    password: str | None,
) -> str:
    digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
    _, headers, _ = _http(
        registry,
        "PUT",
        f"/v2/{repository}/manifests/{reference or digest}",
        headers={"Content-Type": media_type},
        body=manifest,
        expect=(201,),
        user=user,
        password=password,
    )
    answered = headers.get("Docker-Content-Digest")
    if answered and answered != digest:
        raise LabError(f"{registry}/{repository}: registry says {answered}, we sent {digest}")
    return digest


def os_cpu_count() -> int:
    """CPU count (a function because ``push_image`` shadows the ``os`` module by its argument)."""
    return os.cpu_count() or 1


def push_image(
    registry: str,
    repository: str,
    tag: str | None,
    layers: Sequence[LayerSpec],
    *,
    user: str | None = None,
    password: str | None = None,
    architecture: str = "amd64",
    os: str = "linux",  # shadows the module inside: the image config's own field name
    variant: str | None = None,
    cmd: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    oci: bool = False,
) -> str:
    """Build a real image offline and push it to ``registry/repository:tag``; return its digest.

    Each layer is a gzip'd tar (``/layer-SEED/data.bin``; the first layer also has ``/hello``),
    generated once into ``cache_dir`` and streamed from disk, so 1 GiB layers cost no memory.
    ``tag=None`` pushes by digest only (for the children of an index, see ``push_index``).
    ``oci=True`` writes OCI media types instead of Docker schema2 ones.
    The same arguments always give the same manifest digest.
    """
    directory = cache_dir or default_cache_dir()
    workers = max(1, min(len(layers), os_cpu_count()))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        # zlib and randbytes release the GIL for large buffers: layers build in parallel.
        blobs = list(
            pool.map(lambda item: _layer_blob(item[1], item[0] == 0, directory), enumerate(layers))
        )
    image_config: dict[str, Any] = {
        "architecture": architecture,
        "os": os,
        "created": _CREATED,
        "config": {
            "Cmd": list(cmd) if cmd is not None else ["cat", "/hello"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [blob.diff_id for blob in blobs]},
        "history": [
            {"created": _CREATED, "created_by": f"lab.py layer size={spec.size} seed={spec.seed}"}
            for spec in layers
        ],
    }
    if variant:
        image_config["variant"] = variant
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
    for blob in blobs:
        _push_blob(registry, repository, blob.digest, blob.size, blob.path, user, password)
    _push_blob(registry, repository, config_digest, len(config_bytes), config_bytes, user, password)
    manifest_type = MEDIA_OCI_MANIFEST if oci else MEDIA_DOCKER_MANIFEST
    layer_type = MEDIA_OCI_LAYER if oci else MEDIA_DOCKER_LAYER
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": MEDIA_OCI_CONFIG if oci else MEDIA_DOCKER_CONFIG,
            "size": len(config_bytes),
            "digest": config_digest,
        },
        "layers": [
            {"mediaType": layer_type, "size": blob.size, "digest": blob.digest} for blob in blobs
        ],
    }
    manifest_bytes = json.dumps(manifest, indent=3).encode()
    return _put_manifest(registry, repository, tag, manifest_bytes, manifest_type, user, password)


def _push_attestation(
    registry: str, repository: str, subject: str, user: str | None, password: str | None
) -> dict[str, Any]:
    """An in-toto attestation manifest for ``subject``, as BuildKit attaches to an OCI index;
    returns its index entry (platform ``unknown/unknown``, annotated with what it attests)."""
    statement = json.dumps(
        {"_type": "https://in-toto.io/Statement/v0.1", "subject": [{"digest": subject}]},
        sort_keys=True,
    ).encode()
    layer_digest = f"sha256:{hashlib.sha256(statement).hexdigest()}"
    _push_blob(registry, repository, layer_digest, len(statement), statement, user, password)
    config = json.dumps(
        {"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers"}},
        sort_keys=True,
    ).encode()
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    _push_blob(registry, repository, config_digest, len(config), config, user, password)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_OCI_CONFIG, "size": len(config), "digest": config_digest},
        "layers": [
            {
                "mediaType": MEDIA_IN_TOTO,
                "size": len(statement),
                "digest": layer_digest,
                "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
            }
        ],
    }
    raw = json.dumps(manifest, indent=2).encode()
    digest = _put_manifest(registry, repository, None, raw, MEDIA_OCI_MANIFEST, user, password)
    return {
        "mediaType": MEDIA_OCI_MANIFEST,
        "size": len(raw),
        "digest": digest,
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.digest": subject,
            "vnd.docker.reference.type": "attestation-manifest",
        },
    }


def push_artifact(
    registry: str,
    repository: str,
    tag: str | None,
    layers: Sequence[tuple[str, bytes]],
    *,
    config: tuple[str, bytes] = (MEDIA_OCI_EMPTY, b"{}"),
    artifact_type: str | None = None,
    subject: str | None = None,
    user: str | None = None,
    password: str | None = None,
) -> str:
    """Push an OCI artifact (what oras, cosign and helm push): ``layers`` as (media type,
    bytes), a config, optionally an ``artifactType`` and a ``subject`` (a manifest digest of
    ``repository``: the artifact then refers to it). Returns the manifest digest."""
    descriptors = []
    for media_type, data in [config, *layers]:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        _push_blob(registry, repository, digest, len(data), data, user, password)
        descriptors.append({"mediaType": media_type, "size": len(data), "digest": digest})
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST}
    if artifact_type:
        manifest["artifactType"] = artifact_type
    manifest["config"] = descriptors[0]
    manifest["layers"] = descriptors[1:]
    if subject:
        raw, media_type = pull_manifest(registry, repository, subject, user, password)
        manifest["subject"] = {"mediaType": media_type, "size": len(raw), "digest": subject}
    data = json.dumps(manifest, indent=2).encode()
    return _put_manifest(registry, repository, tag, data, MEDIA_OCI_MANIFEST, user, password)


def push_index(
    registry: str,
    repository: str,
    tag: str | None,
    children: Sequence[str],
    *,
    user: str | None = None,
    password: str | None = None,
    oci: bool = False,
    attestations: bool = False,
) -> str:
    """Push a Docker manifest list over manifests already in ``repository``; return its digest.

    Each child's platform is read from its own config, so a multi-arch image is just
    ``push_image(..., architecture=A, tag=None)`` per platform, then this. ``oci=True`` makes
    an OCI index instead; ``attestations=True`` adds an attestation manifest per child.
    """
    entries: list[dict[str, Any]] = []
    for child in children:
        raw, media_type = pull_manifest(registry, repository, child, user, password)
        config_digest = json.loads(raw)["config"]["digest"]
        config = json.loads(get_blob(registry, repository, config_digest, user, password))
        platform = {"architecture": config["architecture"], "os": config["os"]}
        if config.get("variant"):
            platform["variant"] = config["variant"]
        entries.append(
            {
                "mediaType": media_type,
                "size": len(raw),
                "digest": f"sha256:{hashlib.sha256(raw).hexdigest()}",
                "platform": platform,
            }
        )
    if attestations:
        subjects = [entry["digest"] for entry in entries]
        entries += [_push_attestation(registry, repository, s, user, password) for s in subjects]
    index_type = MEDIA_OCI_INDEX if oci else MEDIA_DOCKER_MANIFEST_LIST
    index = {"schemaVersion": 2, "mediaType": index_type, "manifests": entries}
    return _put_manifest(
        registry,
        repository,
        tag,
        json.dumps(index, indent=3).encode(),
        index_type,
        user,
        password,
    )


def pull_manifest(
    registry: str,
    repository: str,
    reference: str,
    user: str | None = None,
    password: str | None = None,
) -> tuple[bytes, str]:
    """The manifest's exact bytes and media type (tests compare copies byte for byte)."""
    _, headers, data = _http(
        registry,
        "GET",
        f"/v2/{repository}/manifests/{reference}",
        headers={"Accept": MANIFEST_ACCEPT},
        user=user,
        password=password,
    )
    media_type = headers.get("Content-Type") or json.loads(data).get("mediaType", "")
    return data, media_type.split(";")[0].strip()


def get_blob(
    registry: str,
    repository: str,
    digest: str,
    user: str | None = None,
    password: str | None = None,
) -> bytes:
    """A (small) blob's bytes, verified against its digest. For configs, not for big layers."""
    _, _, data = _http(
        registry, "GET", f"/v2/{repository}/blobs/{digest}", user=user, password=password
    )
    actual = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if actual != digest:
        raise LabError(f"{registry}/{repository}: blob {digest} arrived as {actual}")
    return data


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass
class _Proc:
    """A process we started; ``marker`` must be in its command line (guards against pid reuse)."""

    name: str
    pid: int
    marker: str
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)


def _cmdline(pid: int) -> str | None:
    """The process's command line, or None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            if handle.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return None
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode("utf-8", "replace")
        )
    except (OSError, IndexError):
        return None


def _alive(proc: _Proc) -> bool:
    if proc.popen is not None:
        # Our own child: trust poll(). (Right after fork its cmdline is still ours, not the
        # marker's, so the /proc check below would wrongly call it dead.)
        return proc.popen.poll() is None
    line = _cmdline(proc.pid)
    return line is not None and proc.marker in line


def _wait_gone(procs: Sequence[_Proc], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not any(_alive(proc) for proc in procs):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _signal(proc: _Proc, sig: signal.Signals, *, group: bool) -> None:
    if not _alive(proc):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)  # started with start_new_session: pgid == pid
        else:
            os.kill(proc.pid, sig)


def _stop_proc(proc: _Proc, *, grace: float) -> None:
    """SIGTERM (the process only: dockerd must shut containerd down itself), then SIGKILL."""
    _signal(proc, signal.SIGTERM, group=False)
    if not _wait_gone([proc], grace):
        _signal(proc, signal.SIGKILL, group=True)
        _wait_gone([proc], 5)
    if proc.popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(1)


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process but this one."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        line = _cmdline(int(entry.name))
        try:
            stat = (entry / "stat").read_bytes().rsplit(b")", 1)[-1].split()
            parent = int(stat[1])
        except (OSError, IndexError, ValueError):
            continue
        if line is not None:
            table[int(entry.name)] = (parent, line)
    return table


def _leftovers(text: str) -> tuple[list[int], list[int]]:
    """Processes whose command line mentions ``text`` (our unique runtime dir), and their
    descendants. containerd and its shims run in sessions of their own, so they are found by
    what they were given; the containers' processes, by being the shims' children."""
    table = _process_table()
    mentioning = [pid for pid, (_, line) in table.items() if text in line]
    descendants: list[int] = []
    frontier = set(mentioning)
    while frontier:
        children = {pid for pid, (parent, _) in table.items() if parent in frontier}
        children -= set(mentioning) | set(descendants)
        descendants.extend(sorted(children))
        frontier = children
    return mentioning, descendants


def _unmount_under(path: Path) -> None:
    """Lazily unmount what dockerd left mounted below ``path`` (it bind-mounts its data-root on
    itself and only undoes that on a clean shutdown); otherwise the tree cannot be removed."""
    umount = shutil.which("umount")
    prefix = str(path)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")  # \040 etc.
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        if umount:
            subprocess.run([umount, "-l", point], check=False, capture_output=True)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the lab's and the tests' servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _need(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise LabError(f"{tool} is not installed; run `bash scripts/dev.sh setup`")
    return found


def _log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _sh_quote(value: str) -> str:
    """Always single-quoted (``'it'\\''s'``), so the env file reads the same for every value."""
    return "'" + value.replace("'", "'\\''") + "'"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


def _docker_ping(socket_path: str) -> bool:
    conn = _UnixHTTPConnection(socket_path, timeout=2)
    try:
        conn.request("GET", "/_ping")
        response = conn.getresponse()
        return response.status == 200 and response.read() == b"OK"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _registry_up(address: str) -> bool:
    try:
        status, _, _ = _http(address, "GET", "/v2/", expect=(200, 401), timeout=2)
    except (OSError, RegistryError, http.client.HTTPException):
        return False
    return status in (200, 401)


# --------------------------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------------------------


@dataclass
class Lab:
    """A running lab: a dockerd and three registries, described by their addresses.

    ``Lab.start(root)`` starts one; ``Lab.attach(root)`` finds one a ``lab.py up`` left
    running. Stop it with ``stop()`` or by using it as a context manager.
    """

    root: Path
    docker_host: str
    source: str
    target: str
    auth: str
    auth_user: str
    auth_password: str = field(repr=False)
    runtime_dir: Path
    owns_runtime_dir: bool = False
    processes: list[_Proc] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def start(cls, root: Path, *, timeout: float = 60.0) -> Lab:
        """Start everything under ``root`` and return once each part answers.

        All processes get sessions of their own and log to ``root/logs``, so they outlive a
        ``lab.py up`` that started them, and a terminal's Ctrl-C does not reach them.
        """
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        runtime_dir, owns = root / "run", False
        if len(str(runtime_dir)) > _MAX_RUNTIME_DIR:
            runtime_dir, owns = Path(tempfile.mkdtemp(prefix="lab-", dir="/tmp")), True
        runtime_dir.mkdir(exist_ok=True)
        lab = cls(
            root=root,
            docker_host=f"unix://{runtime_dir / 'docker.sock'}",
            source="",
            target="",
            auth="",
            auth_user=AUTH_USER,
            auth_password=secrets.token_urlsafe(18),
            runtime_dir=runtime_dir,
            owns_runtime_dir=owns,
        )
        try:
            lab._start_dockerd()
            lab.source = lab._start_registry("source")
            lab.target = lab._start_registry("target")
            lab.auth = lab._start_registry("auth", htpasswd=True)
            lab._wait_docker(timeout)
            lab.write_state()
        except BaseException:
            lab.stop()
            raise
        return lab

    @classmethod
    def attach(cls, root: Path) -> Lab:
        """The lab described by ``root/state.json`` (written by ``start``), not checked."""
        root = root.resolve()
        try:
            state = json.loads((root / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"no lab state in {root}: run `lab.py up --root {root}`") from exc
        return cls(
            root=root,
            docker_host=state["docker_host"],
            source=state["source"],
            target=state["target"],
            auth=state["auth"],
            auth_user=state["auth_user"],
            auth_password=state["auth_password"],
            runtime_dir=Path(state["runtime_dir"]),
            owns_runtime_dir=state["owns_runtime_dir"],
            processes=[_Proc(p["name"], p["pid"], p["marker"]) for p in state["processes"]],
        )

    def healthy(self) -> bool:
        """Every process alive, dockerd answers /_ping and every registry answers /v2/."""
        return (
            bool(self.processes)
            and all(_alive(proc) for proc in self.processes)
            and _docker_ping(self.docker_socket)
            and all(_registry_up(addr) for addr in (self.source, self.target, self.auth))
        )

    def stop(self) -> None:
        """Stop everything this lab started. Safe to call twice, or on a half-started lab."""
        if self._stopped:
            return
        self._stopped = True
        marker = str(self.runtime_dir) + "/"
        for proc in self.processes:
            # dockerd gets SIGTERM alone and time: it stops containers, then its containerd.
            _stop_proc(proc, grace=20.0 if proc.name == "dockerd" else 5.0)
        # What survived a hard dockerd kill: containerd, its shims and the containers under
        # them. The containers go first, with SIGKILL (a namespace's init ignores SIGTERM).
        mentioning, descendants = _leftovers(marker)
        for pid in descendants:
            _signal(_Proc("container", pid, ""), signal.SIGKILL, group=False)
        leftovers = [_Proc("leftover", pid, marker) for pid in mentioning]
        for proc in leftovers:
            _signal(proc, signal.SIGTERM, group=False)
        if not _wait_gone(leftovers, 5.0):
            for proc in leftovers:
                _signal(proc, signal.SIGKILL, group=False)
            _wait_gone(leftovers, 5.0)
        _unmount_under(self.root / "docker")
        _unmount_under(self.runtime_dir)
        if self.owns_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.root / "state.json").unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- description ---------------------------------------------------------------------------

    @property
    def docker_socket(self) -> str:
        """The daemon's unix socket path (``docker_host`` without ``unix://``)."""
        return self.docker_host.removeprefix("unix://")

    def env(self) -> dict[str, str]:
        """Variables that point a shell, a test or the bot at this lab."""
        return {
            "DOCKER_HOST": self.docker_host,
            "LAB_SOURCE": self.source,
            "LAB_TARGET": self.target,
            "LAB_AUTH": self.auth,
            "LAB_AUTH_USER": self.auth_user,
            "LAB_AUTH_PASSWORD": self.auth_password,
            "MIRROR_TARGET": f"{self.target}/mirror",
            "MIRROR_ALLOWED_SOURCES": (
                f"{self.source},{self.auth},docker.io,gcr.io,registry.k8s.io,quay.io,ghcr.io"
            ),
            "MIRROR_INSECURE_REGISTRIES": f"{self.source},{self.target},{self.auth}",
        }

    def env_lines(self) -> str:
        """``env()`` as ``export K='V'`` lines for a shell to source."""
        return "".join(f"export {key}={_sh_quote(value)}\n" for key, value in self.env().items())

    def write_state(self) -> None:
        """Write ``state.json`` (how to find and stop us) and ``env``; both private (0600)."""
        state = {
            "docker_host": self.docker_host,
            "source": self.source,
            "target": self.target,
            "auth": self.auth,
            "auth_user": self.auth_user,
            "auth_password": self.auth_password,
            "runtime_dir": str(self.runtime_dir),
            "owns_runtime_dir": self.owns_runtime_dir,
            "processes": [
                {"name": p.name, "pid": p.pid, "marker": p.marker} for p in self.processes
            ],
        }
        for name, text in (("state.json", json.dumps(state, indent=2)), ("env", self.env_lines())):
            path = self.root / name
            fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(path.with_suffix(".tmp"), path)

    # -- parts ---------------------------------------------------------------------------------

    def _spawn(
        self, name: str, argv: list[str], marker: str, env: dict[str, str] | None = None
    ) -> _Proc:
        log = (self.root / "logs" / f"{name}.log").open("ab")
        with log:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=self.root,
            )
        proc = _Proc(name, popen.pid, marker, popen)
        self.processes.append(proc)
        return proc

    def _start_dockerd(self) -> None:
        run = self.runtime_dir
        data_root = self.root / "docker"
        data_root.mkdir(exist_ok=True)
        config = self.root / "daemon.json"
        config.write_text("{}\n")  # not /etc/docker/daemon.json: the host's settings stay out
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        # No --storage-driver: dockerd takes the best its data root allows, overlay2 on a real
        # file system (a layer commit is a directory diff) and vfs only where overlay cannot
        # mount, e.g. inside a container. vfs copies the whole tree for every layer and
        # container, which made the image test's build cost minutes of CPU.
        self._spawn(
            "dockerd",
            [
                _need("dockerd"),
                "--host",
                self.docker_host,
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--ip-masq=false",
                "--data-root",
                str(data_root),
                "--exec-root",
                str(run / "exec"),
                "--pidfile",
                str(run / "docker.pid"),
                "--config-file",
                str(config),
                "--shutdown-timeout",
                "5",
            ],
            marker=str(run / "exec"),
            env=env,
        )

    def _wait_docker(self, timeout: float) -> None:
        proc = self.processes[0]
        deadline = time.monotonic() + timeout
        while not _docker_ping(self.docker_socket):
            if not _alive(proc):
                raise LabError(f"dockerd exited:\n{_log_tail(self.root / 'logs' / 'dockerd.log')}")
            if time.monotonic() > deadline:
                raise LabError(f"dockerd did not answer /_ping within {timeout:.0f}s")
            time.sleep(0.1)

    def start_token_registry(self, name: str, token: dict[str, str]) -> str:
        """Start one more registry behind ``auth: token`` (``token`` holds its ``realm``,
        ``service``, ``issuer`` and ``rootcertbundle``); it stops with the lab."""
        section = "auth:\n  token:\n" + "".join(
            f"    {key}: {json.dumps(value)}\n" for key, value in token.items()
        )
        address = self._start_registry(name, auth_section=section)
        self.write_state()
        return address

    def start_plain_registry(self, name: str, *, delete: bool = True) -> str:
        """Start one more registry without auth; ``delete=False`` refuses manifest deletion
        (405, as distribution does by default and Docker Hub does always); it stops with the
        lab."""
        address = self._start_registry(name, delete=delete)
        self.write_state()
        return address

    def _start_registry(
        self, name: str, *, htpasswd: bool = False, auth_section: str = "", delete: bool = True
    ) -> str:
        """Start one registry on a free port (retrying if another process grabs the port)."""
        base = self.root / "registries" / name
        (base / "data").mkdir(parents=True, exist_ok=True)
        if htpasswd:
            line = subprocess.run(
                [_need("htpasswd"), "-Bbn", self.auth_user, self.auth_password],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            (base / "htpasswd").write_text(line + "\n")
            auth_section = (
                "auth:\n  htpasswd:\n    realm: lab\n"
                f"    path: {json.dumps(str(base / 'htpasswd'))}\n"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        last_error = ""
        for _attempt in range(5):
            port = free_port()
            address = f"127.0.0.1:{port}"
            config = base / "config.yml"
            config.write_text(
                "version: 0.1\n"
                "log:\n  level: info\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {json.dumps(str(base / 'data'))}\n"
                f"  delete:\n    enabled: {'true' if delete else 'false'}\n"
                "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                f"http:\n  addr: {address}\n  secret: {secrets.token_hex(16)}\n" + auth_section
            )
            proc = self._spawn(
                name, [_need("docker-registry"), "serve", str(config)], marker=str(config), env=env
            )
            deadline = time.monotonic() + 20
            while _alive(proc) and time.monotonic() < deadline:
                if _registry_up(address):
                    return address
                time.sleep(0.05)
            last_error = _log_tail(self.root / "logs" / f"{name}.log")
            _stop_proc(proc, grace=2)
            self.processes.remove(proc)
        raise LabError(f"registry {name} did not start:\n{last_error}")


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

PG_USER = "mirror"
_PG_SERVICE_USER = "postgres"  # Debian's package makes it; the server refuses to run as root


def _pg_bindir() -> Path:
    """Debian keeps the server out of PATH, in one directory per major version."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: p.parts)
    if not found:
        raise LabError("PostgreSQL is not installed; run `bash scripts/dev.sh setup`")
    return found[-1].parent


def _as_service_user(root: Path) -> list[str]:
    """The argv prefix that runs the server unprivileged: as root (CI), it becomes Debian's
    ``postgres`` user, which is handed ``root``; as anyone else, it runs as that user."""
    if os.geteuid() != 0:
        return []
    import pwd  # Unix only, like the rest of the lab

    entry = pwd.getpwnam(_PG_SERVICE_USER)
    for path in (root, *root.rglob("*")):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return [
        _need("setpriv"),
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--clear-groups",
        "--",
    ]


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster: ``initdb`` in ``root``, listening on 127.0.0.1 on a
    free port (unix socket in ``root``), password login for :data:`PG_USER`. Durability is
    off (fsync, synchronous commit): it lives for one test session.

    As root, ``root`` is handed to Debian's ``postgres`` user, so it must be a directory of
    its own that user can reach (a fresh ``mkdtemp`` in /tmp, not one inside another).
    """

    root: Path
    port: int
    password: str = field(repr=False)
    proc: _Proc | None = field(default=None, repr=False)
    _env: dict[str, str] = field(default_factory=dict, repr=False)
    _prefix: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, root: Path, *, timeout: float = 30.0) -> Postgres:
        bindir = _pg_bindir()
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        pg = cls(root=root, port=0, password=secrets.token_urlsafe(18))
        pwfile = root / "pwfile"
        pwfile.write_text(pg.password + "\n")
        pwfile.chmod(0o600)
        prefix = _as_service_user(root)
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        data = root / "data"
        initdb = subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                PG_USER,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,
            check=False,
        )
        pwfile.unlink()
        if initdb.returncode != 0:
            raise LabError(f"initdb failed:\n{initdb.stderr.strip()}")
        pg._env, pg._prefix = env, prefix
        last_error = ""
        for _attempt in range(5):
            pg.port = free_port()
            if pg._serve(timeout):
                return pg
            last_error = _log_tail(root / "postgres.log")
        raise LabError(f"postgres did not start:\n{last_error}")

    def restart(self, *, timeout: float = 30.0) -> None:
        """Stop and start the server again on the same port (clients see it go away)."""
        self.stop()
        if not self._serve(timeout):
            raise LabError(f"postgres did not restart:\n{_log_tail(self.root / 'postgres.log')}")

    def _serve(self, timeout: float) -> bool:
        """Start the server on ``self.port``; False (and stopped) if it does not answer."""
        bindir = _pg_bindir()
        data = self.root / "data"
        with (self.root / "postgres.log").open("ab") as log:
            popen = subprocess.Popen(
                [
                    *self._prefix,
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.root}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self._env,
                cwd=self.root,
            )
        self.proc = _Proc("postgres", popen.pid, str(data), popen)
        deadline = time.monotonic() + timeout
        while _alive(self.proc) and time.monotonic() < deadline:
            if self._ready(bindir):
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def _ready(self, bindir: Path) -> bool:
        probe = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, check=False, capture_output=True).returncode == 0

    def dsn(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL with the password, for ``MIRROR_DB``."""
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database (one per test: no test sees another's rows); its URL."""
        psql = str(_pg_bindir() / "psql")
        subprocess.run(
            [psql, "-q", "-v", "ON_ERROR_STOP=1", self.dsn(), "-c", f'CREATE DATABASE "{name}"'],
            check=True,
            capture_output=True,
        )
        return self.dsn(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, not waited for), then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        _signal(proc, signal.SIGINT, group=False)
        if not _wait_gone([proc], 15.0):
            _signal(proc, signal.SIGKILL, group=True)
            _wait_gone([proc], 5.0)
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(1)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Demo and test data
# --------------------------------------------------------------------------------------------

HELLO_LAYERS = (LayerSpec(64 * 1024, 1),)
MULTI_LAYERS = (LayerSpec(1 << 20, 11), LayerSpec(2 << 20, 12), LayerSpec(3 << 20, 13))


APP_TAGS = (
    *(f"1.0.{p}" for p in range(6)),
    *(f"1.1.{p}" for p in range(6)),
    *(f"1.2.{p}" for p in range(5)),  # 1.2.5 is the tag people ask for and is not there
    *(f"1.3.{p}" for p in range(3)),
    "1.2.4-alpine",
    "1.3.0-alpine",
    "2.0.0-rc1",
    "2.0.0",
    "latest",
    "stable",
    "3f2a9c1d7e",  # a commit
    "sha256-" + "a" * 64 + ".sig",  # a signature
)
"""``library/app``'s tags: a repository with many (one manifest under each, so they cost one
request apiece), in more than one page when listed ``?n=10``."""


def push_tags(registry: str, repository: str, existing: str, tags: Sequence[str]) -> None:
    """Point more tags at the manifest ``existing`` names: many tags, no new blobs."""
    raw, media_type = pull_manifest(registry, repository, existing, None, None)
    for tag in tags:
        _put_manifest(registry, repository, tag, raw, media_type, None, None)


def seed(lab: Lab) -> None:
    """Push the demo/test images: ``library/hello:1.0`` and ``library/multi:1.0`` (3 layers)
    to ``lab.source``, and ``library/hello:1.0`` to ``lab.auth`` (with credentials).
    ``library/app`` on ``lab.source`` has :data:`APP_TAGS`, all one small image."""
    push_image(lab.source, "library/hello", "1.0", HELLO_LAYERS)
    push_image(lab.source, "library/app", APP_TAGS[0], HELLO_LAYERS)
    push_tags(lab.source, "library/app", APP_TAGS[0], APP_TAGS[1:])
    push_image(lab.source, "library/multi", "1.0", MULTI_LAYERS)
    push_image(
        lab.auth,
        "library/hello",
        "1.0",
        HELLO_LAYERS,
        user=lab.auth_user,
        password=lab.auth_password,
    )


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"{what} in {time.monotonic() - started:.1f}s", file=sys.stderr)


def _cmd_up(root: Path) -> None:
    if (root / "state.json").exists():
        existing = Lab.attach(root)
        if existing.healthy():
            existing.write_state()
            print(root.resolve() / "env")
            return
        print("lab state found but not healthy: stopping its leftovers", file=sys.stderr)
        existing.stop()
    with _timed("lab started"):
        lab = Lab.start(root)
    print(root.resolve() / "env")
    for proc in lab.processes:
        proc.popen = None  # detach: they keep running after we exit


def _cmd_seed(root: Path) -> None:
    lab = Lab.attach(root)
    if not lab.healthy():
        raise LabError(f"the lab in {root} is not running: `lab.py up --root {root}`")
    with _timed("lab seeded"):
        seed(lab)


def _cmd_down(root: Path) -> None:
    if not (root / "state.json").exists():
        print(f"no lab running in {root}", file=sys.stderr)
        return
    Lab.attach(root).stop()
    with contextlib.suppress(FileNotFoundError):
        (root.resolve() / "env").unlink()


def _cmd_env(root: Path) -> None:
    sys.stdout.write(Lab.attach(root).env_lines())


def main(argv: Sequence[str] | None = None) -> int:
    """``lab.py {up,seed,env,down} [--root DIR]``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="lab.py", description="Start, seed, stop the lab.")
    parser.add_argument("command", choices=("up", "seed", "env", "down"))
    parser.add_argument("--root", type=Path, default=Path(".lab"), help="default: .lab")
    args = parser.parse_args(argv)
    commands = {"up": _cmd_up, "seed": _cmd_seed, "env": _cmd_env, "down": _cmd_down}
    try:
        commands[args.command](args.root)
    except LabError as exc:
        print(f"lab.py {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
