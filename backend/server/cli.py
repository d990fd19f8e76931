"""``python -m backend serve``: run the HTTP service the Blender add-on talks to.

The bearer token comes from the environment variable ``PARALLAX_TOKEN`` (never the command
line, which other users can read); without one the server refuses to start unless given
``--insecure-no-token``. It binds to 127.0.0.1 unless ``--host`` says otherwise. With
``--port 0`` it picks a free port; in every case it prints ``PARALLAX_PORT=<n>`` on a line of
its own (stdout, flushed) once it accepts connections.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import sys
import threading
import time
from pathlib import Path

TOKEN_ENV = "PARALLAX_TOKEN"
DATA_DIR_ENV = "PARALLAX_DATA_DIR"


def add_arguments(p) -> None:
    from .config import Limits, Retention

    lim, ret = Limits(), Retention()
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only). A remote host is opt-in.")
    p.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default 8765)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"uploads and job directories (default ${DATA_DIR_ENV} or ~/.cache/parallax/server)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:n] (default auto)")
    p.add_argument("--max-upload-mb", type=float, default=lim.max_upload_bytes / 2**20,
                   help="largest upload in MiB (default %(default).0f)")
    p.add_argument("--max-frames", type=int, default=lim.max_frames, help="most frames per clip or job (default %(default)s)")
    p.add_argument("--max-side", type=int, default=lim.max_side, help="largest width or height in pixels (default %(default)s)")
    p.add_argument("--max-queue", type=int, default=lim.max_queue, help="most jobs waiting (default %(default)s)")
    p.add_argument("--keep-jobs", type=int, default=ret.keep_jobs, help="finished jobs kept (default %(default)s)")
    p.add_argument("--keep-uploads", type=int, default=ret.keep_uploads, help="uploads kept (default %(default)s)")
    p.add_argument("--keep-hours", type=float, default=ret.max_age_s / 3600,
                   help="remove finished jobs and uploads older than this (default %(default).0f)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE and register the backend.server.tasks.Task objects in its "
                        "PARALLAX_TASKS list (plugins, tests)")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit when the process with this id ends (the add-on passes Blender's)")
    p.add_argument("--insecure-no-token", action="store_true",
                   help=f"allow starting without ${TOKEN_ENV}: anyone who can reach the port can use it")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])


def main(args) -> int:
    token = os.environ.pop(TOKEN_ENV, "") or None  # popped: pipelines' subprocesses never see it
    if token is None and not args.insecure_no_token:
        print(f"error: set {TOKEN_ENV} in the environment (a long random string the client also "
              "knows), or pass --insecure-no-token", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(f"warning: serving on {args.host}: reachable from other machines"
              + ("" if token else " WITHOUT a token"), file=sys.stderr)

    from . import memory

    memory.limit_arenas(2)  # before any worker thread mallocs (see memory.py)

    import uvicorn

    from .app import create_app
    from .config import Limits, Retention, ServerConfig
    from .tasks import Task, default_registry

    data_dir = args.data_dir or Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "parallax" / "server")
    config = ServerConfig(
        data_dir=Path(data_dir).expanduser().resolve(), token=token, device=args.device,
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
