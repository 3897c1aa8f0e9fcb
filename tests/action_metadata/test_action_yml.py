"""action.yml is the user's documentation: complete, consistent with the runner, Docker-ready."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ci_runner.action import ACTION_INPUTS, ACTION_OUTPUTS

ROOT = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


def test_runs_the_released_image_with_a_post_step():
    runs = ACTION["runs"]
    assert runs["using"] == "docker"
    released = r"docker://ghcr\.io/firecrest-ci/firecrest-ci:\d+\.\d+\.\d+"  # test_versioning: which one
    assert re.fullmatch(released, runs["image"]), runs["image"]
    assert runs["post-entrypoint"] == "/usr/local/bin/ci-runner-post-entrypoint"


def test_inputs_match_what_the_runner_reads():
    assert set(ACTION["inputs"]) == set(ACTION_INPUTS)
    assert set(ACTION["outputs"]) == set(ACTION_OUTPUTS)


def test_every_input_and_output_is_documented_and_underscored():
    for name, spec in {**ACTION["inputs"], **ACTION["outputs"]}.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{name}: dashes cannot be read from INPUT_* in Docker"
        assert str(spec.get("description", "")).strip(), f"{name} has no description"


def test_only_system_is_required_and_secrets_have_no_default():
    required = {name for name, spec in ACTION["inputs"].items() if spec.get("required")}
    assert required == {"system"}
    assert "default" not in ACTION["inputs"]["client_secret"]
    assert "secrets." in ACTION["inputs"]["client_secret"]["description"]


def test_defaults_are_valid_choices():
    from ci_runner.spec import CLEANUP_MODES, STAGING_MODES

    assert ACTION["inputs"]["staging"]["default"] in STAGING_MODES
    assert ACTION["inputs"]["cleanup"]["default"] in CLEANUP_MODES


def test_path_outputs_say_a_passing_run_removed_their_directory():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "`output_path` and `working_dir` name a directory that has already been removed" in readme
    for name in ("output_path", "working_dir"):
        description = " ".join(ACTION["outputs"][name]["description"].split())
        assert "cleanup on-success (the default)" in description, name
        assert "already been removed" in description, name
