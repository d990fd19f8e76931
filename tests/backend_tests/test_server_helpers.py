"""Shared pieces of the service tests (no tests here): a deterministic 'echo' task, a server
launcher for a real uvicorn on 127.0.0.1, and crafted good and bad input files.

The echo task is test-only: the server registers it with ``--plugin`` (this module's
``PARALLAX_TASKS``), so the production registry never lists it. It reads the frames of its
input (PyAV or Pillow), steps ``steps`` times (sleeping ``step_s``, reporting progress, stopping
at the ``Cancelled`` a cancelled job's progress raises, unless ``ignore_cancel``) and returns a
real Bundle whose cameras translate 0.1 per frame along +x, so the tests can check what came
back against what went in. What a native engine can do to its process is test-only too:
``crash`` ends the job with ``abort()`` or a segfault after its steps, ``block_s`` holds the
job without reporting (as GLOMAP does), ``points`` sizes the bundle (17 bytes a point, nearly
incompressible) for the full-disk tests, and ``source.runs_in_worker`` counts the jobs the
engine worker process has run (kept in ``ctx.cache``, as a loaded model is).
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backend.bundle import Bundle, CameraFrame, PointFrame
from backend.runtime import Cancelled
from backend.server.tasks import Task

REPO = Path(__file__).resolve().parents[2]
ECHO_PLUGIN = ["--plugin", "tests.backend_tests.test_server_helpers"]
STEP_X = 0.1  # camera i sits at (STEP_X * i, 0, 0)


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frames: int = Field(4, ge=1, le=64)
    steps: int = Field(4, ge=1, le=1000)
    step_s: float = Field(0.0, ge=0.0, le=0.2)
    fail: bool = False
    fail_on_input: bool = False  # an OSError naming the input's server path (messages must not)
    ignore_cancel: bool = False
    crash: Optional[Literal["abort", "segfault"]] = None
    block_s: float = Field(0.0, ge=0.0, le=600.0)
    points: int = Field(50, ge=1, le=2_000_000)


def _read_frames(ctx, limit: int) -> list:
    frames = []
    for up in ctx.inputs:
        if up.kind == "video":
            import av

            with av.open(str(up.path)) as c:
                for f in c.decode(video=0):
                    frames.append(f.to_ndarray(format="rgb24"))
                    if len(frames) >= limit:
                        break
        else:
            from PIL import Image

            with Image.open(up.path) as im:
                frames.append(np.asarray(im.convert("RGB")))
    return frames[:limit]


def run_echo(ctx):
    p = ctx.params
    ctx.cache["runs"] = ctx.cache.get("runs", 0) + 1
    frames = _read_frames(ctx, p.frames) or [np.full((24, 32, 3), 10 * i, np.uint8) for i in range(p.frames)]
    ignored = False
    for s in range(p.steps):
        time.sleep(p.step_s)
        try:
            ctx.progress((s + 1) / p.steps, f"step {s + 1}/{p.steps}")
        except Cancelled:  # a careless pipeline swallows the first one: the next report raises again
            if not p.ignore_cancel or ignored:
                raise
            ignored = True
    if p.block_s:
        time.sleep(p.block_s)  # native code that never reports: a cancel cannot land here
    if p.crash == "abort":
        os.abort()  # what a failed pycolmap CHECK does
    if p.crash == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if p.fail:
        raise ValueError("echo was asked to fail")
    if p.fail_on_input and ctx.inputs:
        raise OSError(errno.EIO, "Input/output error", str(ctx.inputs[0].path))
    h, w = frames[0].shape[:2]
    n = len(frames)
    cams = []
    for i in range(n):
        c2w = np.eye(4)
        c2w[0, 3] = STEP_X * i
        cams.append(CameraFrame(i, c2w, fx=float(w), fy=float(w), cx=(w - 1) / 2, cy=(h - 1) / 2))
    rng = np.random.default_rng(0)
    k = p.points
    points = [PointFrame(rng.normal(size=(k, 3)).astype(np.float32), rng.integers(0, 256, (k, 3), dtype=np.uint8),
                         rng.random(k).astype(np.float16)) for _ in range(n)]
    return Bundle(task="solve", width=w, height=h, frame_count=n, engine="echo", frames=frames,
                  cameras=cams, points=points,
                  source={"job": ctx.job_id, "runs_in_worker": ctx.cache["runs"], "worker_pid": os.getpid()})


ECHO_TASK = Task("echo", "test-only: returns its input frames with synthetic cameras", run_echo, EchoParams,
                 ("video", "image"), min_inputs=0, max_inputs=8)
PARALLAX_TASKS = [ECHO_TASK]


# -- a real server on loopback --------------------------------------------------------------

class Server:
    """``python -m backend serve --port 0`` as a subprocess; knows its url and token."""

    def __init__(self, data_dir: Path, *args: str, token: str = "test-token-0123456789"):
        self.token = token
        env = dict(os.environ, PARALLAX_TOKEN=token, PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "backend", "serve", "--port", "0", "--device", "cpu",
               "--data-dir", str(data_dir), *ECHO_PLUGIN, *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.data_dir = Path(data_dir)
        self.lines = []
        deadline = time.monotonic() + 180  # only bounds a hung start; a loaded machine may be slow
        self.port = None
        while self.port is None:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("server exited:\n" + "".join(self.lines))
            self.lines.append(line)
            if line.startswith("PARALLAX_PORT="):
                self.port = int(line.strip().split("=")[1])
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth = {"Authorization": f"Bearer {token}"}
        # Keep reading: a full pipe (64 KiB of log) would block the server's next write.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- crafted inputs ----------------------------------------------------------------------

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]


FINAL = ("done", "failed", "cancelled")
WAIT_S = 120  # bound on any one wait: the tests wait on states, never on a sleep; this only ends a hang


def wait_state(server, jid: str, states=FINAL, cond=None) -> dict:
    """Poll the job until its state is one of ``states`` (and ``cond(job)`` holds); returns it."""
    import requests

    deadline = time.monotonic() + WAIT_S
    while True:
        j = requests.get(f"{server.url}/v1/jobs/{jid}", headers=server.auth, timeout=WAIT_S).json()
        if j["state"] in states and (cond is None or cond(j)):
            return j
        assert time.monotonic() < deadline, f"job {jid} never reached {states}: {j}\n{server.log()[-2000:]}"
        time.sleep(0.02)


def make_video(path: Path, n: int = 6, w: int = 32, h: int = 24, faststart: bool = False) -> Path:
    """An mp4 whose frame i is a flat COLOURS[i % 6] picture."""
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        s = c.add_stream("mpeg4", rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"qscale": "2"}
        for i in range(n):
            img = np.empty((h, w, 3), np.uint8)
            img[:] = COLOURS[i % len(COLOURS)]
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def hololens_mp4(path: Path, frames: list) -> tuple:
    """The given frames of the shared hololens-000 footage as a 540x360 mp4 (10 fps), with the
    clip's folder; raises FileNotFoundError when the footage is not beside the checkout."""
    import av
    from PIL import Image

    from backend.eval.datasets import HOLOLENS, find_hololens, load_hololens

    data = find_hololens()
    if data is None:
        raise FileNotFoundError(f"the shared {HOLOLENS} footage was not found (../shared/data)")
    files, _, _ = load_hololens(data)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt, s.options = 540, 360, "yuv420p", {"qscale": "2"}
        for i in frames:
            img = np.asarray(Image.open(files[i]).convert("RGB"))
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path, data


def make_long_video(path: Path, n: int) -> Path:
    """n tiny identical frames (encodes ~80k frames/s)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=24)
        s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for _ in range(n):
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def make_png(path: Path, w: int, h: int) -> Path:
    from PIL import Image

    Image.new("1", (w, h)).save(path) if w * h > 10**7 else Image.new("RGB", (w, h), (90, 120, 150)).save(path)
    return path
