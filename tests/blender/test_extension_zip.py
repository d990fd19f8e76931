"""The extension zip holds the add-on, the backend's code and the shipped weights, nothing else.

Built by Blender's own extension builder (``bl_pkg/cli/blender_ext.py build``, what
``blender --command extension build`` runs) from a copy of the files git tracks or would
track, so the manifest's ``paths_exclude_pattern`` is tested as Blender applies it.
"""

import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import bpy

ROOT = Path(__file__).resolve().parents[2]
ADDON_PACKAGES = {"operators", "panels", "props", "importers", "client", "backend_link"}
ADDON_FILES = {"__init__.py", "api.py", "package.py", "blender_manifest.toml"}


def _builder() -> Path:
    scripts = Path(bpy.utils.resource_path("LOCAL")) / "scripts"
    return scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def _allowed(name: str) -> bool:
    p = PurePosixPath(name)
    top = p.parts[0]
    if len(p.parts) == 1:
        return name in ADDON_FILES
    if top in ADDON_PACKAGES:
        return p.suffix == ".py"
    if top == "backend":
        if p.parts[1] == "weights":  # the shipped checkpoint
            return p.suffix in (".json", ".safetensors")
        return p.suffix == ".py" or name == "backend/requirements.txt"  # the env builder reads it
    return False


def test_zip_holds_only_addon_backend_code_and_weights(tmp_path):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    src = tmp_path / "src"
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run([sys.executable, str(_builder()), "build", "--source-dir", str(src), "--output-dir", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "FATAL" not in run.stdout, run.stdout + run.stderr
    (zip_path,) = out.glob("*.zip")
    names = [n for n in zipfile.ZipFile(zip_path).namelist() if not n.endswith("/")]
    unexpected = sorted(n for n in names if not _allowed(n))
    assert not unexpected, f"the extension zip would ship: {unexpected}"
    for must in ("__init__.py", "blender_manifest.toml", "backend/__main__.py", "backend/bundle.py",
                 "backend/weights/parallax-tiny/config.json"):
        assert must in names, must
