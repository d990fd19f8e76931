"""Soak: N sequential small jobs through the real client and server; resident memory growth.

    .venv/bin/python benchmarks/soak.py            # 50 echo jobs (upload, run, zip, download)
    .venv/bin/python benchmarks/soak.py --task solve --params '{"engine": "colmap"}' --input clip.mp4
    .venv/bin/python benchmarks/soak.py --task solve --hololens 10 \
        --params '{"engine": "colmap", "options": {"max_image_size": 320, "mapper": "global"}}'
    .venv/bin/python benchmarks/soak.py ... --env MALLOC_ARENA_MAX=16 --no-trim  # glibc's default on 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/soak.py --task generate --no-input \
        --params '{"prompt": "a camera orbits a red box", "frames": 4, "steps": 4}'

Each job goes the whole way a Blender job goes: upload (validated with PyAV), queue, worker,
bundle written atomically and zipped, downloaded and unzipped by the client. The server's
resident set size (RSS) is sampled after every job. Growth is measured from the end of job 1
(the first job loads PyAV, Pillow and the task's modules once) to the end of the last job, and
from jobs 5 and 10 (after warm-up: a leak keeps growing, a cache or allocator pool levels off).
``--hololens N`` uses the first N*4 frames (every 4th) of the shared hololens-000 footage as a
540x360 mp4 and passes its known K to the engine, as tests/backend_tests/test_server_solve.py.
``--env K=V`` sets the server's environment (e.g. ``MALLOC_ARENA_MAX=16``, glibc's own limit of
8 per core on 2 cores, to undo the client's default of 2); ``--no-trim`` sets ``PARALLAX_MALLOC_TRIM=0`` (no ``malloc_trim`` after jobs).
The default task is the test-only 'echo' (tests/backend/test_server_helpers.py): it decodes
the uploaded clip and returns a real bundle of its frames with synthetic cameras.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from client import BackendProcess, run_job  # noqa: E402
from tests.backend_tests.test_server_helpers import ECHO_PLUGIN, hololens_mp4, make_video  # noqa: E402


def hololens_clip(path: Path, n: int):
    """n frames (every 4th) of the shared hololens-000 footage as an mp4, and its K."""
    import numpy as np

    try:
        path, data = hololens_mp4(path, list(range(0, 4 * n, 4)))
    except FileNotFoundError as e:
        raise SystemExit(f"--hololens: {e}") from None
    return path, np.loadtxt(data / "K.txt").tolist()


ARENA_ALIGN = 64 * 2**20  # glibc's HEAP_MAX_SIZE on 64-bit: thread arenas are mmapped at this alignment


def memory_breakdown(pid: int) -> dict:
    """Resident MiB by kind, from /proc/<pid>/smaps (Linux): glibc thread arenas (anonymous
    mappings aligned to 64 MiB), the main heap, other anonymous memory (large mmap'd blocks,
    thread stacks, torch/COLMAP pools) and file-backed pages (libraries)."""
    out = {"arenas": 0.0, "arena_count": 0, "heap": 0.0, "anon": 0.0, "files": 0.0}
    kind = "anon"
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            lo = int(head[0].split("-")[0], 16)
            path = head[5] if len(head) > 5 else ""
            if path == "[heap]":
                kind = "heap"
            elif path.startswith("/"):
                kind = "files"
            elif not path and lo % ARENA_ALIGN == 0 and head[1].startswith("rw"):
                kind = "arenas"
                out["arena_count"] += 1
            else:
                kind = "anon"
        elif head[0] == "Rss:":
            out[kind] += int(head[1]) / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--task", default="echo")
    ap.add_argument("--params", default='{"frames": 24, "steps": 10}')
    ap.add_argument("--input", type=Path, default=None, help="input clip (default: a 24-frame 160x120 mp4)")
    ap.add_argument("--hololens", type=int, default=0, metavar="N",
                    help="input: N frames of the shared hololens-000 clip, with its K passed to the engine")
    ap.add_argument("--no-input", action="store_true", help="jobs without inputs (generate from a prompt)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="server environment")
    ap.add_argument("--no-trim", action="store_true", help="no malloc_trim after each job (PARALLAX_MALLOC_TRIM=0)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="parallax-soak-"))
    params = json.loads(args.params)
    if args.hololens:
        clip, K = hololens_clip(tmp / "walk.mp4", args.hololens)
        params.setdefault("options", {})["K"] = K
    else:
        clip = args.input or make_video(tmp / "clip.mp4", n=24, w=160, h=120)
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in args.env)
    if args.no_trim:
        env["PARALLAX_MALLOC_TRIM"] = "0"
    backend = BackendProcess(sys.executable, root=REPO, env=env, extra_args=[
        "--device", args.device, "--data-dir", str(tmp / "data"), *ECHO_PLUGIN, "--keep-jobs", "10"])
    backend.start()
    proc = psutil.Process(backend.pid)
    server_env = proc.environ()  # what the client actually gave the server
    rss0 = proc.memory_info().rss
    rss, secs = [], []
    try:
        for i in range(args.jobs):
            t0 = time.perf_counter()
            out = run_job(args.task, [] if args.no_input else [clip], params, backend=backend, out_dir=tmp / "out")
            secs.append(time.perf_counter() - t0)
            shutil.rmtree(out)
            rss.append(proc.memory_info().rss)
            if i in (0, 1, 2, 4, 9, 24) or i == args.jobs - 1:
                m = memory_breakdown(proc.pid)
                print(f"job {i + 1:3d}: {secs[-1] * 1e3:6.0f} ms, server RSS {rss[-1] / 2**20:7.1f} MiB "
                      f"(thread arenas {m.get('arenas', 0):.0f} MiB in {m.get('arena_count', 0)}, "
                      f"main heap {m.get('heap', 0):.0f}, other anon {m.get('anon', 0):.0f}, "
                      f"files {m.get('files', 0):.0f}; {proc.num_threads()} threads)", flush=True)
        assert backend.pid == proc.pid, "the backend restarted during the soak"
    finally:
        backend.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    growth = (rss[-1] - rss[0]) / rss[0]
    peak = (max(rss) - rss[0]) / rss[0]
    print(f"\n{args.jobs} sequential '{args.task}' jobs, one server process (pid unchanged)")
    print(f"server RSS: idle {rss0 / 2**20:.1f} MiB, after job 1 {rss[0] / 2**20:.1f} MiB, "
          f"after job {args.jobs} {rss[-1] / 2**20:.1f} MiB, max {max(rss) / 2**20:.1f} MiB")
    print(f"RSS growth job 1 -> job {args.jobs}: {growth * 100:+.2f}% (peak {peak * 100:+.2f}%); limit 10%")
    for k in (5, 10):  # a leak keeps growing; allocator warm-up (per-thread arenas) levels off
        if args.jobs >= 2 * k:
            warm = (rss[-1] - rss[k - 1]) / rss[k - 1]
            print(f"RSS growth job {k} -> job {args.jobs} (after warm-up): {warm * 100:+.2f}%")
    print(f"server environment: MALLOC_ARENA_MAX={server_env.get('MALLOC_ARENA_MAX', '(unset)')}, "
          f"PARALLAX_MALLOC_TRIM={server_env.get('PARALLAX_MALLOC_TRIM', '(unset: on)')}")
    print("RSS after each job (MiB): " + " ".join(f"{r / 2**20:.0f}" for r in rss))
    print(f"job wall time: median {statistics.median(secs) * 1e3:.0f} ms, max {max(secs) * 1e3:.0f} ms")
    return 0 if growth < 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
