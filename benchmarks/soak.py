"""Soak: N sequential small jobs through the real client and server; resident memory growth.

    .venv/bin/python benchmarks/soak.py            # 50 echo jobs (upload, run, zip, download)
    .venv/bin/python benchmarks/soak.py --task solve --params '{"engine": "colmap"}' --input clip.mp4

Each job goes the whole way a Blender job goes: upload (validated with PyAV), queue, worker,
bundle written atomically and zipped, downloaded and unzipped by the client. The server's
resident set size (RSS) is sampled after every job. Growth is measured from the end of job 1
(the first job loads PyAV, Pillow and the task's modules once) to the end of the last job.
The default task is the test-only 'echo' (tests/backend/test_server_helpers.py): it decodes
the uploaded clip and returns a real bundle of its frames with synthetic cameras.
"""

from __future__ import annotations

import argparse
import json
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
from tests.backend_tests.test_server_helpers import ECHO_SPEC, make_video  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--task", default="echo")
    ap.add_argument("--params", default='{"frames": 24, "steps": 10}')
    ap.add_argument("--input", type=Path, default=None, help="input clip (default: a 24-frame 160x120 mp4)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="parallax-soak-"))
    clip = args.input or make_video(tmp / "clip.mp4", n=24, w=160, h=120)
    backend = BackendProcess(sys.executable, root=REPO, extra_args=[
        "--device", args.device, "--data-dir", str(tmp / "data"), "--task", ECHO_SPEC, "--keep-jobs", "10"])
    backend.start()
    proc = psutil.Process(backend.pid)
    rss0 = proc.memory_info().rss
    rss, secs = [], []
    try:
        for i in range(args.jobs):
            t0 = time.perf_counter()
            out = run_job(args.task, [clip], json.loads(args.params), backend=backend, out_dir=tmp / "out")
            secs.append(time.perf_counter() - t0)
            shutil.rmtree(out)
            rss.append(proc.memory_info().rss)
            if i in (0, 4, 9, 24) or i == args.jobs - 1:
                print(f"job {i + 1:3d}: {secs[-1] * 1e3:6.0f} ms, server RSS {rss[-1] / 2**20:7.1f} MiB", flush=True)
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
    if args.jobs >= 20:  # a leak keeps growing; allocator warm-up (per-thread arenas) levels off
        warm = (rss[-1] - rss[9]) / rss[9]
        print(f"RSS growth job 10 -> job {args.jobs} (after warm-up): {warm * 100:+.2f}%")
    print("RSS after each job (MiB): " + " ".join(f"{r / 2**20:.0f}" for r in rss))
    print(f"job wall time: median {statistics.median(secs) * 1e3:.0f} ms, max {max(secs) * 1e3:.0f} ms")
    return 0 if growth < 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
