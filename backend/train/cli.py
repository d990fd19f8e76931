"""``python -m backend train --config tiny --out DIR ...``: train the unified model.

Multi-GPU: ``accelerate launch --num_processes N -m backend train ...`` (or ``torchrun``).
Every run can stop on a time budget (``--minutes``) and continue with ``--resume DIR``
(full state: optimizer, EMA, RNG) or ``--init FOLDER`` (weights only).
"""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--config", default="tiny", help="model config name (tiny, opensora-1.0)")
    p.add_argument("--out", required=True, help="run folder (state, log, loss curve)")
    p.add_argument("--export", default=None, help="where to write the EMA weights (default OUT/model)")
    p.add_argument("--resume", default=None, help="run folder to resume (optimizer, EMA, step)")
    p.add_argument("--init", default=None, help="initialise weights from a model folder (no optimizer state)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per process per step")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--max-steps", type=int, default=10**9)
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this many minutes (0 = no limit)")
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", type=int, default=1,
                   help="train this many steps on each rendered batch (fresh tasks and noise each time)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--textures", default=None,
                   help="folder of photos the synthetic scenes may texture surfaces with (default: procedural only)")
    p.add_argument("--p-geometry", type=float, default=0.5, help="share of clips trained on the geometry task")
    # JOG3R ablations
    p.add_argument("--freeze-backbone", action="store_true", help="train only the geometry decoder and heads")
    p.add_argument("--no-gen-loss", action="store_true", help="L_rec only (JOG3R Table 1 row 1b)")
    p.add_argument("--geometry-block", type=int, default=0, help="block b whose output feeds the decoder")
    p.add_argument("--decoder-mode", choices=["global", "pair"], default=None)


def main(args) -> int:
    from .trainer import train

    train(args)
    return 0
