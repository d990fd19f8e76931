"""Starting, watching and stopping the local backend process (``python -m backend serve``).

The backend runs in its own Python (the one with torch), not Blender's. It is started with
``--port 0`` and a fresh token (``secrets``) passed in the environment, its output is read by
a thread that keeps the last lines for error messages and catches the ``PARALLAX_PORT=<n>``
line, and readiness is confirmed with ``GET /v1/health``. Everything the add-on calls from a
``bpy.app.timers`` callback (``state``, ``poll_ready``, ``is_alive``, ``log_tail``) returns at
once; only ``start(wait=True)``, ``wait_ready`` and ``stop`` block.

Standard library and requests only: no bpy, no torch.
"""

from __future__ import annotations

import atexit
import collections
import os
import secrets
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Optional, Sequence

from .errors import BackendStartError

PORT_PREFIX = "PARALLAX_PORT="
# The add-on (and repository) root: the folder that holds backend/ and client/.
DEFAULT_ROOT = Path(__file__).resolve().parent.parent


class BackendProcess:
    """One local backend server process, restartable.

    ``python``: the backend's interpreter (default ``$PARALLAX_PYTHON`` or this interpreter;
    inside Blender always pass the backend environment's python). ``root``: the folder that
    holds ``backend/`` (the working directory of the process). ``extra_args`` are appended to
    ``python -m backend serve`` (e.g. ``["--device", "cpu", "--data-dir", d]``).

    States: ``"stopped"`` (never started or stopped by us), ``"starting"``, ``"ready"``,
    ``"crashed"`` (ended without ``stop()``; see ``exit_code``/``log_tail()``), and
    ``"failed"`` (never became ready; see ``start_error``).
    """

    def __init__(self, python: Optional[str] = None, *, root: Optional[os.PathLike] = None,
                 host: str = "127.0.0.1", extra_args: Sequence[str] = (), env: Optional[dict] = None,
                 startup_timeout: float = 120.0, log_lines: int = 500, watch_parent: bool = True):
        self.python = str(python or os.environ.get("PARALLAX_PYTHON") or sys.executable)
        self.root = Path(root) if root else DEFAULT_ROOT
        self.host = host
        self.extra_args = list(extra_args)
        self.env = env
        self.startup_timeout = startup_timeout
        self.watch_parent = watch_parent
        self.token: Optional[str] = None
        self.port: Optional[int] = None
        self.start_error: Optional[BackendStartError] = None
        self._log = collections.deque(maxlen=log_lines)
        self._proc: Optional[subprocess.Popen] = None
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._stopping = False
        self._started_at = 0.0
        self._lock = threading.Lock()
        self.restarts = 0  # times start() replaced a crashed process
        _LIVE.add(self)

    # -- facts (non-blocking) ----------------------------------------------------------

    @property
    def url(self) -> Optional[str]:
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    @property
    def exit_code(self) -> Optional[int]:
        return self._proc.poll() if self._proc else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def state(self) -> str:
        if self._proc is None or (self._stopping and not self.is_alive()):
            return "stopped"
        if self.start_error is not None:
            return "failed"
        if not self.is_alive():
            return "crashed" if self._ready.is_set() else "failed"
        return "ready" if self._ready.is_set() else "starting"

    def crashed(self) -> bool:
        return self.state == "crashed"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(list(self._log)[-lines:])

    def client(self, **kwargs):
        """A :class:`client.api.Client` for this process (call once it is ready)."""
        from .api import Client

        if self.url is None:
            raise BackendStartError("the backend is not running")
        return Client(self.url, self.token, process=self, **kwargs)

    # -- control -----------------------------------------------------------------------

    def start(self, wait: bool = True) -> None:
        """Start the process (a no-op while one is alive). ``wait``: block until ready or raise."""
        with self._lock:
            if self.is_alive():
                pass
            else:
                if self._proc is not None and not self._stopping:
                    self.restarts += 1
                self._spawn()
        if wait:
            self.wait_ready()

    def ensure_running(self, wait: bool = True) -> bool:
        """Start the backend if it is not running (first use, or after a crash). True if (re)started."""
        alive = self.is_alive()
        self.start(wait=wait)
        return not alive

    def poll_ready(self) -> bool:
        """True once ready; False while starting; raises BackendStartError if it failed."""
        if self._ready.is_set() and self.is_alive():
            return True
        if self.start_error is not None:
            raise self.start_error
        if self._proc is None:
            raise BackendStartError("the backend was never started")
        if not self.is_alive() or self._ended.is_set():
            code = self._proc.poll()
            self.start_error = BackendStartError(
                f"the backend exited while starting (exit code {code}); python: {self.python}",
                code, self.log_tail())
            raise self.start_error
        if time.monotonic() - self._started_at > self.startup_timeout:
            self.start_error = BackendStartError(
                f"the backend did not become ready within {self.startup_timeout:.0f} s", None, self.log_tail())
            self._terminate()
            raise self.start_error
        return False

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll_ready():
            if deadline is not None and time.monotonic() > deadline:
                raise BackendStartError(f"the backend is not ready after {timeout:.0f} s", None, self.log_tail())
            self._ready.wait(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process: SIGTERM (graceful: the running job is cancelled), then kill."""
        self._stopping = True
        self._terminate(timeout)

    # -- internals ---------------------------------------------------------------------

    def _spawn(self) -> None:
        token = secrets.token_urlsafe(32)
        env = dict(os.environ if self.env is None else self.env)
        env["PARALLAX_TOKEN"] = token
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONHOME", None)  # Blender's, if any, would break another interpreter
        # glibc gives each thread that mallocs its own arena (up to 8 per core) and keeps what
        # they freed: the engines' worker threads grew the server ~75% over its first jobs
        # (benchmarks/results/service.md). Two arenas keep it flat; a user's value wins.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        cmd = [self.python, "-m", "backend", "serve", "--host", self.host, "--port", "0"]
        if self.watch_parent:
            cmd += ["--parent-pid", str(os.getpid())]
        cmd += self.extra_args
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0) | subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # Ctrl+C in Blender's terminal does not hit it
        self._log.append(f"$ {' '.join(cmd)}  (cwd {self.root})")
        try:
            proc = subprocess.Popen(cmd, cwd=str(self.root), env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        except OSError as e:
            self._proc = None
            self.start_error = BackendStartError(f"cannot run the backend python {self.python!r}: {e}")
            raise self.start_error from None
        # Only once the new process exists does the old state give way: while Popen runs (a
        # few ms) a crashed backend still reads "crashed", not "failed" (dead and never ready).
        self.token, self.port, self.start_error = token, None, None
        self._ready.clear()
        self._ended.clear()
        self._stopping = False
        self._proc = proc
        self._started_at = time.monotonic()
        threading.Thread(target=self._read_output, args=(self._proc,), name="parallax-backend-log",
                         daemon=True).start()

    def _read_output(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            self._log.append(line)
            if line.startswith(PORT_PREFIX) and proc is self._proc and self.port is None:
                try:
                    self.port = int(line[len(PORT_PREFIX):])
                except ValueError:
                    continue
                self._confirm_health(proc)
        if proc is self._proc:
            self._ended.set()

    def _confirm_health(self, proc: subprocess.Popen) -> None:
        from .api import Client
        from .errors import ParallaxError

        try:
            Client(self.url, self.token, timeout=30).health()
        except ParallaxError as e:
            if proc is self._proc:
                self.start_error = BackendStartError(f"the backend started but its health check failed: {e}",
                                                     None, self.log_tail())
            return
        if proc is self._proc:
            self._ready.set()

    def _terminate(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"<BackendProcess {self.state} pid={self.pid} url={self.url}>"


# Stop every backend this interpreter started when it exits (Blender quitting included).
_LIVE: "weakref.WeakSet[BackendProcess]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for proc in list(_LIVE):
        try:
            proc.stop(timeout=3.0)
        except Exception:
            pass
