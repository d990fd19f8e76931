"""Unified-model benchmark: V2C on held-out synthetic clips (pairwise pose metrics, s/clip)
and T2V+C time for one 16-frame shot, on whatever device is present.

``python benchmarks/model_bench.py [--clips 8] [--steps 25] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch

    from backend.models import load_model
    from backend.runtime import pick_device
    from backend.pipelines.t2v import T2VPipeline, generate_bundle
    from backend.train.evaluate import evaluate

    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--device", default=None)
    p.add_argument("--model", default=None)
    a = p.parse_args()
    dev = pick_device(a.device)
    model = load_model(a.model, device=dev)
    for known_k in (False, True):
        res = evaluate(model, a.clips, known_k=known_k)
        print("V2C", json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}), flush=True)
    pipe = T2VPipeline(model=model, device=dev)
    generate_bundle(pipe, "warm up", steps=2)
    t0 = time.perf_counter()
    b = generate_bundle(pipe, "the camera orbits a red box beside a blue sphere in a room with white walls",
                        steps=a.steps)
    print("T2V+C", json.dumps({"s_per_shot": round(time.perf_counter() - t0, 3), "steps": a.steps,
                               "frames": b.frame_count, "timings": b.timings, "device": str(dev),
                               "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
