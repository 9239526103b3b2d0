"""The rewrite an answer adds for pasted manifests (issue 15, Bulk): kustomize and sed.

The ``sed`` command is run by the real GNU sed on real files, and a compose file pasted to the
bot is copied between the lab's registries and answered with the rewrite.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import yaml

import lab as lab_module
from bot.commands import parse_command
from bot.commands.mirror import MirrorArgs
from bot.paste import PastedFiles
from bot.rewrite import SHORT_YAML_LINES, rewrite, written_name
from mirror.models import Item, ItemStatus
from mirror.platform import Platform
from mirror.reference import parse_reference
from tests.test_app import finish, job_id_of, running_bot, say, settings_for

AMD64 = Platform("linux", "amd64")
DIGEST = "sha256:" + "ab" * 32


def copied(spec: str, target: str, *, digest: str = DIGEST) -> Item:
    source = parse_reference(spec)
    return Item(
        spec=spec,
        source=source,
        target=parse_reference(target),
        platform=AMD64,
        status=ItemStatus.SUCCEEDED,
        source_digest=digest,
        target_digest=digest,
    )


ITEMS = [
    copied("nginx:1.25", "mirror.example:5000/team/nginx:1.25"),
    copied("registry.k8s.io/pause:3.9", "mirror.example:5000/team/pause:3.9"),
    copied(f"ghcr.io/org/app@{DIGEST}", f"mirror.example:5000/team/app@{DIGEST}"),
]

MANIFEST = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: "registry.k8s.io/pause:3.9"
      containers:
      - name: web
        image: nginx:1.25   # the front
      - name: app
        image: 'ghcr.io/org/app@{DIGEST}'
      - name: other
        image: nginx:1.25-alpine
"""


def test_written_names_drop_tag_and_digest_not_port() -> None:
    assert written_name("nginx:1.25") == "nginx"
    assert written_name("host:5000/app:1") == "host:5000/app"
    assert written_name("host:5000/app") == "host:5000/app"
    assert written_name(f"app@{DIGEST}") == "app"


def test_kustomize_block_is_yaml_kustomize_reads() -> None:
    lines = rewrite(ITEMS, PastedFiles("Kubernetes YAML", MANIFEST))
    block = "\n".join(lines[: lines.index("# or apply this, rewritten:")])
    assert yaml.safe_load(block) == {
        "images": [
            {"name": "nginx", "newName": "mirror.example:5000/team/nginx", "newTag": "1.25"},
            {
                "name": "registry.k8s.io/pause",
                "newName": "mirror.example:5000/team/pause",
                "newTag": "3.9",
            },
            {
                "name": "ghcr.io/org/app",
                "newName": "mirror.example:5000/team/app",
                "digest": DIGEST,
            },
        ]
    }


def test_short_yaml_comes_back_rewritten() -> None:
    lines = rewrite(ITEMS, PastedFiles("Kubernetes YAML", MANIFEST))
    rewritten = "\n".join(lines[lines.index("# or apply this, rewritten:") + 1 :])
    containers = yaml.safe_load(rewritten)["spec"]["template"]["spec"]
    assert [c["image"] for c in containers["initContainers"] + containers["containers"]] == [
        "mirror.example:5000/team/pause:3.9",
        "mirror.example:5000/team/nginx:1.25",
        f"mirror.example:5000/team/app@{DIGEST}",
        "nginx:1.25-alpine",  # not copied: left alone
    ]
    assert "# the front" in rewritten


def test_the_sed_command_rewrites_real_files(tmp_path: Path) -> None:
    long_yaml = MANIFEST + "\n".join(f"# padding {n}" for n in range(SHORT_YAML_LINES))
    lines = rewrite(ITEMS, PastedFiles("Kubernetes YAML", long_yaml))
    assert "# or rewrite the files in place:" in lines
    sed = list(lines[lines.index("# or rewrite the files in place:") + 1 :])
    assert sed[-1].strip() == "MANIFEST.yaml"
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST)
    sed[-1] = f"  {manifest}"
    subprocess.run(["bash", "-c", "\n".join(sed)], check=True)
    containers = yaml.safe_load(manifest.read_text())["spec"]["template"]["spec"]
    images = [c["image"] for c in containers["initContainers"] + containers["containers"]]
    assert images == [
        "mirror.example:5000/team/pause:3.9",
        "mirror.example:5000/team/nginx:1.25",
        f"mirror.example:5000/team/app@{DIGEST}",
        "nginx:1.25-alpine",
    ]


def test_nothing_copied_means_no_rewrite() -> None:
    failed = copied("nginx:1.25", "mirror.example:5000/team/nginx:1.25")
    failed.status = ItemStatus.FAILED
    assert rewrite([failed], PastedFiles("compose file", "services: {}")) == ()


def mirror_args(text: str) -> object:
    invocation = parse_command(text, default_platform=AMD64, max_images=5)
    assert invocation is not None and invocation.command.name == "mirror"
    return invocation.args


def test_typed_names_carry_no_rewrite_and_pasted_files_do() -> None:
    typed = mirror_args("/mirror nginx:1.25")
    assert isinstance(typed, MirrorArgs) and typed.pasted is None
    compose = "/mirror\nservices:\n  web:\n    image: nginx:1.25\n"
    pasted = mirror_args(compose)
    assert isinstance(pasted, MirrorArgs)
    assert pasted.pasted == PastedFiles(
        "compose file", "services:\n  web:\n    image: nginx:1.25\n"
    )
    kubeadm = "/mirror kubeadm config images list\nregistry.k8s.io/pause:3.9"
    read = mirror_args(kubeadm)
    assert isinstance(read, MirrorArgs)
    assert read.pasted is not None and read.pasted.yaml is None


async def test_a_pasted_compose_file_is_answered_with_its_rewrite(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    repository = f"library/composed-{uuid.uuid4().hex[:8]}"
    lab_module.push_image(lab.source, repository, "1.0", [lab_module.LayerSpec(1024, 401)])
    image = f"{lab.source}/{repository}:1.0"
    compose = f"services:\n  web:\n    image: {image}\n  db:\n    build: .\n"
    async with running_bot(settings_for(tmp_path, lab.target, lab.source)) as bot:
        thread = await say(bot, "alice", "room1", f"/mirror\n{compose}")
        job_id = job_id_of(thread)
        await finish(bot)
    answer = thread.texts[-1]
    assert f"Job {job_id} done" in answer
    assert "images:" in answer and f"- name: {lab.source}/{repository}" in answer
    rewritten = answer[answer.index("# or apply this, rewritten:") :].splitlines()[1:]
    document = yaml.safe_load("\n".join(line.removeprefix("    ") for line in rewritten))
    assert document["services"]["db"] == {"build": "."}
    new = document["services"]["web"]["image"]
    assert new.startswith(f"{lab.target}/") and new.endswith(":1.0")
    data, _ = lab_module.pull_manifest(
        lab.target, new[len(lab.target) + 1 :].rpartition(":")[0], "1.0"
    )
    assert data  # the rewritten reference is pullable from the mirror
