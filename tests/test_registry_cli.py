"""End to end through ``mirror-bot mirror`` with the registry engine, against the real lab."""

from __future__ import annotations

from pathlib import Path

import lab as lab_module
from tests.support.cli import bot_env, run_json


def test_platform_all_copies_the_whole_index_with_an_identical_digest(
    lab: lab_module.Lab, tmp_path: Path
) -> None:
    children = [
        lab_module.push_image(
            lab.source,
            "team/cli",
            None,
            (lab_module.LayerSpec(32 * 1024, 300 + n),),
            architecture=arch,
            variant=variant,
        )
        for n, (arch, variant) in enumerate((("amd64", None), ("arm", "v7")))
    ]
    digest = lab_module.push_index(lab.source, "team/cli", "2.0", children)
    env = bot_env(lab, tmp_path / "mirror.db")
    image = f"{lab.source}/team/cli:2.0"

    code, [result], stderr = run_json(env, image, "--engine", "registry", "--platform", "all")
    assert code == 0, stderr
    target = f"{lab.target}/mirror/{lab.source.replace(':', '-')}.team.cli:2.0"
    assert result["status"] == "succeeded"
    assert result["engine"] == "registry"
    assert result["platform"] == "all"
    assert result["target"] == target
    assert result["source_digest"] == result["target_digest"] == digest
    assert result["digest_identical"] is True
    assert result["error"] is None
    repository = target.split("/", 1)[1].rsplit(":", 1)[0]
    assert (
        lab_module.pull_manifest(lab.target, repository, "2.0")[0]
        == (lab_module.pull_manifest(lab.source, "team/cli", "2.0")[0])
    )

    # auto picks the registry engine for every platform; the copy is already there.
    code, [again], stderr = run_json(env, image, "--platform", "all")
    assert code == 0, stderr
    assert again["status"] == "already_mirrored"
    assert again["engine"] == "registry"
    assert again["target_digest"] == digest


def test_a_missing_tag_fails_with_one_sentence(lab: lab_module.Lab, tmp_path: Path) -> None:
    env = bot_env(lab, tmp_path / "mirror.db")
    code, [result], _ = run_json(
        env, f"{lab.source}/library/hello:absent", "--engine", "registry", "--platform", "all"
    )
    assert code == 1
    assert result["status"] == "failed"
    assert result["error"] == (
        f"`{lab.source}/library/hello:absent` does not exist; nearest: `1.0`."
    )
    assert result["suggestions"] == [f"{lab.source}/library/hello:1.0"]
