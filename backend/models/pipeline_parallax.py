"""ParallaxPipeline: our checkpoint as a diffusers pipeline (issue 16), text-to-video with cameras.

Components, as ``model_index.json`` lists them:

- ``transformer``: :class:`~backend.models.stdit.ParallaxSTDiT`, the video DiT with geometry heads;
- ``text_encoder`` + ``tokenizer``: the caption encoder (the tiny model's all-MiniLM-L6-v2 BERT,
  per-token last hidden states, padded to the transformer's ``model_max_length``);
- ``scheduler``: ``FlowMatchEulerDiscreteScheduler`` (flow matching, velocity prediction);
- ``vae``: an ``AutoencoderKL`` for latent-space transformers; None in pixel space (the tiny
  model works on 64x64 RGB directly).

Sampling is Parallax's own T2V (``backend/pipelines/t2v.py``; the two are tested equal frame for
frame): the sigmas run from 1 down to the geometry noise level (5 of 1000), classifier-free
guidance batches the prompt row with the transformer's learned null caption, and in the last
step the null row's block-b features also go to the geometry heads, so the cameras come from
the same passes (T2V+C). Here the cameras are the point maps' focal and per-frame PnP; Parallax's
own ``generate`` refines them further (global alignment and photometric refinement).

Loading, offline, from a folder written by ``python -m backend.models.convert_pipeline``::

    from diffusers import DiffusionPipeline
    from backend.models.pipeline_parallax import ParallaxPipeline

    pipe = ParallaxPipeline.from_pretrained("parallax-tiny-pipeline")
    # or, through the folder's pipeline.py (diffusers' custom-pipeline convention):
    pipe = DiffusionPipeline.from_pretrained("parallax-tiny-pipeline", custom_pipeline="parallax-tiny-pipeline",
                                             trust_remote_code=True)
    out = pipe("a camera orbits a red box", num_frames=16, num_inference_steps=25, guidance_scale=5.0,
               generator=torch.Generator().manual_seed(0))
    out.frames[0]  # (16, 64, 64, 3) float in [0, 1]; out.cameras["c2w"], out.cameras["K"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .autoencoder import tensor_to_frames

GEOMETRY_T = 5.0  # the schedule's end and the geometry noise level, of 1000 (pipelines/v2c.py's GEOMETRY_T)
CONFIDENT = 1.5  # geometry confidence above which a point weighs in camera fitting (pipelines/assemble.py)


@dataclass
class ParallaxPipelineOutput(BaseOutput):
    """frames: the videos ((B, F, H, W, 3) float in [0, 1] for ``output_type="np"``, nested PIL
    lists for ``"pil"``, a (B, F, 3, H, W) tensor for ``"pt"``, model-space samples for
    ``"latent"``). cameras: ``{"c2w": (F, 4, 4) float64 OpenCV camera-to-world with the first
    frame's camera as the world, "K": (3, 3) in pixels of the frames}`` of the first video, or
    None (``camera=False``). geometry: the heads' maps of the last step (point maps X^{f,1},
    confidence, disparity, rays) or None."""

    frames: Union[np.ndarray, list, torch.Tensor]
    cameras: Optional[dict] = None
    geometry: Optional[dict] = None


class ParallaxPipeline(DiffusionPipeline):
    """Text-to-video (and its cameras) with a Parallax checkpoint. See the module docstring.

    Args:
        transformer ([`ParallaxSTDiT`]): the denoiser with geometry heads.
        text_encoder ([`transformers.PreTrainedModel`]): the caption encoder.
        tokenizer ([`transformers.PreTrainedTokenizerBase`]): its tokenizer.
        scheduler ([`FlowMatchEulerDiscreteScheduler`]): the sampler.
        vae ([`AutoencoderKL`], *optional*): for latent-space transformers.
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _optional_components = ["vae"]
    _callback_tensor_inputs = ["latents"]

    def __init__(self, transformer, text_encoder, tokenizer, scheduler, vae=None):
        super().__init__()
        self.register_modules(transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler, vae=vae)

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @torch.no_grad()
    def encode_prompt(self, prompt: str, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token caption states (1, L, C) and mask (1, L), L = the transformer's
        ``model_max_length`` (as ``backend.models.text.TextEncoder``)."""
        tok = self.tokenizer([prompt], padding="max_length", truncation=True,
                             max_length=self.transformer.config.model_max_length, return_tensors="pt").to(device)
        hidden = self.text_encoder(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        return hidden.float(), tok["attention_mask"].bool()

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model space (B, C, F, h, w) -> pixels (B, 3, F, H, W) in [-1, 1]."""
        if self.vae is None:
            return x.clamp(-1, 1)
        b, c, f, h, w = x.shape
        z = x.transpose(1, 2).reshape(b * f, c, h, w).to(self.vae.dtype) / self.vae.config.scaling_factor
        img = self.vae.decode(z).sample
        return img.reshape(b, f, *img.shape[1:]).transpose(1, 2).float().clamp(-1, 1)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str = "",
        num_frames: Optional[int] = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 5.0,
        generator: Optional[torch.Generator] = None,
        latents: Optional[torch.Tensor] = None,
        output_type: str = "np",
        camera: bool = True,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: tuple = ("latents",),
        return_dict: bool = True,
    ):
        """Generate one video for ``prompt``.

        Args:
            prompt (`str`): the caption; empty: the learned null caption alone.
            num_frames (`int`, *optional*): 1 to the transformer's ``num_frames`` (its default).
            num_inference_steps (`int`): denoising steps.
            guidance_scale (`float`): classifier-free guidance (0: the null caption only).
            generator (`torch.Generator`, *optional*): for the initial noise.
            latents (`torch.Tensor`, *optional*): the initial noise (1, C, F, h, w) instead.
            output_type (`str`): ``"np"``, ``"pil"``, ``"pt"`` or ``"latent"``.
            camera (`bool`): also run the geometry heads in the last step and solve the cameras.
            callback_on_step_end (`Callable`, *optional*): ``fn(pipe, step, timestep, kwargs) ->
                dict``, called after each step with the tensors named in
                ``callback_on_step_end_tensor_inputs``; a returned ``"latents"`` replaces them.
                Set ``pipe._interrupt = True`` inside it to stop after the current step.
            return_dict (`bool`): a :class:`ParallaxPipelineOutput`, else a tuple.
        """
        cfg = self.transformer.config
        n = int(num_frames or cfg.num_frames)
        if not 1 <= n <= cfg.num_frames:
            raise ValueError(f"this model generates at most {cfg.num_frames} frames, asked for {n}")
        bad = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if bad:
            raise ValueError(f"callback_on_step_end_tensor_inputs may hold {self._callback_tensor_inputs}, not {bad}")
        if output_type not in ("np", "pil", "pt", "latent"):
            raise ValueError(f"output_type must be 'np', 'pil', 'pt' or 'latent', not {output_type!r}")
        dev = self._execution_device
        self._interrupt = False
        hidden, mask = self.encode_prompt(prompt, dev) if prompt and guidance_scale != 0 else (None, None)
        shape = (1, cfg.in_channels, n, cfg.sample_size, cfg.sample_size)
        x = randn_tensor(shape, generator=generator, device=dev) if latents is None else latents.to(dev).float()
        frame_mask = torch.zeros(1, n, dtype=torch.bool, device=dev)
        sigmas = np.linspace(1.0, GEOMETRY_T / 1000.0, num_inference_steps).tolist()
        self.scheduler.set_timesteps(sigmas=sigmas, device=dev)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        cond = hidden is not None
        geo = None
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                last = i == len(timesteps) - 1
                xin = torch.cat([x, x]) if cond else x
                rows = xin.shape[0]
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                    out = self.transformer(
                        xin, t.expand(rows), hidden.expand(2, -1, -1) if cond else None,
                        mask.expand(2, -1) if cond else None, frame_mask=frame_mask.expand(rows, n),
                        drop_caption=torch.tensor([False, True], device=dev) if cond else None,
                        geometry=camera and last,
                        geometry_rows=torch.tensor([rows - 1], device=dev) if camera and last else None)
                v = out.sample.float()
                if cond:  # the prompt row pushed away from the null row (classifier-free guidance)
                    v = v[1:] + guidance_scale * (v[:1] - v[1:])
                if camera and last:
                    geo = {k: val[0].float() for k, val in out.geometry.items()}
                x = self.scheduler.step(v, t, x).prev_sample
                if callback_on_step_end is not None:
                    local = {"latents": x}
                    returned = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                    x = (returned or {}).get("latents", x)
                bar.update()
        cameras = _cameras(geo) if geo is not None else None
        if output_type == "latent":
            video = x
        else:
            frames_u8 = tensor_to_frames(self._decode(x)).cpu()  # (B, F, H, W, 3), Parallax's own rounding
            if output_type == "np":
                video = frames_u8.numpy().astype(np.float32) / 255.0
            elif output_type == "pt":
                video = frames_u8.permute(0, 1, 4, 2, 3).float() / 255.0
            else:
                from PIL import Image

                video = [[Image.fromarray(f) for f in clip] for clip in frames_u8.numpy()]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video, cameras, geo)
        return ParallaxPipelineOutput(frames=video, cameras=cameras, geometry=geo)


def _cameras(geo: dict) -> dict:
    """Focal from frame 1's point map, then each frame's pose by PnP-RANSAC on its point map X^{f,1}
    (the first stage of ``pipelines/pointmap_cameras.cameras_from_pointmaps``, the same
    ``geometry.pnp`` functions; tested equal)."""
    from ..geometry.pnp import intrinsics_from_pointmap, poses_from_pointmaps_pnp

    pts = geo["points"].double().cpu()
    conf = geo["conf"].double().cpu()
    w = torch.where(conf > CONFIDENT, conf - 1.0, torch.zeros_like(conf))
    K = intrinsics_from_pointmap(pts[0], w[0])
    c2w = poses_from_pointmaps_pnp(pts, K, w)
    return {"c2w": c2w.numpy(), "K": K.numpy()}
