"""T2V and T2V+C with the unified model (JOG3R sec. 3.2, Fig. 3).

Sampling is flow matching with diffusers' ``FlowMatchEulerDiscreteScheduler`` and
classifier-free guidance (conditional and null-caption rows in one batch). The schedule ends
at the geometry noise level (t = 5 of 1000): in T2V+C the last denoising step's forward pass
also runs the geometry branch on block b (for the null-caption row, as in training), so the
cameras come with the video from the same passes, with no extra forward. Keyframes (frame
index -> image) are given clean through the frame mask and re-imposed after every step,
which is the interpolation mode InterPose uses.

Fast sampling on a CPU (issue 17; ``benchmarks/cpu_shot_bench.py``, figures in
``benchmarks/results/cpu_shot.jsonl``): :class:`SamplerOptions` picks a multistep flow solver (diffusers'
``UniPCMultistepScheduler`` / ``DPMSolverMultistepScheduler`` with ``prediction_type=
"flow_prediction"`` on the same sigmas, 1 down to the geometry level), guidance on the first
``cfg_steps`` steps only (one row per pass after that), bf16 autocast on the CPU, and cheaper
camera optimisations. :data:`FAST_CPU` is the measured preset (``generate --fast``). The
defaults (``SamplerOptions()``: Euler, guidance on every step, 300 alignment and 3 x 80
photometric iterations) are the shipped sampler, unchanged bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch

from ..runtime import Progress
from .common import LazyModel, resize_frames
from .v2c import GEOMETRY_T, PHOTOMETRIC

SCHEDULERS = ("euler", "unipc", "dpm++")


@dataclass(frozen=True)
class SamplerOptions:
    """How T2V(+C) samples and solves its cameras, beyond ``steps`` and ``guidance``.

    Args:
        scheduler (`str`): ``"euler"`` (diffusers' ``FlowMatchEulerDiscreteScheduler``, the
            shipped sampler), ``"unipc"`` (``UniPCMultistepScheduler``, bh2, order 2) or
            ``"dpm++"`` (``DPMSolverMultistepScheduler``, dpmsolver++ 2M), the multistep ones
            with ``prediction_type="flow_prediction"`` and ``use_flow_sigmas`` (the model predicts
            the flow velocity noise - clean).
        shift (`float`): time shift of the sigmas, ``shift * s / (1 + (shift - 1) * s)``
            (SD3's; > 1 spends more steps at high noise); the last sigma stays the geometry level.
        cfg_steps (`int`, *optional*): classifier-free guidance on the first ``cfg_steps``
            steps only (None: all); later steps run the prompt row alone (half the batch), and a
            last step that also makes the cameras runs the null-caption row alone (the geometry
            heads were trained on it), whose velocity moves the frames by sigma = 0.005 of it.
        autocast (`bool`, *optional*): bf16 autocast; None: on CUDA only (the shipped choice).
        alignment_iters (`int`), photometric_iters (`int`, *optional*): iterations of the
            cameras' global alignment and of the photometric refinement per blur level (None:
            ``geometry.photometric.ITERS_PER_LEVEL``).
    """

    scheduler: str = "euler"
    shift: float = 1.0
    cfg_steps: Optional[int] = None
    autocast: Optional[bool] = None
    alignment_iters: int = 300
    photometric_iters: Optional[int] = None

    def __post_init__(self):
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, not {self.scheduler!r}")
        if not self.shift > 0:
            raise ValueError(f"shift must be positive, got {self.shift}")
        if self.cfg_steps is not None and self.cfg_steps < 0:
            raise ValueError(f"cfg_steps must be >= 0 or None, got {self.cfg_steps}")
        if self.alignment_iters < 1 or (self.photometric_iters is not None and self.photometric_iters < 1):
            raise ValueError("alignment_iters and photometric_iters must be at least 1")


@dataclass(frozen=True)
class Preset:
    """Steps, guidance and :class:`SamplerOptions` that go together."""

    steps: int
    guidance: float
    options: SamplerOptions


def native_bf16_cpu() -> bool:
    """Whether this CPU does bf16 arithmetic natively (AVX512-BF16 or AMX): there bf16 autocast
    halved a pass (measured 0.64 s against 1.31 s of CPU time, one thread); elsewhere oneDNN
    converts every operand and bf16 is no faster, so the preset stays fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # not Linux: no way to tell, keep fp32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


DEFAULT_OPTIONS = SamplerOptions()
# The CPU preset, chosen with benchmarks/cpu_shot_bench.py on the shared 2-core dev machine (one
# torch thread, 3 held-out prompts, the same seeds as the 25-step default). The rule: the median
# prompt's cameras within 1 deg (rotation) of the 25-step default's, and frames within twice the
# default's own step error (UniPC at 16 steps differs from it by 6.7 uint8 levels: <= 13.4).
# UniPC at 12 steps with bf16 (where the CPU has it) and 150 alignment / 3 x 40 photometric
# iterations: 18.1 s a 16-frame shot at load 3.8, 27.0 s at load 4.9 (the default, 25 Euler steps
# in fp32: 95 s at load 3.5); pixel difference 9.7, rotation difference 0.65 deg on the median
# prompt. 8 steps (11.6 s) failed the pixel bar (17.1, no better than Euler at 8 steps).
FAST_CPU = Preset(steps=12, guidance=5.0, options=SamplerOptions(scheduler="unipc", autocast=native_bf16_cpu(),
                                                                  alignment_iters=150, photometric_iters=40))


def sigma_schedule(steps: int, shift: float = 1.0, end: float = GEOMETRY_T / 1000.0) -> list:
    """``steps`` sigmas from 1 down to ``end`` (the geometry noise level), evenly spaced before
    the time shift; shift 1 is the shipped ``np.linspace(1, end, steps)``."""
    if shift == 1.0:
        return np.linspace(1.0, end, steps).tolist()
    u_end = end / (shift - (shift - 1) * end)  # the unshifted point that the shift takes to ``end``
    u = np.linspace(1.0, u_end, steps)
    return (shift * u / (1 + (shift - 1) * u)).tolist()


def make_scheduler(name: str, sigmas: list, device):
    """A diffusers flow scheduler set to evaluate the model at ``sigmas`` (then step to 0), and the
    model timesteps (sigma * 1000) of its passes."""
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    if name == "euler":
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        sched.set_timesteps(sigmas=sigmas, device=device)
        return sched, sched.timesteps
    # The multistep solvers work in log-SNR, where sigma = 1 (alpha = 0) is infinite: start a hair below.
    sig = np.asarray(sigmas, dtype=np.float64)
    sig[0] = min(sig[0], 1.0 - 1e-6)
    if name == "unipc":
        sched = UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction",
                                        use_flow_sigmas=True, flow_shift=1.0, solver_order=2)
        sched.set_timesteps(sigmas=sig.copy(), device=device)
    elif name == "dpm++":
        sched = DPMSolverMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction",
                                            use_flow_sigmas=True, flow_shift=1.0, algorithm_type="dpmsolver++",
                                            solver_order=2)
        sched.set_timesteps(len(sig), device=device)
        # its own flow sigmas end at 1/1000; ours end at the geometry level, where the cameras come from
        sched.sigmas = torch.tensor([*sig, 0.0], dtype=torch.float32)
        sched.timesteps = torch.tensor(sig * 1000, dtype=torch.float32, device=device)
    else:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, not {name!r}")
    sched.set_begin_index(0)
    return sched, (sched.sigmas[:-1] * 1000).to(device)


class T2VPipeline(LazyModel):
    """T2V(+C) with the unified model; ``options`` (:class:`SamplerOptions`, default the shipped
    sampler) is what calls that name none use (``generate --fast`` sets ``FAST_CPU.options``)."""

    def __init__(self, model=None, model_path=None, device=None, text_encoder=None,
                 options: Optional[SamplerOptions] = None):
        super().__init__(model, model_path, device)
        self._text = text_encoder
        self.options = options or DEFAULT_OPTIONS

    @property
    def text(self):
        if self._text is None:
            from ..models.components import components_of
            from ..models.text import TextEncoder

            cfg = self.model.config
            self._text = TextEncoder(components_of(cfg).text_encoder, max_length=cfg.model_max_length,
                                     device=self.device)
        return self._text

    @torch.no_grad()
    def __call__(self, prompt: str, frames: int | None = None, steps: int = 25, guidance: float = 5.0,
                 seed: int = 0, camera: bool = True, geometry_t: float = GEOMETRY_T, keyframes: dict | None = None,
                 progress=None, options: Optional[SamplerOptions] = None) -> dict:
        """Returns {"video": (F, S, S, 3) uint8, "geometry": maps of the null row or None,
        "timings": {...}, "forwards": number of network passes, "rows": batch rows over all
        passes (the CPU's cost: guidance doubles a pass)}. ``options``: None, the pipeline's."""
        from ..models.autoencoder import codec_for, frames_to_tensor, tensor_to_frames

        progress = Progress.of(progress, device=self.device)
        if self._model is None:  # a served pipeline is loaded once: no backwards "loading" stage
            progress(0.0, "loading model")
        with progress.timed("load"):
            model = self.model
        cfg = model.config
        n = int(frames or cfg.num_frames)
        if not 1 <= n <= cfg.num_frames:
            raise ValueError(f"this model generates at most {cfg.num_frames} frames, asked for {n}")
        dev = next(model.parameters()).device
        codec = codec_for(cfg, dev)
        S = cfg.sample_size
        with progress.timed("text"):
            hidden, mask = self.text.encode([prompt]) if prompt and guidance != 0 else (None, None)
        g = torch.Generator(device=dev).manual_seed(seed)
        x = torch.randn((1, cfg.in_channels, n, S, S), generator=g, device=dev)
        frame_mask = torch.zeros(1, n, dtype=torch.bool, device=dev)
        given = None
        if keyframes:
            frames_px = torch.stack([torch.as_tensor(np.asarray(v)) for v in keyframes.values()])
            size = S * getattr(codec, "scale", 1)
            z = codec.encode(frames_to_tensor(resize_frames(frames_px, size)[None].to(dev)))
            idx = torch.tensor(list(keyframes), device=dev)
            given = (idx, z)
            frame_mask[0, idx] = True
            x[:, :, idx] = z
        opts = options or self.options
        sched, timesteps = make_scheduler(opts.scheduler, sigma_schedule(steps, opts.shift, geometry_t / 1000.0), dev)
        cond = hidden is not None
        autocast = dev.type == "cuda" if opts.autocast is None else bool(opts.autocast)
        geo, forwards, rows_run = None, 0, 0
        for i, t in enumerate(timesteps):
            progress(0.05 + 0.85 * i / steps, f"denoising {i + 1}/{steps}")  # raises Cancelled when asked
            last = i == len(timesteps) - 1
            geometry = camera and last
            guided = cond and (opts.cfg_steps is None or i < opts.cfg_steps)
            # Rows of this pass: prompt + null (guided), the prompt alone (unguided), or the null
            # row alone (no prompt; or an unguided last step that makes the cameras: the heads'
            # training row).
            prompt_row = cond and (guided or not geometry)
            xin = torch.cat([x, x]) if guided else x
            fm = frame_mask.expand(xin.shape[0], n)
            with progress.timed("network"), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(xin, t.expand(xin.shape[0]), hidden.expand(xin.shape[0], -1, -1) if prompt_row else None,
                            mask.expand(xin.shape[0], -1) if prompt_row else None, frame_mask=fm,
                            drop_caption=torch.tensor([False, True], device=dev) if guided else None,
                            geometry=geometry,
                            geometry_rows=torch.tensor([xin.shape[0] - 1], device=dev) if geometry else None)
            forwards += 1
            rows_run += xin.shape[0]
            v = out.sample.float()
            if guided:
                v = v[1:] + guidance * (v[:1] - v[1:])
            if geometry:
                geo = {k: val[0].float() for k, val in out.geometry.items()}
            x = sched.step(v, t, x).prev_sample
            if given is not None:
                x[:, :, given[0]] = given[1]
        progress(0.92, "decoding")
        with progress.timed("decode"):
            video = tensor_to_frames(codec.decode(x))[0].cpu()
            if given is not None:  # exact pixels of the keyframes (no resampling round trip)
                video[given[0].cpu()] = resize_frames(frames_px, video.shape[1])
        return {"video": video, "geometry": geo, "timings": dict(progress.timings), "forwards": forwards,
                "rows": rows_run}


def generate_bundle(pipe: T2VPipeline, prompt: str, frames=None, seed=0, camera=True, steps=25, guidance=5.0,
                    keyframes=None, progress=None, options: Optional[SamplerOptions] = None):
    """Run T2V(+C) and package the result as a ``generate`` Bundle. ``keyframes``: frame index
    -> (S, S, 3) uint8 image given clean (interpolation). ``options``: sampling and camera
    iterations (None: the pipeline's, see :class:`SamplerOptions`)."""
    from ..bundle import Bundle
    from .assemble import camera_frames, pointmap_parts
    from .pointmap_cameras import cameras_from_pointmaps

    progress = Progress.of(progress, device=pipe.device)
    opts = options or pipe.options
    res = pipe(prompt, frames=frames, seed=seed, camera=camera, steps=steps, guidance=guidance,
               keyframes=keyframes, progress=progress, options=opts)
    video = res["video"]
    n, S = video.shape[0], video.shape[1]
    b = Bundle(task="generate", width=S, height=S, frame_count=n, fps=8.0, engine="unified",
               model_id=pipe.model_id, frames=list(video.numpy()),
               source={"prompt": prompt, "seed": seed, "steps": steps, "guidance": guidance})
    if opts != DEFAULT_OPTIONS:  # the shipped sampler's bundles stay as they were
        b.source["sampler"] = asdict(opts)
    if camera and res["geometry"] is not None:
        progress(0.95, "cameras")
        with progress.timed("alignment"):
            pts = res["geometry"]["points"]
            sol = cameras_from_pointmaps(pts, res["geometry"]["conf"],  # V2C's cameras, photometric refinement included
                                         frames=resize_frames(video, pts.shape[1]).to(pts.device) if PHOTOMETRIC else None,
                                         alignment_iters=opts.alignment_iters, photometric_iters=opts.photometric_iters)
        f, c = float(sol["K"][0, 0]), (S - 1) / 2  # one focal, centred: the square frames' own camera
        b.cameras = camera_frames(sol["c2w"], torch.tensor([[f, 0, c], [0, f, c], [0, 0, 1.0]], dtype=torch.float64))
        b.points, b.depth = pointmap_parts(sol["c2w"], sol["points"], sol["conf"], video)
        b.scores["confidence"] = float(sol["conf"].mean())
    b.timings = {k: round(v, 4) for k, v in progress.timings.items()}
    b.scores["forwards"] = res["forwards"]
    progress(1.0, "done")
    return b
