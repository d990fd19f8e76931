"""backend.server.memory: malloc_trim really returns what worker threads freed, and the knobs
respect the environment. Each case runs in a fresh interpreter so pytest's own heap does not
blur the figures. ~2 s."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from backend_tests.test_server_helpers import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")

# Four threads each malloc ~30 MB in 1.5 kB blocks and free all but a few: glibc keeps the pages
# in the threads' arenas (RSS stays up) until malloc_trim hands them back.
PROBE = textwrap.dedent("""
    import json, threading, psutil
    from backend.server import memory
    p = psutil.Process()
    rss = lambda: p.memory_info().rss / 2**20
    base = rss()
    together, survivors = threading.Barrier(4), []
    def work():
        blocks = [bytes(1500) for _ in range(20_000)]
        together.wait()  # all four alive at once: four arenas
        survivors.extend(blocks[::200])  # a few live blocks pin the arena tops: no automatic trim
        blocks.clear()
    ts = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    held = rss()
    trimmed = memory.trim()
    print(json.dumps({"base": base, "held": held, "after": rss(), "trimmed": trimmed,
                      "arenas_applied": memory.limit_arenas(2)}))
""")


def _probe(**env):
    import json
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in dict(os.environ, **env).items() if v is not None})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_trim_returns_freed_thread_memory():
    r = _probe(MALLOC_ARENA_MAX=None, PARALLAX_MALLOC_TRIM=None)
    print(f"RSS: base {r['base']:.0f} MiB, after the threads freed {r['held']:.0f} MiB, after trim {r['after']:.0f} MiB")
    assert r["trimmed"] is True
    assert r["held"] - r["base"] > 20  # glibc kept freed pages (else this test shows nothing)
    assert r["after"] - r["base"] < 0.25 * (r["held"] - r["base"])  # trim gave >= 75% of them back
    assert r["arenas_applied"] is True  # no MALLOC_ARENA_MAX in the environment: mallopt applies


def test_environment_wins():
    r = _probe(MALLOC_ARENA_MAX="4", PARALLAX_MALLOC_TRIM="0")
    assert r["trimmed"] is False and r["arenas_applied"] is False
    assert r["after"] >= 0.9 * r["held"]  # untrimmed: the freed pages are still resident


def test_client_gives_the_backend_two_arenas(tmp_path, monkeypatch):
    from client import BackendProcess
    import psutil

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    bp = BackendProcess(sys.executable, root=REPO, extra_args=["--device", "cpu", "--data-dir", str(tmp_path)])
    try:
        bp.start(wait=False)  # the environment is set at exec: no need to wait for the server
        assert psutil.Process(bp.pid).environ().get("MALLOC_ARENA_MAX") == "2"
    finally:
        bp.stop()
