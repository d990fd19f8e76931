"""Property-based fuzzing of the bundle reader (hypothesis).

For generated bundle.json, cameras.json, npz and frame contents, ``read_bundle`` either
returns a valid bundle or raises the BundleError naming a file of the bundle: never another
exception, never more than a bounded amount of time or memory (measured per example, and the
hostile cases once more in a process under an address-space limit).

PARALLAX_FUZZ_EXAMPLES=5000 runs a longer, randomised search (CI runs a fixed, derandomised
set so that it is reproducible).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from backend import bundle as B  # noqa: E402
from backend_tests.test_bundle import make_bundle  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("PARALLAX_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize="PARALLAX_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SECONDS_PER_READ = 3.0  # a 3-frame bundle reads in milliseconds; generous for a busy 2-core CI
PEAK_BYTES = 64 * 2**20

# -- JSON --------------------------------------------------------------------------------

INTERESTING_NUMBERS = st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30, 10**400, 1e10, 1e300, -1e300, 3.5e38,
                                       float("nan"), float("inf"), float("-inf"), 1e-320, 0.5, 24.0, True, False])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), INTERESTING_NUMBERS,
                    st.text(max_size=12))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=5), max_leaves=25)
PATHS = st.sampled_from(["/etc", "/etc/passwd", "..", "../x", "frames/../..", "frames", "points", "depth",
                         "cameras.json", "bundle.json", "video.mp4", ".", "", "C:/x", "frames\\..\\x", "a\0b",
                         "nothing", "x" * 300])
META_KEYS = ["schema", "schema_version", "id", "task", "engine", "model_id", "created", "fps", "width", "height",
             "frame_count", "source", "scores", "timings", "parts"]
DELETE = object()


def _json_text(obj) -> str:
    return json.dumps(obj, allow_nan=True)  # NaN / Infinity tokens are part of the attack surface


@st.composite
def meta_mutation(draw):
    """(key path, new value or DELETE) for bundle.json."""
    if draw(st.booleans()):
        key = draw(st.sampled_from(B.PART_KEYS))
        return ("parts", key), draw(st.one_of(PATHS, JSON_VALUES, st.just(DELETE)))
    key = draw(st.sampled_from(META_KEYS))
    return (key,), draw(st.one_of(JSON_VALUES, INTERESTING_NUMBERS, st.just(DELETE)))


@st.composite
def camera_mutation(draw):
    """(frame index, key, value) for cameras.json; index None: the whole 'frames' list."""
    if draw(st.integers(0, 9)) == 0:
        return None, "frames", draw(JSON_VALUES)
    index = draw(st.integers(0, 3))  # 3 is past the end: an extra entry
    key = draw(st.sampled_from(["index", "c2w", "fx", "fy", "cx", "cy", "extra"]))
    if key == "c2w":
        value = draw(st.one_of(
            JSON_VALUES,
            st.lists(st.lists(st.one_of(st.floats(), INTERESTING_NUMBERS, st.text(max_size=2)), min_size=4, max_size=4),
                     min_size=4, max_size=4)))
    else:
        value = draw(st.one_of(JSON_VALUES, INTERESTING_NUMBERS, st.just(DELETE), st.floats(0.5, 1e4)))
    return index, key, value


DTYPES = st.sampled_from(["<f2", "<f4", "<f8", "<i4", "|u1", "<u2", "|b1", "<U2", "|S3", "<c8", ">f4", "<M8[s]"])
SHAPES = st.one_of(st.just(()), hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))


@st.composite
def npz_bytes(draw):
    """The bytes of a points (or depth) npz: generated arrays, or a damaged or forged file."""
    kind = draw(st.sampled_from(["good", "arrays", "arrays", "arrays", "random", "truncated", "forged"]))
    if kind == "good":  # well formed points, so that reads get past them too
        n = draw(st.integers(0, 6))
        arrays = dict(xyz=draw(hnp.arrays(np.float32, (n, 3), elements=st.floats(-1e6, 1e6, width=32))),
                      rgb=draw(hnp.arrays(np.uint8, (n, 3))), conf=draw(hnp.arrays(np.float16, (n,))))
        if draw(st.booleans()):
            arrays["dynamic"] = draw(hnp.arrays(bool, (n,)))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()
    if kind == "random":
        return draw(st.binary(max_size=200))
    buf = io.BytesIO()
    if kind == "forged":  # a header promising far more than the file holds
        shape = draw(st.sampled_from([(10**9, 3), (2**40,), (3, 10**12), (-5, 3)]))
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": draw(DTYPES), "fortran_order": False,
                                                      "shape": shape})
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(draw(st.sampled_from(["xyz.npy", "depth.npy"])), header.getvalue() + bytes(64))
        return buf.getvalue()
    arrays = {}
    for key in draw(st.sets(st.sampled_from(["xyz", "rgb", "conf", "dynamic", "depth", "junk"]), max_size=6)):
        dtype = np.dtype(draw(DTYPES))
        elements = None
        if dtype.kind == "f":
            elements = st.floats(width=dtype.itemsize * 8, allow_subnormal=False)
        arrays[key] = draw(hnp.arrays(dtype, draw(SHAPES), elements=elements))
    if draw(st.booleans()):  # the right shapes, odd values: the common case of a wrong value
        n = draw(st.integers(0, 6))
        arrays.update(xyz=draw(hnp.arrays(np.float64, (n, 3), elements=st.floats() | INTERESTING_NUMBERS.filter(
                          lambda v: isinstance(v, float)))),
                      rgb=np.zeros((n, 3), np.uint8), conf=np.ones(n, np.float16))
    np.savez(buf, **arrays)
    data = buf.getvalue()
    if kind == "truncated":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    return data


@st.composite
def frame_bytes(draw):
    kind = draw(st.sampled_from(["png", "empty", "jpeg", "random"]))
    if kind == "png":
        h, w = draw(st.sampled_from([(15, 20), (15, 20), (20, 15), (1, 1), (15, 21)]))
        return B.encode_png(np.zeros((h, w, 3), np.uint8))
    if kind == "jpeg":
        return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(50)
    return b"" if kind == "empty" else draw(st.binary(max_size=64))


@st.composite
def damage(draw):
    """A list of changes to apply to a valid 3-frame bundle."""
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        # Mostly the parts behind bundle.json: most bundle.json changes stop the read there.
        what = draw(st.sampled_from(["meta", "cameras", "cameras", "points", "points", "points", "depth", "frame",
                                     "frame", "raw_json" if draw(st.booleans()) else "deep"]))
        if what == "meta":
            changes.append(("meta", draw(meta_mutation())))
        elif what == "cameras":
            changes.append(("cameras", draw(camera_mutation())))
        elif what in ("points", "depth"):
            changes.append((what, (draw(st.integers(0, 2)), draw(npz_bytes()))))
        elif what == "frame":
            changes.append(("frame", (draw(st.integers(0, 2)), draw(frame_bytes()))))
        elif what == "raw_json":
            changes.append(("raw_json", (draw(st.sampled_from(["bundle.json", "cameras.json"])),
                                         draw(st.binary(max_size=100)))))
        else:
            depth = draw(st.sampled_from([10, 500, 5000, 100_000]))
            changes.append(("deep", (draw(st.sampled_from(["bundle.json", "cameras.json"])), depth)))
    return changes


def _load(path: Path):
    """The JSON object in ``path``, or None when an earlier change already broke it."""
    try:
        obj = json.loads(path.read_bytes())
    except (ValueError, RecursionError, OSError):
        return None
    return obj if isinstance(obj, dict) else None


def _apply(root: Path, changes) -> None:
    for what, arg in changes:
        if what == "meta":
            (keys, value) = arg
            meta = _load(root / "bundle.json")
            if meta is None:
                continue
            target = meta
            for k in keys[:-1]:
                if not isinstance(target.get(k), dict):
                    target[k] = {}
                target = target[k]
            if value is DELETE:
                target.pop(keys[-1], None)
            else:
                target[keys[-1]] = value
            (root / "bundle.json").write_text(_json_text(meta))
        elif what == "cameras":
            index, key, value = arg
            cams = _load(root / "cameras.json")
            if cams is None:
                continue
            if index is None:
                cams["frames"] = value
            else:
                frames = cams.get("frames")
                if isinstance(frames, list):
                    while len(frames) <= index:
                        frames.append({})
                    if isinstance(frames[index], dict):
                        if value is DELETE:
                            frames[index].pop(key, None)
                        else:
                            frames[index][key] = value
            (root / "cameras.json").write_text(_json_text(cams))
        elif what in ("points", "depth"):
            index, data = arg
            (root / what).mkdir(exist_ok=True)
            (root / what / B.ARRAY_NAME.format(index)).write_bytes(data)
        elif what == "frame":
            index, data = arg
            (root / "frames" / B.FRAME_NAME.format(index)).write_bytes(data)
        elif what == "raw_json":
            name, data = arg
            (root / name).write_bytes(data)
        else:
            name, depth = arg
            (root / name).write_text('{"schema": "parallax.bundle", "x": ' + "[" * depth + "]" * depth + "}")


def _check_valid(b: B.Bundle, load_points: bool, load_depth: bool) -> None:
    """What a returned bundle guarantees to the importer."""
    assert 1 <= b.frame_count <= B.MAX_FRAME_COUNT and 1 <= b.width <= B.MAX_SIDE and 1 <= b.height <= B.MAX_SIDE
    assert B.FPS_RANGE[0] <= b.fps <= B.FPS_RANGE[1] and b.task in B.TASKS
    assert isinstance(b.source, dict) and isinstance(b.scores, dict) and isinstance(b.timings, dict)
    assert isinstance(b.id, str) and b.id
    root = b.path
    if b.frames is not None:
        assert len(b.frames) == b.frame_count
        for f in b.frames:
            assert root in f.resolve().parents and B.png_size(f) == (b.width, b.height)
    if b.cameras is not None:
        assert [c.index for c in b.cameras] == list(range(b.frame_count))
        for c in b.cameras:
            assert all(np.isfinite(np.float32(v)) for v in (c.fx, c.fy, c.cx, c.cy)) and c.fx > 0 and c.fy > 0
            if c.c2w is not None:
                assert c.c2w.shape == (4, 4) and np.isfinite(c.c2w.astype(np.float32)).all()
    if load_points and b.points is not None:
        assert len(b.points) == b.frame_count
        for p in b.points:
            assert p.xyz.dtype == np.float32 and p.xyz.ndim == 2 and p.xyz.shape[1] == 3
            assert np.isfinite(p.xyz).all() and p.rgb.dtype == np.uint8 and p.rgb.shape == p.xyz.shape
            assert p.conf.dtype == np.float16 and p.conf.shape == (len(p.xyz),)
            assert p.dynamic is None or (p.dynamic.dtype == bool and p.dynamic.shape == (len(p.xyz),))
    if load_depth and b.depth is not None:
        for d in b.depth:
            assert d.depth.shape == (b.height, b.width) and d.depth.dtype == np.float32


_TEMPLATE: dict = {}


def _template() -> Path:
    """One valid 3-frame bundle per process, copied for each example."""
    if "path" not in _TEMPLATE:
        root = Path(tempfile.mkdtemp(prefix="parallax-fuzz-template-"))
        _TEMPLATE["path"] = B.write_bundle(make_bundle(frames=3, width=20, height=15, points=8, unsolved=(1,)),
                                           root / "bundle")
    return _TEMPLATE["path"]


def _read_measured(root: Path, load_points: bool, load_depth: bool):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        return B.read_bundle(root, load_points=load_points, load_depth=load_depth), None
    except B.BundleError as e:
        return None, e
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert elapsed < SECONDS_PER_READ, f"read took {elapsed:.2f} s"
        assert peak < PEAK_BYTES, f"read allocated {peak / 2**20:.0f} MiB at its peak"


@FUZZ
@given(changes=damage(), load_points=st.booleans(), load_depth=st.booleans())
def test_reader_returns_a_valid_bundle_or_names_the_file(changes, load_points, load_depth):
    import shutil
    with tempfile.TemporaryDirectory(prefix="parallax-fuzz-") as tmp:
        root = Path(tmp) / "bundle"
        shutil.copytree(_template(), root)
        _apply(root, changes)
        bundle, error = _read_measured(root, load_points, load_depth)
        event("read" if error is None else f"refused: {Path(error.path).relative_to(root.parent).as_posix()}"
              if Path(error.path).is_relative_to(root.parent) else "refused elsewhere")
        if error is None:
            _check_valid(bundle, load_points, load_depth)
        else:
            named = Path(error.path)
            # The file (or folder) named is the bundle or one of its own, never somewhere else.
            assert named == root or root in named.parents, error
            assert str(error).startswith(error.path)


# -- hostile inputs, under a hard memory limit ----------------------------------------------

HOSTILE = r'''
import io, json, resource, sys, zipfile
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[2])
from backend import bundle as B

root = Path(sys.argv[1])
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

def fresh(name):
    import shutil
    d = root / name
    shutil.copytree(root / "template", d)
    return d

def header(shape, descr="<f4"):
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": False, "shape": shape})
    return b.getvalue()

cases = {}
d = fresh("billion_frames")
meta = json.loads((d / "bundle.json").read_text()); meta["frame_count"] = 10**9
(d / "bundle.json").write_text(json.dumps(meta)); cases["billion_frames"] = d

d = fresh("billion_points")
with zipfile.ZipFile(d / "points" / "000000.npz", "w") as zf:
    for k, shape, descr in (("xyz", (10**9, 3), "<f4"), ("rgb", (10**9, 3), "|u1"), ("conf", (10**9,), "<f2")):
        zf.writestr(k + ".npy", header(shape, descr) + bytes(64))
cases["billion_points"] = d

# A member whose zip header claims 12 GB (a shape to match) over a few bytes of data.
d = fresh("lying_sizes")
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as zf:
    zf.writestr("xyz.npy", header((10**9, 3)) + bytes(64))
    zf.writestr("rgb.npy", header((10**9, 3), "|u1") + bytes(64))
    zf.writestr("conf.npy", header((10**9,), "<f2") + bytes(64))
raw = bytearray(buf.getvalue())
at = raw.find(b"PK\x01\x02")
raw[at + 24:at + 28] = (0xFFFFFFF0).to_bytes(4, "little")
(d / "points" / "000001.npz").write_bytes(bytes(raw)); cases["lying_sizes"] = d

d = fresh("deep_json")
(d / "bundle.json").write_text("[" * 1_000_000 + "]" * 1_000_000); cases["deep_json"] = d

d = fresh("million_cameras")
(d / "cameras.json").write_text(json.dumps({"convention": "opencv_c2w", "frames": [{}] * 1_000_000}))
cases["million_cameras"] = d

d = fresh("many_npz_entries")
with zipfile.ZipFile(d / "points" / "000002.npz", "w") as zf:
    for i in range(20000):
        zf.writestr(f"a{i}.npy", b"")
cases["many_npz_entries"] = d

bomb = root / "bomb.zip"
with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    zf.writestr("bundle.json", "{}")
    with zf.open("points/000000.npz", "w", force_zip64=True) as m:
        for _ in range(1024):
            m.write(bytes(1 << 20))  # 1 GiB of zeros, about 1 MB zipped
cases["zip_bomb"] = bomb

for name, path in cases.items():
    try:
        B.read_bundle(path)
    except B.BundleError as e:
        print(name, "refused:", str(e)[len(str(path)):][:90])
    else:
        raise SystemExit(f"{name}: read without error")
print("all refused")
'''


def test_hostile_bundles_are_refused_under_a_memory_limit(tmp_path):
    """Each hostile case would need gigabytes (or minutes) if read naively; under a 1 GiB
    address-space limit each must end in a BundleError, and the whole run in seconds."""
    B.write_bundle(make_bundle(frames=3, width=20, height=15, points=8), tmp_path / "template")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", HOSTILE, str(tmp_path), str(REPO), str(2**30)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all refused" in r.stdout
    # Building the 1 GiB bomb zip is most of this; reading all the cases is well under a second each.
    assert time.perf_counter() - t0 < 120
