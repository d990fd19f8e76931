"""T2V and T2V+C with the unified model (JOG3R sec. 3.2, Fig. 3).

Sampling is flow matching with diffusers' ``FlowMatchEulerDiscreteScheduler`` and
classifier-free guidance (conditional and null-caption rows in one batch). The schedule ends
at the geometry noise level (t = 5 of 1000): in T2V+C the last denoising step's forward pass
also runs the geometry branch on block b (for the null-caption row, as in training), so the
cameras come with the video from the same passes, with no extra forward. Keyframes (frame
index -> image) are given clean through the frame mask and re-imposed after every step,
which is the interpolation mode InterPose uses.
"""

from __future__ import annotations

import numpy as np
import torch

from ..runtime import Progress
from .common import LazyModel, resize_frames
from .v2c import GEOMETRY_T, PHOTOMETRIC


class T2VPipeline(LazyModel):
    def __init__(self, model=None, model_path=None, device=None, text_encoder=None):
        super().__init__(model, model_path, device)
        self._text = text_encoder

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
                 progress=None) -> dict:
        """Returns {"video": (F, S, S, 3) uint8, "geometry": maps of the null row or None,
        "timings": {...}, "forwards": number of network passes}."""
        from diffusers import FlowMatchEulerDiscreteScheduler

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
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        sigmas = np.linspace(1.0, geometry_t / 1000.0, steps).tolist()
        sched.set_timesteps(sigmas=sigmas, device=dev)
        cond = hidden is not None
        geo, forwards = None, 0
        for i, t in enumerate(sched.timesteps):
            progress(0.05 + 0.85 * i / steps, f"denoising {i + 1}/{steps}")  # raises Cancelled when asked
            last = i == len(sched.timesteps) - 1
            xin = torch.cat([x, x]) if cond else x
            fm = frame_mask.expand(xin.shape[0], n)
            with progress.timed("network"), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out = model(xin, t.expand(xin.shape[0]), hidden.expand(2, -1, -1) if cond else None,
                            mask.expand(2, -1) if cond else None, frame_mask=fm,
                            drop_caption=torch.tensor([False, True], device=dev) if cond else None,
                            geometry=camera and last,
                            geometry_rows=torch.tensor([xin.shape[0] - 1], device=dev) if camera and last else None)
            forwards += 1
            v = out.sample.float()
            if cond:
                v = v[1:] + guidance * (v[:1] - v[1:])
            if camera and last:
                geo = {k: val[0].float() for k, val in out.geometry.items()}
            x = sched.step(v, t, x).prev_sample
            if given is not None:
                x[:, :, given[0]] = given[1]
        progress(0.92, "decoding")
        with progress.timed("decode"):
            video = tensor_to_frames(codec.decode(x))[0].cpu()
            if given is not None:  # exact pixels of the keyframes (no resampling round trip)
                video[given[0].cpu()] = resize_frames(frames_px, video.shape[1])
        return {"video": video, "geometry": geo, "timings": dict(progress.timings), "forwards": forwards}


def generate_bundle(pipe: T2VPipeline, prompt: str, frames=None, seed=0, camera=True, steps=25, guidance=5.0,
                    keyframes=None, progress=None):
    """Run T2V(+C) and package the result as a ``generate`` Bundle. ``keyframes``: frame index
    -> (S, S, 3) uint8 image given clean (interpolation)."""
    from ..bundle import Bundle
    from .assemble import camera_frames, pointmap_parts
    from .pointmap_cameras import cameras_from_pointmaps

    progress = Progress.of(progress, device=pipe.device)
    res = pipe(prompt, frames=frames, seed=seed, camera=camera, steps=steps, guidance=guidance,
               keyframes=keyframes, progress=progress)
    video = res["video"]
    n, S = video.shape[0], video.shape[1]
    b = Bundle(task="generate", width=S, height=S, frame_count=n, fps=8.0, engine="unified",
               model_id=pipe.model_id, frames=list(video.numpy()),
               source={"prompt": prompt, "seed": seed, "steps": steps, "guidance": guidance})
    if camera and res["geometry"] is not None:
        progress(0.95, "cameras")
        with progress.timed("alignment"):
            pts = res["geometry"]["points"]
            sol = cameras_from_pointmaps(pts, res["geometry"]["conf"],  # V2C's cameras, photometric refinement included
                                         frames=resize_frames(video, pts.shape[1]).to(pts.device) if PHOTOMETRIC else None)
        f, c = float(sol["K"][0, 0]), (S - 1) / 2  # one focal, centred: the square frames' own camera
        b.cameras = camera_frames(sol["c2w"], torch.tensor([[f, 0, c], [0, f, c], [0, 0, 1.0]], dtype=torch.float64))
        b.points, b.depth = pointmap_parts(sol["c2w"], sol["points"], sol["conf"], video)
        b.scores["confidence"] = float(sol["conf"].mean())
    b.timings = {k: round(v, 4) for k, v in progress.timings.items()}
    b.scores["forwards"] = res["forwards"]
    progress(1.0, "done")
    return b
