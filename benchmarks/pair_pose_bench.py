"""Pose from an image pair (InterPose) time per pair, split by stage: the pair-only estimate,
generating the videos, the pose estimation on their frame subsets, the selected video's cameras.

Held-out synthetic wide-baseline pairs (``backend/data/pairs.py``), on whatever device is present;
pair 0 warms up (kernels, allocator) and is not counted.

``python benchmarks/pair_pose_bench.py [--pairs 4] [--videos 4] [--frames 16] [--steps 25] [--device cuda]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import numpy as np
    import torch

    from backend.data.pairs import wide_pairs
    from backend.pipelines.pair_pose import DEFAULT_VIDEOS, RANDOM_SUBSETS, PairPosePipeline
    from backend.pipelines.pair_roles import make_roles
    from backend.runtime import pick_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
    p.add_argument("--frames", type=int, default=None, help="frames per video (default: the model's window)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--k", type=int, default=None, help="frames per subset (default: the pipeline's)")
    p.add_argument("--subsets", type=int, default=RANDOM_SUBSETS)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    gen, est = make_roles(device=str(dev), steps=a.steps, guidance=a.guidance)
    pipe = PairPosePipeline(gen, est, videos=a.videos, frames=a.frames, k=a.k, random_subsets=a.subsets)
    rows = []
    for i, pair in enumerate(wide_pairs(a.pairs + 1, a.size, a.size)):
        t0 = time.perf_counter()
        res = pipe(pair.rgb[0], pair.rgb[1], K=pair.K)
        total = time.perf_counter() - t0
        if i:
            rows.append({"total": total, **{k: res.timings.get(k, 0.0) for k in
                                            ("pair-only", "generation", "pose estimation", "generated cameras")}})
    med = {k: round(float(np.median([r[k] for r in rows])), 3) for k in rows[0]}
    frames = pipe.frames_per_video() if a.videos else None
    print(json.dumps({"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                      "threads": torch.get_num_threads(), "pairs": len(rows), "videos": a.videos, "frames": frames,
                      "steps": a.steps, "guidance": a.guidance, "k": pipe.subset_size(frames) if frames else None,
                      "subsets": a.subsets + 1, "median_s_per_pair": med}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
