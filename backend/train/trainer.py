"""The training loop: accelerate (1..N GPUs, bf16), AdamW, EMA, checkpoint + resume.

A run writes to ``--out``::

    state/            accelerate state (model, optimizer, EMA, RNG) + progress.json: resume from here
    model/            EMA weights as a diffusers folder (config.json + safetensors, fp16)
    log.jsonl         one line of losses every ``log_every`` steps
    loss.png          loss curves
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..models import ParallaxSTDiT, build_model
from .step import TaskOptions, compute_losses, sample_inputs


def build_model_from_arg(config: str, **overrides):
    """``config``: a name from configs.CONFIGS or a JSON file of ParallaxSTDiT keyword arguments."""
    if config.endswith(".json"):
        return ParallaxSTDiT(**{**json.loads(Path(config).read_text()), **overrides})
    return build_model(config, **overrides)


def backbone_parameters(model):
    return [p for n, p in model.named_parameters() if not n.startswith("geometry.")]


def save_export(model, ema, out: Path, dtype=torch.float16, max_shard_size="15MB") -> Path:
    """EMA weights -> ``out`` as a diffusers folder in ``dtype`` (fp16 keeps tiny under 32 MB;
    15 MB shards fit the GPU host's 16 MiB-per-file return limit)."""
    tmp = ParallaxSTDiT.from_config(model.config)
    tmp.load_state_dict(model.state_dict())
    if ema is not None:
        ema.copy_to(tmp.parameters())
    tmp.to(dtype).save_pretrained(out, safe_serialization=True, max_shard_size=max_shard_size)
    return out


def plot_losses(log_path: Path, png: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("gen", "reg", "disp", "ray", "cam"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts), label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def train(args) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.training_utils import EMAModel

    from . import data as data_mod
    from ..models.components import components_of
    from ..models.text import TextEncoder

    from accelerate.utils import DistributedDataParallelKwargs

    # Ablations leave parts of the network out of the graph (blocks after b, or the backbone).
    ddp = DistributedDataParallelKwargs(find_unused_parameters=bool(args.no_gen_loss or args.freeze_backbone))
    acc = Accelerator(mixed_precision=args.precision if args.precision != "fp32" else "no", kwargs_handlers=[ddp])
    acc._parallax_export = args.export
    out = Path(args.out)
    state_dir = out / "state"
    set_seed(args.seed + acc.process_index)
    overrides = {}
    if args.geometry_block:
        overrides["geometry_block"] = args.geometry_block
    if args.decoder_mode:
        overrides["decoder_mode"] = args.decoder_mode
    if args.init and not args.resume:
        model = ParallaxSTDiT.from_pretrained(args.init, torch_dtype=torch.float32)
    else:
        model = build_model_from_arg(args.config, **overrides)
    opts = TaskOptions(gen_loss=not args.no_gen_loss and not args.freeze_backbone,
                       p_geometry=args.p_geometry)
    if args.freeze_backbone:  # JOG3R ablation 1a: only the decoder and heads learn
        for p in backbone_parameters(model):
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup))
    ema = EMAModel(model.parameters(), decay=args.ema_decay, use_ema_warmup=True, power=0.75,
                   model_cls=ParallaxSTDiT, model_config=model.config)
    model, opt, sched = acc.prepare(model, opt, sched)
    ema.to(acc.device)
    acc.register_for_checkpointing(ema)
    step = 0
    if args.resume:
        acc.load_state(str(Path(args.resume) / "state"))
        ema.to(acc.device)  # EMAModel.load_state_dict leaves its shadow weights on the CPU (run 4's first try died on it)
        step = json.loads((Path(args.resume) / "state" / "progress.json").read_text())["step"]
        acc.print(f"resumed from {args.resume} at step {step}")
    unwrapped = acc.unwrap_model(model)
    cfg = unwrapped.config
    text = TextEncoder(components_of(cfg).text_encoder, max_length=cfg.model_max_length, device=acc.device)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "args.json").write_text(json.dumps({**vars(args), "task_options": asdict(opts)}, indent=1, default=str))
    log_path = out / "log.jsonl"
    t_start = time.time()
    deadline = t_start + args.minutes * 60 if args.minutes else math.inf
    model.train()
    gen = torch.Generator(device=acc.device).manual_seed(args.seed * 1000 + acc.process_index + step)
    render_s = 0.0
    batch = None
    while step < args.max_steps and time.time() < deadline:
        t0 = time.time()
        if step % args.reuse == 0 or batch is None:  # a rendered batch serves ``reuse`` steps
            seeds = data_mod.train_seeds(step // args.reuse, acc.process_index, acc.num_processes, args.batch_size)
            batch = data_mod.render(seeds, cfg.num_frames, cfg.sample_size, acc.device, textures=args.textures)
            hidden, mask = text.encode(batch["captions"])
        render_s += time.time() - t0
        inp = sample_inputs(batch["rgb"], batch["depth"], batch["points"], batch["rays"], batch["c2w"],
                            (hidden.to(acc.device), mask.to(acc.device)), opts, gen)
        with acc.autocast():
            loss, logs = compute_losses(model, inp, opts)
        acc.backward(loss)
        if acc.sync_gradients:
            acc.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unwrapped.parameters())
        step += 1
        if step % args.log_every == 0 or step == 1:
            logs = {k: acc.gather(v.float().reshape(1)).nanmean().item() for k, v in sorted(logs.items())}
            if acc.is_main_process:
                row = {"step": step, "min": round((time.time() - t_start) / 60, 3), **{k: round(v, 5) for k, v in logs.items() if v == v}}
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
        if args.save_every and step % args.save_every == 0:
            _save(acc, unwrapped, ema, out, step)
    _save(acc, unwrapped, ema, out, step)
    elapsed = time.time() - t_start
    if acc.is_main_process:
        plot_losses(log_path, out / "loss.png")
        acc.print(f"done: {step} steps in {elapsed / 60:.2f} min ({render_s / 60:.2f} min rendering+text), "
                  f"{acc.num_processes} process(es), batch {args.batch_size}/process")
    return {"steps": step, "minutes": elapsed / 60}


def _save(acc, unwrapped, ema, out: Path, step: int) -> None:
    acc.wait_for_everyone()
    acc.save_state(str(out / "state"))
    if acc.is_main_process:
        (out / "state" / "progress.json").write_text(json.dumps({"step": step}))
        save_export(unwrapped, ema, Path(getattr(acc, "_parallax_export", None) or out / "model"))
    acc.wait_for_everyone()
