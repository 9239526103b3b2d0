"""Helm charts built in tests, shaped like real ones, and pushed as real OCI helm artifacts.

``helm package`` writes a gzip'd tar whose one top directory is the chart's name, with
``Chart.yaml``, ``values.yaml``, ``templates/`` and ``charts/`` (subcharts, packed as
``NAME-VERSION.tgz`` by ``helm dependency build``, or unpacked). ``helm push`` puts it in a
registry as a manifest whose config is ``Chart.yaml`` as JSON
(``application/vnd.cncf.helm.config.v1+json``) and whose one layer is the archive.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from typing import Any

import yaml

import lab as lab_module

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def tgz(files: Mapping[str, bytes | str]) -> bytes:
    """A gzip'd tar of ``files`` (path -> content), as ``helm package`` writes one."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, data in files.items():
            body = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(body))
    return raw.getvalue()


def chart_files(
    name: str,
    version: str,
    *,
    app_version: str | None = None,
    values: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    dependencies: list[dict[str, Any]] | None = None,
    packed: Mapping[str, bytes] | None = None,
    unpacked: Mapping[str, Mapping[str, bytes | str]] | None = None,
) -> dict[str, bytes | str]:
    """A chart's files under ``name/``: ``packed`` subcharts as ``charts/FILE.tgz``,
    ``unpacked`` ones as ``charts/DIR/…`` (each a mapping of relative paths)."""
    meta: dict[str, Any] = {
        "apiVersion": "v2",
        "name": name,
        "version": version,
        "type": "application",
    }
    if app_version is not None:
        meta["appVersion"] = app_version
    if annotations:
        meta["annotations"] = dict(annotations)
    if dependencies:
        meta["dependencies"] = dependencies
    files: dict[str, bytes | str] = {
        f"{name}/Chart.yaml": yaml.safe_dump(meta, sort_keys=False),
        f"{name}/values.yaml": yaml.safe_dump(dict(values or {}), sort_keys=False),
        f"{name}/templates/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\n",
    }
    for file, packed_data in (packed or {}).items():
        files[f"{name}/charts/{file}"] = packed_data
    for directory, inner in (unpacked or {}).items():
        for path, data in inner.items():
            files[f"{name}/charts/{directory}/{path}"] = data
    return files


def chart(name: str, version: str, **more: Any) -> bytes:
    return tgz(chart_files(name, version, **more))


def subchart_files(name: str, version: str, **more: Any) -> dict[str, bytes | str]:
    """A subchart's files relative to its own directory (for ``unpacked``)."""
    return {
        path.removeprefix(f"{name}/"): data
        for path, data in chart_files(name, version, **more).items()
    }


def push_chart(registry: str, repository: str, archive: bytes) -> str:
    """What ``helm push`` does: the archive as the one layer, Chart.yaml as JSON config."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as opened:
        found = next(
            m
            for m in opened.getmembers()
            if m.name.count("/") == 1 and m.name.endswith("/Chart.yaml")
        )
        extracted = opened.extractfile(found)
        assert extracted is not None
        meta = yaml.safe_load(extracted.read())
    digest: str = lab_module.push_artifact(
        registry,
        repository,
        str(meta["version"]),
        [(HELM_CHART_LAYER, archive)],
        config=(HELM_CONFIG, json.dumps(meta).encode()),
    )
    return digest
