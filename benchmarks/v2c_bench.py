"""V2C time per 16-frame clip, split by stage: network pass, per-frame PnP (with focal), global
alignment (JOG3R temporal terms), on held-out synthetic clips, on whatever device is present.

``python benchmarks/v2c_bench.py [--clips 8] [--device cuda]``
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

    from backend.data.splits import heldout_seeds
    from backend.data.synth import render_batch
    from backend.models import load_model
    from backend.runtime import pick_device
    from backend.pipelines.pointmap_cameras import _global_alignment, _photometric, cameras_from_pointmaps
    from backend.pipelines.v2c import predict_window

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--device", default=None)
    a = p.parse_args()
    dev = pick_device(a.device)
    model = load_model(None, device=dev)
    S = model.config.sample_size
    batch = render_batch(heldout_seeds(a.clips + 1), frames=model.config.num_frames, height=S, width=S, device=str(dev))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rows = []
    for b in range(a.clips + 1):  # clip 0 warms up (kernels, cuDNN, graph pools) and is not counted
        sync()
        t0 = time.perf_counter()
        maps = predict_window(model, batch.rgb[b])
        sync()
        t1 = time.perf_counter()
        sol = cameras_from_pointmaps(maps["points"], maps["conf"], None, align=False)
        t2 = time.perf_counter()
        aligned = _global_alignment(sol, False, maps["points"].device, None)
        sync()
        t3 = time.perf_counter()
        _photometric(aligned, batch.rgb[b], maps["points"].device, None)
        sync()
        t4 = time.perf_counter()
        if b:
            rows.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    net, pnp, ga, photo = (float(np.median(c)) for c in zip(*rows))
    print(json.dumps({"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "clips": a.clips,
                      "median_s": {"network": round(net, 4), "focal+pnp": round(pnp, 4), "global_alignment": round(ga, 4),
                                   "photometric": round(photo, 4), "total": round(net + pnp + ga + photo, 4)}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
