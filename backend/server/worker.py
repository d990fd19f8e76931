"""Jobs run in an engine worker process, so native code can never take the server down.

Incident (issue 12, item 1): ``POST /v1/jobs`` with the colmap engine and ``overlap: -3`` hit
a pycolmap ``CHECK`` in the job thread, which called ``abort()``: the whole server died
(SIGABRT) and every queued job was lost. Options are now validated before queueing
(``engines/options.py``), but no validation covers every native failure (a CHECK we do not
know of, a segfault in a codec, the kernel's OOM killer), so jobs no longer run in the
server's process at all.

One long-lived worker process runs the jobs, one at a time, in the order the server's worker
thread hands them over. It survives between jobs, so the per-task caches (``ctx.cache``: the
generate task's loaded pipeline, an engine) stay loaded as they did in the thread. When it
dies mid-job the job fails with "the engine crashed (...)", the server keeps serving, and the
next job starts a fresh worker. ``/v1/release`` ends an idle worker: that returns all of its
memory, CUDA context included, which ``gc`` plus ``empty_cache`` in a long-lived process
never did.

The worker is *spawned* (a fresh interpreter), not forked: the server has threads (uvicorn's,
the device probe's), and a forked child of a threaded process may inherit a lock some other
thread held, then deadlock in its first malloc.

Across the boundary (one duplex pipe; the worker's reader thread takes the server's messages
while its main thread runs the job):

- server -> worker: ``("run", job_id, payload)``, ``("cancel", job_id)``, ``("stop",)``;
  ``payload`` is the pickled job (task run function, params, inputs, job folder), unpickled in
  the worker so that a task that cannot be imported there fails its job, not the worker.
- worker -> server: ``("progress", job_id, fraction, label)`` for every report of the job's
  ``runtime.Progress`` (about 7 us a message, measured: no throttling needed), and
  ``("end", job_id, state, message, info)``.

Cancel: the server sends ``cancel`` the moment ``DELETE /v1/jobs/{id}`` arrives; the worker's
``Progress`` returns False at the next report and raises ``Cancelled`` (the same contract as
in-process). An engine that does not report for ``cancel_grace_s`` after the request (GLOMAP
takes no cancellation token) is ended with its process, and the job is cancelled.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import queue
import shutil
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import wait as _wait_any
from pathlib import Path
from typing import Callable, Optional

log = logging.getLogger("parallax.server")

CRASHED = "the engine crashed"
BUNDLE_ZIP = "bundle.zip"
KEEP_ON_FAILURE = ("job.json", "error.log")  # what a job folder holds once a job did not end done


# -- the server's side -----------------------------------------------------------------------

class EngineWorker:
    """The worker process as the server's worker thread sees it. :meth:`run` is called by
    that one thread only (it also starts the process, so the process's parent-death signal is
    tied to a thread that lives as long as the server); :meth:`cancel`, :meth:`kill`,
    :meth:`close` and the properties may be called from any thread."""

    def __init__(self, cancel_grace_s: float = 10.0):
        self.cancel_grace_s = float(cancel_grace_s)
        self._lock = threading.Lock()  # guards _proc/_conn/cached
        self._send_lock = threading.Lock()  # one writer at a time on the pipe
        self._proc = None
        self._conn = None
        self.crashes = 0
        self.starts = 0
        self.cached: list[str] = []  # tasks with a non-empty cache in the worker, as last reported
        self.facts: dict = {}  # the worker's last report about itself (e.g. CUDA memory in use)

    # -- facts ------------------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        proc = self._proc
        return proc.pid if proc is not None and proc.is_alive() else None

    def status(self) -> dict:
        return {"pid": self.pid, "starts": self.starts, "crashes": self.crashes, "cached": list(self.cached)}

    # -- running a job ----------------------------------------------------------------------

    def run(self, job_id: str, payload: bytes, progress: Callable[[Optional[float], str], None],
            cancelled: Callable[[], bool]) -> tuple[str, str]:
        """Run one job in the worker; returns (state, message), state one of done, failed,
        cancelled. ``progress(fraction or None, label)`` is called for each report."""
        for attempt in (0, 1):
            try:
                proc, conn = self._ensure()
            except Exception as e:  # cannot start a process at all (no memory, no fds)
                log.exception("cannot start the engine worker")
                return "failed", f"the engine process could not start ({type(e).__name__}: {e})"
            try:
                self._send(conn, ("run", job_id, payload))
                break
            except OSError:  # died while idle (OOM killer, kill -9): one fresh start
                self._discard(proc, conn)
                if attempt:
                    return "failed", f"{CRASHED} before the job started; see the server log"
        return self._follow(proc, conn, job_id, progress, cancelled)

    def cancel(self, job_id: str) -> None:
        """Ask the worker to cancel ``job_id`` now (a no-op once it has ended)."""
        conn = self._conn
        if conn is not None:
            try:
                self._send(conn, ("cancel", job_id))
            except OSError:
                pass  # the worker is gone: run() sees that

    def _follow(self, proc, conn, job_id, progress, cancelled) -> tuple[str, str]:
        cancel_at = None
        while True:
            if cancel_at is None and cancelled():
                cancel_at = time.monotonic()
                self.cancel(job_id)  # also sent by JobQueue.cancel at once; this covers a cancel during start
            if cancel_at is not None and time.monotonic() - cancel_at > self.cancel_grace_s:
                log.warning("job %s: the engine did not stop within %.0f s of the cancel; ending its process",
                            job_id, self.cancel_grace_s)
                self._discard(proc, conn)
                return "cancelled", (f"cancelled by request (the engine did not stop within "
                                     f"{self.cancel_grace_s:g} s, so its process was ended)")
            ready = _wait_any([conn, proc.sentinel], timeout=0.25)
            if not ready:
                continue
            gone = False
            try:
                while conn.poll():  # everything the worker sent, even after it exited
                    msg = conn.recv()
                    if msg[0] == "progress" and msg[1] == job_id:
                        progress(msg[2], msg[3])
                    elif msg[0] == "end" and msg[1] == job_id:
                        info = msg[4] if len(msg) > 4 and isinstance(msg[4], dict) else {}
                        self.cached = list(info.get("cached", []))
                        self.facts = dict(info.get("facts", {}))
                        return msg[2], msg[3]
            except (EOFError, OSError):
                gone = True  # the pipe's end: the worker is gone (or going)
            if not gone and proc.sentinel not in ready:
                continue
            proc.join(5.0)
            code = proc.exitcode
            self._discard(proc, conn)
            if cancelled():
                return "cancelled", "cancelled by request"
            self.crashes += 1
            log.error("job %s: the engine worker (pid %s) died: %s", job_id, proc.pid, _describe_exit(code))
            return "failed", (f"{CRASHED} ({_describe_exit(code)}); the server is still running and the "
                              "next job starts a fresh engine: try other options, a shorter clip or "
                              "another engine")

    # -- the process ------------------------------------------------------------------------

    def _ensure(self):
        with self._lock:
            if self._proc is not None and self._proc.is_alive():
                return self._proc, self._conn
            old = (self._proc, self._conn)
            self._proc = self._conn = None
        if old[0] is not None:
            log.warning("the engine worker (pid %s) ended between jobs (%s); starting a new one",
                        old[0].pid, _describe_exit(old[0].exitcode))
            _end_process(*old, timeout=0.0)
        import multiprocessing

        if not self.starts:
            # Registered after multiprocessing's own exit hook, so it runs first: that hook
            # joins every live child, and would wait forever for a worker nobody stopped.
            atexit.register(self.kill)
        mp = multiprocessing.get_context("spawn")
        parent_conn, child_conn = mp.Pipe(duplex=True)
        proc = mp.Process(target=child_main, args=(child_conn, os.getpid()), name="parallax-engine")
        proc.start()
        child_conn.close()
        with self._lock:
            self._proc, self._conn = proc, parent_conn
            self.starts += 1
            self.cached = []
        return proc, parent_conn

    def _send(self, conn, msg) -> None:
        with self._send_lock:
            conn.send(msg)

    def _discard(self, proc, conn) -> None:
        with self._lock:
            if self._proc is proc:
                self._proc = self._conn = None
                self.cached = []
        _end_process(proc, conn, timeout=0.0)

    def kill(self) -> None:
        """End the worker now (SIGKILL); a running job ends cancelled or failed in :meth:`run`."""
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.kill()

    def close(self, timeout: float = 3.0) -> list[str]:
        """End the worker (between jobs): everything it had loaded is released. Returns the
        tasks whose caches it held."""
        return self.end(self.detach(), timeout)

    def detach(self) -> tuple:
        """Take the worker away (the next job starts a new one) without waiting for it to end:
        :meth:`end` that does the waiting, outside the caller's locks."""
        with self._lock:
            detached = (self._proc, self._conn, list(self.cached))
            self._proc = self._conn = None
            self.cached = []
        return detached

    @staticmethod
    def end(detached: tuple, timeout: float = 3.0) -> list[str]:
        proc, conn, cached = detached
        if proc is not None:
            _end_process(proc, conn, timeout)
        return cached


def _end_process(proc, conn, timeout: float) -> None:
    """Stop (``timeout`` s to finish), then terminate, then kill; never raises."""
    try:
        if conn is not None and proc.is_alive() and timeout > 0:
            try:
                conn.send(("stop",))
            except OSError:
                pass
            proc.join(timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
    except Exception:
        log.exception("ending the engine worker")
    finally:
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == getattr(signal, "SIGKILL", 9):
            return f"killed by {name}: out of memory?"
        return f"{name} in native code"
    return f"it exited with code {code}"


# -- the worker's side -------------------------------------------------------------------------

class CancelFlag:
    """The worker's stand-in for a job's ``threading.Event`` (``ctx.cancel_event``): set by the
    server's ``cancel`` message."""

    def __init__(self, cancelled: set, job_id: str):
        self._cancelled, self._job_id = cancelled, job_id

    def is_set(self) -> bool:
        return self._job_id in self._cancelled

    def set(self) -> None:
        self._cancelled.add(self._job_id)

    def wait(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the server dies, even by SIGKILL (Linux); elsewhere the
    reader thread's end-of-pipe does it, once the GIL is free."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass
    if os.getppid() != parent_pid:  # the server died before the line above took effect
        os._exit(0)


def child_main(conn, parent_pid: int) -> None:
    """The worker process: run the jobs the server sends, one at a time, until told to stop."""
    _die_with_parent(parent_pid)
    from . import memory, storage

    os.umask(storage.UMASK)  # bundles are written by code that takes no file mode
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in the terminal: the server stops us
    memory.limit_arenas(2)
    send_lock = threading.Lock()

    def send(msg) -> None:
        with send_lock:  # progress may be reported from an engine's own threads
            conn.send(msg)

    cancelled: set = set()
    jobs: "queue.Queue" = queue.Queue()

    def reader() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                os._exit(0)  # the server is gone: nobody wants the result
            if msg[0] == "cancel":
                cancelled.add(msg[1])
            elif msg[0] == "run":
                jobs.put((msg[1], msg[2]))
            elif msg[0] == "stop":
                jobs.put(None)
                return

    threading.Thread(target=reader, name="parallax-engine-control", daemon=True).start()
    caches: dict = {}
    while True:
        item = jobs.get()
        if item is None:
            return
        job_id, payload = item
        state, message = run_payload(job_id, payload, caches, cancelled, send)
        cancelled.discard(job_id)
        send(("end", job_id, state, message, {"cached": [k for k, v in caches.items() if v],
                                              "facts": _facts()}))
        memory.trim()  # the job's freed memory back to the system (see memory.py)


def _facts() -> dict:
    torch = sys.modules.get("torch")  # only if a task loaded it; never import it here
    try:
        if torch is not None and torch.cuda.is_available():
            return {"cuda_allocated": int(torch.cuda.memory_allocated())}
    except Exception:
        pass
    return {}


def run_payload(job_id: str, payload: bytes, caches: dict, cancelled: set, send) -> tuple[str, str]:
    """Unpickle one job and run it (in the worker process)."""
    from ..runtime import Progress
    from .tasks import JobContext

    try:
        spec = pickle.loads(payload)
    except Exception as e:  # a plugin module the worker cannot import, say
        return "failed", f"internal error: the engine process cannot load the job ({type(e).__name__}: {e})"
    flag = CancelFlag(cancelled, job_id)

    def report(fraction, label: str = "") -> bool:
        if flag.is_set():
            return False
        send(("progress", job_id, fraction, label))
        return True

    job_dir = Path(spec["job_dir"])
    ctx = JobContext(job_id=job_id, inputs=spec["inputs"], params=spec["params"], work_dir=job_dir / "work",
                     progress=Progress(report, is_cancelled=flag.is_set),
                     cache=caches.setdefault(spec["task"], {}), limits=spec["limits"],
                     cancel_event=flag, device=spec["device"])
    return execute(spec["run"], spec["task"], ctx, job_dir, stage=lambda label: report(None, label))


def execute(run, task_name: str, ctx, job_dir: Path, stage=lambda label: None) -> tuple[str, str]:
    """Run a task and write its bundle into ``job_dir`` (``bundle.zip``); returns (state,
    message). Whatever it ends as, nothing but the zip of a done job is left beside job.json."""
    from ..bundle import Bundle, read_bundle, write_bundle, zip_bundle
    from ..runtime import Cancelled
    from . import storage

    work, bundle_dir = ctx.work_dir, job_dir / "bundle"  # both removed at the end (clean_job_dir)
    final, message = "failed", ""
    try:
        storage.private_dir(work)
        if any(u is None or not Path(u.path).is_file() for u in ctx.inputs):
            raise ValueError("an input upload of this job is gone from the server; upload it again")
        result = run(ctx)
        ctx.progress.check()  # cancelled as the pipeline returned: no bundle
        stage("writing bundle")
        if isinstance(result, Bundle):
            write_bundle(result, bundle_dir)
        elif isinstance(result, (str, os.PathLike)):
            bundle_dir = Path(result)
            read_bundle(bundle_dir, load_points=False, load_depth=False)  # validates
        else:
            raise TypeError(f"task {task_name!r} returned {type(result).__name__}, "
                            "expected a Bundle or a bundle directory")
        zip_bundle(bundle_dir, job_dir / BUNDLE_ZIP)
        final = "done"
    except Cancelled as e:  # "cancelled during denoising 4/60": where it stopped, for the user
        where = str(e).removeprefix("cancelled").strip()
        final, message = "cancelled", "cancelled by request" + (f", {where}" if where.startswith("during ") else "")
    except MemoryError:
        message = "out of memory: try a shorter or smaller clip"
    except Exception as e:
        problem = storage.disk_problem(e)
        if problem is not None:
            # Incident: ENOSPC while zipping failed the job with "internal error (see the server
            # log)" (writing error.log failed too) and left .bundle.zip.partial behind.
            message = storage.disk_message(problem, "the job's results could not be written",
                                           disk="the results disk")
        elif isinstance(e, ValueError):  # pipelines raise ValueError with a message for the user
            message = str(e) or type(e).__name__
        else:
            message = f"internal error: {type(e).__name__}: {e}"
            log.error("job %s (%s) failed:\n%s", ctx.job_id, task_name, traceback.format_exc())
            try:
                storage.write_private(job_dir / "error.log", traceback.format_exc())
            except OSError:
                pass
    finally:
        clean_job_dir(job_dir, keep=KEEP_ON_FAILURE + ((BUNDLE_ZIP,) if final == "done" else ()))
    if final == "done" and ctx.cancel_event.is_set():  # cancelled while zipping
        final, message = "cancelled", "cancelled by request"
        clean_job_dir(job_dir, keep=KEEP_ON_FAILURE)
    return final, message


def clean_job_dir(job_dir: Path, keep=KEEP_ON_FAILURE) -> None:
    """Remove everything in a job folder but ``keep``: the scratch folder, the bundle folder and
    whatever a failed write left (``.bundle.zip.partial``, ``.bundle.*.partial``)."""
    try:
        entries = list(Path(job_dir).iterdir())
    except OSError:
        return
    for p in entries:
        if p.name in keep or p.name.startswith(".job.json"):  # the server may be rewriting job.json
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
        except OSError:
            pass
