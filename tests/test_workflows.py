"""The GitHub Actions workflows: valid against GitHub's schema, least privilege, pinned actions,
and they call the Makefile targets that exist."""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def load(path):
    return yaml.safe_load(path.read_text())


def test_there_are_a_test_and_a_publishing_workflow():
    assert {p.stem for p in WORKFLOWS} >= {"test", "book"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_valid_against_githubs_schema(path):
    exe = shutil.which("check-jsonschema") or str(pathlib.Path(sys.executable).parent /
                                                  "check-jsonschema")
    if not pathlib.Path(exe).exists():
        pytest.skip("check-jsonschema is not installed (requirements.txt installs it)")
    out = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_pinned_actions(path):
    wf = load(path)
    assert wf["permissions"] == {"contents": "read"}, "default permissions must be read-only"
    for name, job in wf["jobs"].items():
        extra = job.get("permissions", {})
        if extra:
            assert name == "deploy" and extra == {"pages": "write", "id-token": "write"}, name
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]


def test_workflows_call_existing_make_targets():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for path in WORKFLOWS:
        for job in load(path)["jobs"].values():
            for step in job["steps"]:
                for target in re.findall(r"\bmake ([\w-]+)", step.get("run", "")):
                    assert target in targets, (path.name, target)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
