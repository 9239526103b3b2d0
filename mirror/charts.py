"""The images a Helm chart deploys, read from its archive in memory (issue 27).

A chart in a registry is an OCI artifact (:mod:`mirror.artifacts` says which); the registry
engine copies it exactly like any other. What the chart deploys is in its archive: the
``artifacthub.io/images`` annotation of ``Chart.yaml`` when the chart lists them there, else the
image blocks of its default ``values.yaml`` and of its subcharts' (``image: repo:tag``;
``repository`` + ``tag``, an empty tag meaning the chart's ``appVersion``; ``registry``;
``global.imageRegistry``; ``digest``; ingress-nginx's ``registry`` + ``image``). Where each block
sits in the values is kept, so :func:`mirror_values` can write a values file that points every
image at the mirror.

The archive comes from strangers, so it is read in memory with hard limits (compressed size,
unpacked size, file size, member count, subchart depth), nothing is written to disk, and no
path in it is trusted: a link, a device, an absolute path or a ``..`` refuses the whole chart.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mirror import tags as tag_rank
from mirror.artifacts import ArtifactKind, manifest_kind
from mirror.errors import ChartUnreadable, DigestMismatch, MirrorError
from mirror.reference import ImageRef, parse_reference, quote
from mirror.text import Text

if TYPE_CHECKING:
    from mirror.engines.registry.client import Manifest, RegistryClient

CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
IMAGES_ANNOTATION = "artifacthub.io/images"

MAX_ARCHIVE_BYTES = 16 << 20
"""A chart archive larger than this is no chart anybody meant (Helm's own charts are KiBs)."""
MAX_UNPACKED_BYTES = 64 << 20
"""Everything unpacked, subcharts' archives included: a gzip bomb stops here."""
MAX_FILE_BYTES = 4 << 20
"""One ``Chart.yaml``, ``values.yaml`` or subchart archive."""
MAX_MEMBERS = 10_000
MAX_DEPTH = 5
"""Subcharts of subcharts, this deep at most."""

Style = Literal["string", "repository", "image", "name"]
"""How a values block names its image: ``image: repo:tag``; ``repository`` (+ ``registry``,
``tag``, ``digest``); ingress-nginx's ``image`` key for the path; ``name`` for the path."""


@dataclass(frozen=True)
class ImageBlock:
    """Where a chart's values set one image, so a values file can point it elsewhere."""

    path: tuple[str, ...]
    """Keys from the top of the (parent) chart's values: ``("controller", "image")``."""
    style: Style
    has_registry: bool = False
    has_digest: bool = False


@dataclass(frozen=True)
class ChartImage:
    reference: str
    """As the chart sets it (``registry.k8s.io/ingress-nginx/controller:v1.9.4@sha256:…``)."""
    chart: str
    """The chart or subchart that deploys it."""
    blocks: tuple[ImageBlock, ...] = ()
    """Where the values set it; empty when only the annotation names it."""


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    app_version: str | None
    images: tuple[ChartImage, ...]
    from_annotation: bool
    """The list is the chart's ``artifacthub.io/images`` annotation (else its values')."""
    global_registry: bool = False
    """Its default values set ``global.imageRegistry`` (the values file sets it too)."""
    disabled: tuple[str, ...] = ()
    """Subcharts its default values turn off by their ``condition``: not read."""


# -- the archive --------------------------------------------------------------------------------


def _refuse(sentence: Text) -> ChartUnreadable:
    return ChartUnreadable(sentence)


@dataclass
class _Budget:
    """Bytes still allowed to unpack, shared by a chart and every subchart archive in it."""

    left: int = MAX_UNPACKED_BYTES


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _Capped(io.RawIOBase):
    """A reader that refuses to yield more than the budget: decompression stops there."""

    def __init__(self, inner: _Readable, budget: _Budget) -> None:
        self._inner = inner
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inner.read(min(len(view), self._budget.left + 1))
        if len(data) > self._budget.left:
            raise _refuse(
                Text(
                    "The chart unpacks to more than {size} MiB; that is no chart I will read.",
                    size=MAX_UNPACKED_BYTES >> 20,
                )
            )
        self._budget.left -= len(data)
        view[: len(data)] = data
        return len(data)


def _safe_name(name: str) -> str:
    """The member's path, or a refusal when it could point outside the archive."""
    normal = posixpath.normpath(name)
    if (
        name.startswith(("/", "\\"))
        or "\\" in name
        or normal == ".."
        or normal.startswith("../")
        or any(part == ".." for part in name.split("/"))
        or (len(name) > 1 and name[1] == ":")
    ):
        raise _refuse(
            Text("The chart archive holds a path outside itself ({path}).", path=quote(name))
        )
    return normal


def _wanted(name: str) -> bool:
    base = posixpath.basename(name)
    return base in ("Chart.yaml", "values.yaml") or (
        base.endswith(".tgz") and posixpath.basename(posixpath.dirname(name)) == "charts"
    )


def _members(data: bytes, budget: _Budget) -> dict[str, bytes]:
    """The files worth reading (``Chart.yaml``, ``values.yaml``, ``charts/*.tgz``), by path."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise _refuse(
            Text(
                "The chart archive is larger than {size} MiB; that is no chart I will read.",
                size=MAX_ARCHIVE_BYTES >> 20,
            )
        )
    files: dict[str, bytes] = {}
    stream = io.BufferedReader(_Capped(gzip.GzipFile(fileobj=io.BytesIO(data)), budget))
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for count, member in enumerate(archive, 1):
                if count > MAX_MEMBERS:
                    raise _refuse(
                        Text("The chart archive holds more than {count} files.", count=MAX_MEMBERS)
                    )
                name = _safe_name(member.name)
                if member.issym() or member.islnk():
                    raise _refuse(
                        Text("The chart archive holds a link ({path}).", path=quote(member.name))
                    )
                if member.isdir():
                    continue
                if not member.isfile():
                    raise _refuse(
                        Text(
                            "The chart archive holds a device or pipe ({path}).",
                            path=quote(member.name),
                        )
                    )
                if not _wanted(name):
                    continue
                if member.size > MAX_FILE_BYTES:
                    raise _refuse(
                        Text(
                            "{path} in the chart is larger than {size} MiB.",
                            path=quote(name),
                            size=MAX_FILE_BYTES >> 20,
                        )
                    )
                extracted = archive.extractfile(member)
                if extracted is not None:
                    files[name] = extracted.read()
    except ChartUnreadable:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _refuse(Text("That is not a chart archive (a gzip'd tar) I can read.")) from exc
    return files


# -- the charts in it ---------------------------------------------------------------------------


@dataclass
class _Node:
    """A chart or subchart: its Chart.yaml, default values, and subcharts."""

    meta: dict[str, Any]
    values: dict[str, Any]
    children: list[_Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or "")


def _yaml(data: bytes, what: str) -> Any:
    import yaml  # only charts and pasted manifests need it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(data, Loader=loader)  # a safe loader, C when built with it
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError):
        raise _refuse(Text("The chart's {file} is not YAML I can read.", file=what)) from None


def _node(data: bytes, budget: _Budget, depth: int) -> _Node:
    files = _members(data, budget)
    roots = {name.split("/", 1)[0] for name in files if name.count("/") == 1}
    chart_roots = [root for root in sorted(roots) if f"{root}/Chart.yaml" in files]
    if not chart_roots:
        raise _refuse(Text("The archive holds no Chart.yaml: it is not a Helm chart."))
    return _tree(files, chart_roots[0], budget, depth)


def _tree(files: Mapping[str, bytes], prefix: str, budget: _Budget, depth: int) -> _Node:
    meta = _yaml(files[f"{prefix}/Chart.yaml"], "Chart.yaml")
    values = _yaml(files.get(f"{prefix}/values.yaml", b""), "values.yaml") or {}
    node = _Node(meta if isinstance(meta, dict) else {}, values if isinstance(values, dict) else {})
    if depth >= MAX_DEPTH:
        return node
    below = f"{prefix}/charts/"
    unpacked = sorted(
        {name[len(below) :].split("/", 1)[0] for name in files if name.startswith(below)}
    )
    for entry in unpacked:
        path = below + entry
        if f"{path}/Chart.yaml" in files:
            node.children.append(_tree(files, path, budget, depth + 1))
        elif entry.endswith(".tgz") and path in files:
            node.children.append(_node(files[path], budget, depth + 1))
    return node


def read_chart(data: bytes) -> Chart:
    """The chart in ``data`` (a ``.tgz`` as ``helm package`` writes it) and what it deploys."""
    root = _node(data, _Budget(), 0)
    images: dict[str, tuple[str, str, list[ImageBlock]]] = {}
    disabled: list[str] = []
    global_registry = _global_registry(root.values)
    for key, reference, chart, block in _images(root, root.values, (), disabled):
        found = images.setdefault(key, (reference, chart, []))
        found[2].append(block)
    annotated = _annotated(root.meta)
    if annotated is not None:
        listed = []
        for reference in annotated:
            blocks = _blocks_for(reference, images)
            listed.append(ChartImage(reference, root.name, tuple(blocks)))
        chosen = tuple(listed)
    else:
        chosen = tuple(
            ChartImage(reference, chart, tuple(blocks))
            for reference, chart, blocks in images.values()
        )
    app_version = root.meta.get("appVersion")
    return Chart(
        root.name,
        str(root.meta.get("version") or ""),
        str(app_version) if app_version is not None else None,
        chosen,
        annotated is not None,
        global_registry,
        tuple(disabled),
    )


def _blocks_for(
    reference: str, found: Mapping[str, tuple[str, str, list[ImageBlock]]]
) -> list[ImageBlock]:
    """Where the values set an image the annotation lists: the block naming exactly it, else
    the one block of the same repository (the tag a template derives, ``v`` + appVersion,
    differs from the values' empty tag)."""
    key = _key(reference)
    if key is None:
        return []
    if key in found:
        return found[key][2]
    name = parse_reference(reference).name
    alike = [blocks for k, (_r, _c, blocks) in found.items() if parse_reference(k).name == name]
    return alike[0] if len(alike) == 1 else []


def _annotated(meta: Mapping[str, Any]) -> list[str] | None:
    """The references ``artifacthub.io/images`` lists (a YAML list in a string), or None."""
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict) or not isinstance(annotations.get(IMAGES_ANNOTATION), str):
        return None
    listed = _yaml(annotations[IMAGES_ANNOTATION].encode(), IMAGES_ANNOTATION)
    if not isinstance(listed, list):
        return None
    found = [
        entry["image"].strip()
        for entry in listed
        if isinstance(entry, dict) and isinstance(entry.get("image"), str)
    ]
    return [ref for ref in dict.fromkeys(found) if _key(ref) is not None]


def _key(reference: str) -> str | None:
    try:
        return str(parse_reference(reference))
    except MirrorError:
        return None


def _global_registry(values: Mapping[str, Any]) -> bool:
    found = values.get("global")
    return isinstance(found, dict) and bool(found.get("imageRegistry"))


def _merged(defaults: Any, given: Any) -> Any:
    """Helm's coalescing: the parent's values for a subchart over the subchart's defaults."""
    if not isinstance(defaults, dict) or not isinstance(given, dict):
        return given if given is not None else defaults
    out = dict(defaults)
    for key, value in given.items():
        out[key] = _merged(defaults.get(key), value)
    return out


def _condition(values: Mapping[str, Any], condition: Any) -> bool:
    """Whether a dependency is on: the first of its ``condition`` paths that names a bool."""
    if not isinstance(condition, str):
        return True
    for path in condition.split(","):
        node: Any = values
        for part in path.strip().split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, bool):
            return node
    return True


def _images(
    node: _Node, values: dict[str, Any], prefix: tuple[str, ...], disabled: list[str]
) -> Iterator[tuple[str, str, str, ImageBlock]]:
    """Every image block of ``node``'s values and its enabled subcharts', as (key, reference,
    chart, block), with each subchart's values as its parent sets them."""
    app_version = node.meta.get("appVersion")
    tag_default = str(app_version) if app_version not in (None, "") else None
    registry = (
        values.get("global", {}).get("imageRegistry")
        if isinstance(values.get("global"), dict)
        else None
    )
    for path, reference, block in _blocks(values, tag_default, registry or None):
        key = _key(reference)
        if key is not None:
            yield key, reference, node.name, ImageBlock(prefix + path, *block)
    dependencies = [d for d in node.meta.get("dependencies") or () if isinstance(d, dict)]
    for child in node.children:
        uses = [d for d in dependencies if d.get("name") == child.name] or [{"name": child.name}]
        for use in uses:
            key = str(use.get("alias") or use.get("name") or child.name)
            if not _condition(values, use.get("condition")):
                disabled.append(key)
                continue
            given = values.get(key) if isinstance(values.get(key), dict) else {}
            child_values = _merged(child.values, given)
            child_values["global"] = _merged(
                child.values.get("global") or {}, values.get("global") or {}
            )
            yield from _images(child, child_values, (*prefix, key), disabled)


_REPOSITORY_KEYS = ("repository", "image", "name")


def _blocks(
    values: Mapping[str, Any], tag_default: str | None, global_registry: str | None
) -> Iterator[tuple[tuple[str, ...], str, tuple[Style, bool, bool]]]:
    """Image blocks anywhere in the values (not lists, not ``global``), each once."""
    stack: list[tuple[tuple[str, ...], Any]] = [
        ((str(k),), v) for k, v in reversed(list(values.items())) if k != "global"
    ]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            found = _block(path, node, tag_default, global_registry)
            if found is not None:
                yield path, found[0], found[1]
                continue
            stack.extend(((*path, str(k)), v) for k, v in reversed(list(node.items())))
        elif _string_image(path, node):
            yield path, str(node).strip(), ("string", False, False)


def _string_image(path: tuple[str, ...], node: Any) -> bool:
    """``image: repo:tag`` (any key ending in ``image``), not a template."""
    return (
        isinstance(node, str)
        and path[-1].lower().endswith("image")
        and ("/" in node or ":" in node)
        and "{{" not in node
    )


def _block(
    path: tuple[str, ...],
    node: Mapping[str, Any],
    tag_default: str | None,
    global_registry: str | None,
) -> tuple[str, tuple[Style, bool, bool]] | None:
    """The reference a block sets and how, or None when ``node`` is no image block."""
    imageish = path[-1].lower().endswith("image")
    style: Style | None = None
    if isinstance(node.get("repository"), str) and node["repository"]:
        if imageish or "tag" in node or "registry" in node:
            style = "repository"
    elif (
        isinstance(node.get("image"), str)
        and node["image"]
        and ("registry" in node or "tag" in node)
    ):
        style = "image"
    elif imageish and isinstance(node.get("name"), str) and ("tag" in node or "registry" in node):
        style = "name"
    if style is None:
        return None
    repository = str(node[style if style != "string" else "repository"]).strip()
    if "{{" in repository:
        return None
    registry = global_registry or node.get("registry") or ""
    tag = node.get("tag")
    tag_text = str(tag).strip() if tag not in (None, "") else tag_default
    digest = node.get("digest")
    last = repository.rsplit("/", 1)[-1]
    reference = f"{registry}/{repository}" if isinstance(registry, str) and registry else repository
    if tag_text and ":" not in last and "@" not in last:
        reference += f":{tag_text}"
    if isinstance(digest, str) and digest.strip():
        reference += f"@{digest.strip()}"
    return reference, (style, "registry" in node, "digest" in node)


# -- from a registry -----------------------------------------------------------------------------


def newest_version(tags: list[str]) -> str | None:
    """The tag ``helm install oci://…`` without ``--version`` takes: the newest release."""
    for tag in tag_rank.newest_first(tags):
        version = tag_rank.parse_tag(tag)
        if version is not None and version.stable:
            return tag
    return None


def archive_of(manifest: Manifest, ref: ImageRef) -> dict[str, Any]:
    """The chart layer's descriptor; a refusal when ``manifest`` is no chart."""
    document = manifest.document()
    if manifest_kind(document) is not ArtifactKind.CHART:
        raise _refuse(Text("{image} is not a Helm chart.", image=quote(ref.familiar)))
    for layer in document.get("layers") or ():
        if isinstance(layer, dict) and layer.get("mediaType") == CHART_LAYER:
            size = layer.get("size")
            if not isinstance(size, int) or not isinstance(layer.get("digest"), str):
                break
            if size > MAX_ARCHIVE_BYTES:
                raise _refuse(
                    Text(
                        "The archive of {image} is larger than {size} MiB; that is no chart I "
                        "will read.",
                        image=quote(ref.familiar),
                        size=MAX_ARCHIVE_BYTES >> 20,
                    )
                )
            return layer
    raise _refuse(Text("{image} holds no chart archive.", image=quote(ref.familiar)))


async def fetch_archive(client: RegistryClient, ref: ImageRef, layer: Mapping[str, Any]) -> bytes:
    """The chart's archive, read into memory up to its declared size and verified."""
    from mirror.engines.registry.client import digest_of

    digest, size = str(layer["digest"]), int(layer["size"])
    chunks: list[bytes] = []
    received = 0
    async with client.open_blob(ref.registry, ref.repository, digest) as resp:
        async for chunk in resp.content.iter_chunked(1 << 16):
            received += len(chunk)
            if received > size:
                break  # more than declared: not the blob the manifest names
            chunks.append(chunk)
    data = b"".join(chunks)
    if received != size or digest_of(data) != digest:
        raise DigestMismatch(ref.registry, f"{digest} arrived as {digest_of(data)}")
    return data


# -- the values file ------------------------------------------------------------------------------


def mirror_values(chart: Chart, targets: Mapping[str, ImageRef]) -> str:
    """A values file pointing every image of ``chart`` that was copied at its copy.

    ``targets`` maps each image's normalized source (``str(parse_reference(…))``) to where its
    copy is (a digest on the target when the copy is exact and was asked by digest). Images
    only the annotation names (no block in the values) cannot be pointed: the caller says so.
    """
    import yaml

    out: dict[str, Any] = {}
    registries = set()
    for image in chart.images:
        key = _key(image.reference)
        target = targets.get(key) if key else None
        if target is None:
            continue
        registries.add(target.registry)
        for block in image.blocks:
            parent = out
            for part in block.path[:-1]:
                child = parent.setdefault(part, {})
                if not isinstance(child, dict):
                    break
                parent = child
            else:
                parent[block.path[-1]] = _pointed(block, target)
    if chart.global_registry and len(registries) == 1:
        out.setdefault("global", {})["imageRegistry"] = registries.pop()
    if not out:
        return ""
    return yaml.safe_dump(out, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _pointed(block: ImageBlock, target: ImageRef) -> Any:
    name = f"{target.registry}/{target.repository}"
    if block.style == "string":
        return f"{name}@{target.digest}" if target.digest else f"{name}:{target.tag}"
    out: dict[str, Any] = {}
    if block.style == "repository":
        if block.has_registry:
            out["registry"] = target.registry
            out["repository"] = target.repository
        else:
            out["repository"] = name
    else:
        out["registry"] = target.registry
        out[block.style] = target.repository
    out["tag"] = target.tag or ""
    if block.has_digest or target.digest:
        out["digest"] = target.digest or ""
    return out


def unplaced(chart: Chart) -> tuple[str, ...]:
    """Images the chart deploys whose place in its values is unknown (only the annotation
    names them): a values file cannot point them at the mirror."""
    return tuple(image.reference for image in chart.images if not image.blocks)


__all__ = [
    "CHART_LAYER",
    "Chart",
    "ChartImage",
    "ChartUnreadable",
    "ImageBlock",
    "mirror_values",
    "read_chart",
    "unplaced",
]
