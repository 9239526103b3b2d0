"""Pointing pasted manifests at the mirror (issue 15, Bulk): the rewrite an answer adds.

When a job came from pasted Kubernetes YAML, ``helm template`` output, a compose file or
``kubeadm config images list`` output, its answer ends with a kustomize ``images:`` block and
either the pasted YAML itself, rewritten (when it is short), or a ``sed`` command that rewrites
the ``image:`` lines of the files in place. Pure functions; the lines go into the answer's
code block, never translated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.paste import PastedFiles
from bot.render import RenderOptions, artifact_commands, pull_reference
from mirror.artifacts import ArtifactKind
from mirror.models import Item
from mirror.reference import ImageRef

if TYPE_CHECKING:
    from bot.chart_request import ChartSource

SHORT_YAML_LINES = 40
"""Pasted YAML up to this many lines comes back rewritten; longer gets a ``sed`` command."""

_ERE_SPECIAL = re.compile(r"([.\[\]{}()*+?^$|\\#])")


def written_name(spec: str) -> str:
    """The image's name as the manifests write it, without tag or digest (kustomize's
    ``name``): ``nginx`` for ``nginx:1.25``, ``host:5000/app`` for ``host:5000/app:1``."""
    name = spec.partition("@")[0]
    head, colon, tail = name.rpartition(":")
    return head if colon and "/" not in tail else name


def kustomize_images(items: Sequence[Item]) -> list[str]:
    lines = ["# kustomization.yaml: point the manifests at the mirror", "images:"]
    for item in items:
        lines.append(f"- name: {written_name(item.spec)}")
        lines.append(f"  newName: {item.target.name}")
        reference = pull_reference(item)
        if "@" in reference:
            lines.append(f"  digest: {reference.partition('@')[2]}")
        else:
            lines.append(f'  newTag: "{item.target.tag}"')
    return lines


def _files(kind: str) -> str:
    if "kubeadm" in kind:
        return "/etc/kubernetes/manifests/*.yaml"
    if "compose" in kind and "Kubernetes" not in kind:
        return "compose.yaml"
    return "MANIFEST.yaml"


def sed_command(items: Sequence[Item], kind: str) -> list[str]:
    """``sed -E -i`` with one expression per image, for ``image:`` lines (quoted or not,
    with or without a comment); double-quoted for the shell, ``|`` as sed's delimiter."""
    lines = ["# or rewrite the files in place:", "sed -E -i \\"]
    for item in items:
        written = _ERE_SPECIAL.sub(r"\\\1", item.spec)
        new = pull_reference(item).replace("&", "\\&")
        lines.append(
            f'  -e "s|^([[:space:]-]*image:[[:space:]]*[\\"\']?){written}'
            f'([\\"\']?([[:space:]]+#.*)?[[:space:]]*)\\$|\\1{new}\\2|" \\'
        )
    lines.append(f"  {_files(kind)}")
    return lines


def rewritten_yaml(text: str, items: Sequence[Item]) -> list[str]:
    """The pasted YAML with each copied image's ``image:`` value pointing at the mirror."""
    targets = {item.spec: pull_reference(item) for item in items}
    pattern = re.compile(r"^(\s*-?\s*image:\s*[\"']?)([^\s\"'#]+)([\"']?\s*(?:#.*)?)$")
    out = ["# or apply this, rewritten:"]
    for line in text.strip("\n").splitlines():
        match = pattern.match(line)
        if match and match.group(2) in targets:
            line = match.group(1) + targets[match.group(2)] + match.group(3)
        out.append(line)
    return out


def rewrite(
    items: Sequence[Item], pasted: PastedFiles, options: RenderOptions | None = None
) -> tuple[str, ...]:
    """The rewrite for the images that were copied; nothing when none was."""
    copied = [item for item in items if item.status.ok and "$" not in item.spec]
    if not copied:
        return ()
    if pasted.chart is not None:
        return chart_rewrite(copied, pasted.chart, options or RenderOptions())
    lines = kustomize_images(copied)
    if pasted.yaml is not None and len(pasted.yaml.strip().splitlines()) <= SHORT_YAML_LINES:
        lines.extend(rewritten_yaml(pasted.yaml, copied))
    else:
        lines.extend(sed_command(copied, pasted.kind))
    return tuple(lines)


# -- a whole chart (issue 27) ---------------------------------------------------------------------

VALUES_FILE = "values-mirror.yaml"


def _copy_of(item: Item) -> ImageRef:
    """Where an image's copy is, by digest when the answer pulls it so."""
    reference = pull_reference(item)
    digest = reference.partition("@")[2] or None
    return ImageRef(item.target.registry, item.target.repository, item.target.tag, digest)


def chart_rewrite(
    copied: Sequence[Item], source: ChartSource, options: RenderOptions
) -> tuple[str, ...]:
    """A values file pointing the chart's images at their copies, and the install with it."""
    from mirror.charts import mirror_values, unplaced

    if source.chart is None:
        return ()
    images = {str(i.source): _copy_of(i) for i in copied if i.artifact is None}
    values = mirror_values(source.chart, images)
    if not values:
        return ()
    lines = [f"# {VALUES_FILE}: point the chart's images at the mirror"]
    lines.extend(values.rstrip("\n").splitlines())
    chart_items = [i for i in copied if i.artifact is ArtifactKind.CHART]
    if chart_items:
        install = artifact_commands(chart_items[0], options)[1]
        lines.append(f"{install} -f {VALUES_FILE}")
    elif source.ask.repo is not None and source.ask.name is not None:
        release = re.sub(r"[^a-z0-9-]+", "-", source.ask.name.lower())
        version = f" --version {source.chart.version}" if source.chart.version else ""
        lines.append(
            f"helm install {release} {source.ask.name} --repo {source.ask.repo}{version} "
            f"-f {VALUES_FILE}"
        )
    left = [ref for ref in unplaced(source.chart) if ref]
    if left:
        lines.append("# not set in the chart's values, so not in the file above:")
        lines.extend(f"#   {ref}" for ref in left)
    return tuple(lines)
