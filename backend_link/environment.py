"""The backend's own Python environment: where Parallax creates it, and "Create Backend
Environment" (venv + pip in a daemon thread, its progress read by the preferences)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

import bpy

from ..package import addon_package

ADDON_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ADDON_ROOT / "backend" / "requirements.txt"


def env_dir(create: bool = False) -> Path:
    """The backend environment Parallax creates: the extension's user directory on 4.2+,
    a folder next to the add-on for a legacy install."""
    try:
        return Path(bpy.utils.extension_path_user(addon_package(), path="backend-venv", create=create))
    except (ValueError, AttributeError):  # not installed as an extension
        return ADDON_ROOT.parent / "parallax-backend-venv"


def env_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


class EnvBuild:
    """Builds a venv with pip in a daemon thread; ``state``/``log`` are read by the preferences."""

    state = "idle"  # idle, running, done, failed
    stage = ""
    message = ""
    log: list = []
    _proc: Optional[subprocess.Popen] = None

    @classmethod
    def steps(cls, root: Path, base_python: str) -> list:
        py = str(env_python(root))
        return [("creating the environment", [base_python, "-m", "venv", str(root)]),
                ("updating pip", [py, "-m", "pip", "install", "--upgrade", "pip"]),
                ("installing torch", [py, "-m", "pip", "install", "torch"]),
                ("installing the backend's packages", [py, "-m", "pip", "install", "-r", str(REQUIREMENTS)])]

    @classmethod
    def start(cls, root: Path, base_python: str = sys.executable, wait: bool = False) -> None:
        if cls.state == "running":
            return
        cls.state, cls.stage, cls.message, cls.log = "running", "", "", []
        thread = threading.Thread(target=cls._run, args=(cls.steps(root, base_python),),
                                  name="parallax-env", daemon=True)
        thread.start()
        if wait:
            thread.join()

    @classmethod
    def _run(cls, steps) -> None:
        for i, (stage, cmd) in enumerate(steps):
            cls.stage = f"{stage} ({i + 1}/{len(steps)})"
            cls.log.append("$ " + " ".join(cmd))
            try:
                cls._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                             errors="replace", stdin=subprocess.DEVNULL)
            except OSError as e:
                cls._fail(f"{stage} failed: cannot run {cmd[0]!r} ({e.strerror})")
                return
            for line in cls._proc.stdout:
                cls.log.append(line.rstrip())
                del cls.log[:-200]
            code = cls._proc.wait()
            if code != 0:
                last = next((line for line in reversed(cls.log) if line.strip()), "")
                cls._fail(f"{stage} failed (exit code {code}): {last}")
                return
        cls.state, cls.stage, cls.message = "done", "", "Backend environment ready"

    @classmethod
    def _fail(cls, message: str) -> None:
        cls.state, cls.message = "failed", message
        cls.log.append(message)
