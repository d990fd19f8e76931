"""The unified engine's intrinsics on real footage: hololens-000 (540x360 px), 16-frame windows at
strides 2 and 4 from frames 0, 120 and 240, focal estimated. Prints per window mAA@30 and the
solved fx, fy against the clip's K.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/unified_focal_real.py
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.engines import get_engine
from backend.eval.datasets import find_hololens, load_hololens
from backend.geometry.metrics import pairwise_metrics
files, c2w, K = load_hololens(find_hololens(None))
eng = get_engine('unified')
rows = []
for start in (0, 120, 240):
    for stride in (2, 4):
        idx = list(range(start, start + 16 * stride, stride))
        b = eng.solve([str(files[i]) for i in idx])
        m = pairwise_metrics(b.c2w_array(), c2w[idx])
        rows.append((m['mAA@30'], b.cameras[0].fx, b.cameras[0].fy))
        print(start, stride, round(m['mAA@30'], 3), round(b.cameras[0].fx, 1), round(b.cameras[0].fy, 1), flush=True)
a = np.array(rows)
print('truth fx', K[0, 0], 'fy', K[1, 1], '| mean mAA@30', a[:, 0].mean().round(3), 'median fx', np.median(a[:, 1]).round(1), 'median fy', np.median(a[:, 2]).round(1))
