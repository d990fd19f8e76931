"""``python -m backend serve``: run the HTTP service the Blender add-on talks to.

The bearer token comes from the environment variable ``PARALLAX_TOKEN`` (never the command
line, which other users can read); without one the server refuses to start unless given
``--insecure-no-token``. It binds to 127.0.0.1 unless ``--host`` says otherwise. With
``--port 0`` it picks a free port; in every case it prints ``PARALLAX_PORT=<n>`` on a line of
its own (stdout, flushed) once it accepts connections.

Every flag is checked before anything starts, with a one-line error and exit status 2 (issue
12, item 5: ``--max-queue 0`` refused every job, ``--keep-jobs 0`` deleted results before
their download, ``--max-upload-mb -1`` was accepted and ``--port 70000`` printed a traceback).

Files are private: the process runs with ``umask 077`` (see storage.py).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import ipaddress
import math
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

TOKEN_ENV = "PARALLAX_TOKEN"
DATA_DIR_ENV = "PARALLAX_DATA_DIR"


def _number(kind, lo=None, hi=None, lo_open=False, what=""):
    """An argparse type: ``kind`` (int or float), finite, within [lo, hi] (lo excluded when
    ``lo_open``); the error says the range and what the value means."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        bad = not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo)) \
            or (hi is not None and value > hi)
        if bad:
            bound = f"more than {_fmt(lo)}" if lo_open else (f"{_fmt(lo)} to {_fmt(hi)}" if hi is not None
                                                             else f"at least {_fmt(lo)}")
            if lo_open and hi is not None:
                bound += f" and at most {_fmt(hi)}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {bound}{what}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _fmt(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda or cuda:N")
    return text


def add_arguments(p) -> None:
    from .config import Limits, Retention, ServerConfig

    lim, ret = Limits(), Retention()

    def one_line_error(message: str):  # argparse's default is the whole usage, then the error
        p.exit(2, f"{p.prog}: error: {message} (see --help)\n")

    p.error = one_line_error
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only). A remote host is opt-in.")
    p.add_argument("--port", type=_number(int, 0, 65535, what=" (0 picks a free port)"), default=8765,
                   help="port; 0 picks a free one (default 8765)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"uploads and job directories (default ${DATA_DIR_ENV} or ~/.cache/parallax/server)")
    p.add_argument("--device", type=_device, default="auto", help="auto, cpu or cuda[:n] (default auto)")
    p.add_argument("--max-upload-mb", type=_number(float, 0, 2**30, lo_open=True, what=" MiB"),
                   default=lim.max_upload_bytes / 2**20, help="largest upload in MiB (default %(default).0f)")
    p.add_argument("--max-frames", type=_number(int, lim.min_video_frames, 10**7, what=" frames"),
                   default=lim.max_frames, help="most frames per clip or job (default %(default)s)")
    p.add_argument("--max-side", type=_number(int, 1, 65536, what=" pixels"), default=lim.max_side,
                   help="largest width or height in pixels (default %(default)s)")
    p.add_argument("--max-queue", type=_number(int, 1, 10**6, what=" (0 would refuse every job)"),
                   default=lim.max_queue, help="most jobs waiting (default %(default)s)")
    p.add_argument("--keep-jobs", type=_number(int, 1, 10**7, what=" (0 would delete results before "
                                                                     "their download)"),
                   default=ret.keep_jobs, help="finished jobs kept (default %(default)s)")
    p.add_argument("--keep-uploads", type=_number(int, 1, 10**7), default=ret.keep_uploads,
                   help="uploads kept (default %(default)s); an upload younger than "
                        f"{ret.claim_s / 60:.0f} minutes, or named by a waiting job, is always kept")
    p.add_argument("--keep-hours", type=_number(float, 0, 10**6, lo_open=True, what=" hours"),
                   default=ret.max_age_s / 3600,
                   help="remove finished jobs and uploads older than this (default %(default).0f)")
    p.add_argument("--cancel-grace-s", type=_number(float, 0, 3600, lo_open=True, what=" seconds"),
                   default=ServerConfig.cancel_grace_s,
                   help="a cancelled job whose engine does not stop within this many seconds is ended "
                        "with its worker process (default %(default)g)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE and register the backend.server.tasks.Task objects in its "
                        "PARALLAX_TASKS list (plugins, tests)")
    p.add_argument("--parent-pid", type=_number(int, 1, 2**31 - 1), default=None,
                   help="exit when the process with this id ends (the add-on passes Blender's)")
    p.add_argument("--insecure-no-token", action="store_true",
                   help=f"allow starting without ${TOKEN_ENV}: anyone who can reach the port can use it")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])


def _check_bind(host: str, port: int) -> str:
    """Why the server could not listen on host:port, or "" (checked before the heavy imports;
    uvicorn would say it too, later and less plainly)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        return f"--host {host}: not an address of this machine ({e})"
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(addr)
        except OSError as e:
            if port and e.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                return f"--port {port}: the port is in use (another server?); pass another, or 0 for a free one"
            return f"--host {host} --port {port}: cannot listen there ({e.strerror or e})"
    return ""


def main(args) -> int:
    token = os.environ.pop(TOKEN_ENV, "") or None  # popped: pipelines' subprocesses never see it
    if token is None and not args.insecure_no_token:
        print(f"error: set {TOKEN_ENV} in the environment (a long random string the client also "
              "knows), or pass --insecure-no-token", file=sys.stderr)
        return 2
    problem = _check_bind(args.host, args.port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(f"warning: serving on {args.host}: reachable from other machines"
              + ("" if token else " WITHOUT a token"), file=sys.stderr)

    from . import memory, storage

    os.umask(storage.UMASK)  # everything the server (and its engine worker) writes is private
    data_dir = args.data_dir or Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "parallax" / "server")
    try:
        data_dir = storage.prepare_data_dir(Path(data_dir))
    except storage.DataDirError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    memory.limit_arenas(2)  # before any worker thread mallocs (see memory.py)

    import uvicorn

    from .app import create_app
    from .config import Limits, Retention, ServerConfig
    from .tasks import Task, default_registry

    config = ServerConfig(
        data_dir=data_dir, token=token, device=args.device, cancel_grace_s=args.cancel_grace_s,
        limits=Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_frames=args.max_frames,
                      max_side=args.max_side, max_queue=args.max_queue),
        retention=Retention(keep_jobs=args.keep_jobs, keep_uploads=args.keep_uploads,
                            max_age_s=args.keep_hours * 3600),
    )
    registry = default_registry()
    for module_name in args.plugin:
        try:
            tasks = list(getattr(importlib.import_module(module_name), "PARALLAX_TASKS"))
        except (ImportError, AttributeError, TypeError) as e:
            print(f"error: --plugin {module_name}: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        for task in tasks:
            if not isinstance(task, Task):
                print(f"error: --plugin {module_name}: {task!r} is not a Task", file=sys.stderr)
                return 2
            registry.register(task)

    app = create_app(config, registry)
    server = _Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                    access_log=False, timeout_graceful_shutdown=5))
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, server), daemon=True).start()
    server.run()
    return 0 if server.started else 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _watch_parent(pid: int, server) -> None:
    """Blender died without stopping us (crash, kill -9): exit instead of lingering."""
    while not server.should_exit:
        if not _pid_alive(pid):
            print(f"parent process {pid} is gone; shutting down", file=sys.stderr, flush=True)
            server.should_exit = True
            return
        time.sleep(1.0)


def _pid_alive(pid: int) -> bool:
    try:
        import psutil

        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    except Exception:  # psutil.NoSuchProcess between the two calls
        return False


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:  # listening: now the port line is true
                port = self.servers[0].sockets[0].getsockname()[1]
                print(f"PARALLAX_PORT={port}", flush=True)

    return Server


def _Server(config):
    return _server_class()(config)
