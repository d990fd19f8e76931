"""The one-way architecture (ARCHITECTURE.md), enforced with import-linter.

The repository root is the add-on package; it is linted as ``parallax`` (as Blender installs
it) through a symlink, so the add-on's relative imports resolve as they do in Blender. A copy
with one deliberate violation per contract must fail: the contracts can fail.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(package_root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    link_dir = tmp_path / "path"
    link_dir.mkdir()
    (link_dir / "parallax").symlink_to(package_root, target_is_directory=True)
    return subprocess.run([str(LINT), "--config", str(ROOT / ".importlinter"), "--no-cache"], cwd=tmp_path,
                          env={"PYTHONPATH": str(link_dir), "PATH": str(LINT.parent)}, capture_output=True, text=True)


def test_import_contracts_hold(tmp_path):
    run = _lint(ROOT, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "broken" not in run.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize("module, line, contract", [
    ("panels/__init__.py", "import torch", "The add-on never imports torch"),
    ("backend/bundle.py", "import bpy", "The backend never imports bpy"),
    ("backend/pipelines/v2c.py", "from ..server import tasks", "Pipelines never import the server"),
    ("backend/geometry/cameras.py", "from .. import bundle", "Geometry imports neither the bundle nor the server"),
    ("backend/models/layers.py", "from ..pipelines import common", "Models never import pipelines"),
])
def test_a_violation_breaks_its_contract(tmp_path, module, line, contract):
    copy = tmp_path / "copy"
    for py in ROOT.rglob("*.py"):
        rel = py.relative_to(ROOT)
        if rel.parts[0].startswith(".") or rel.parts[0] in ("tests", "benchmarks", "scripts", "runs"):
            continue
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(py, copy / rel)
    target = copy / module
    source = target.read_text()
    ast.parse(source)
    target.write_text(source + f"\n{line}  # deliberate violation\n")
    run = _lint(copy, tmp_path)
    assert run.returncode != 0
    assert f"{contract}" in run.stdout and "BROKEN" in run.stdout.split(contract, 1)[1].splitlines()[0], run.stdout
