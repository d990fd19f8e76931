"""Hub video generators in the generator role (``backend.roles.Generator``), through diffusers.

One adapter per pipeline class:

| loader          | diffusers class                                | tasks                              |
|-----------------|------------------------------------------------|------------------------------------|
| ``wan-t2v``       | ``WanPipeline``                                  | t2v                                |
| ``wan-flf2v``     | ``WanImageToVideoPipeline`` (``last_image``)       | flf2v, i2v                         |
| ``ltx-condition`` | ``LTXConditionPipeline`` (frame conditions)      | t2v, i2v, flf2v, keyframes         |
| ``cogvideox``     | ``CogVideoXPipeline``                            | t2v                                |
| ``parallax``      | the unified model (``pipelines.unified_roles``)   | t2v, t2v+c, i2v, flf2v, keyframes  |

What every adapter does the same way (:class:`DiffusersGenerator`):

- **load**: ``Pipeline.from_pretrained(folder, dtype=...)`` (diffusers 0.42's name for
  ``torch_dtype``) from a resolved model folder
  (the hub's layout, ``model_index.json``); bf16 on CUDA, float32 on the CPU.
- **memory**: on CUDA, the whole pipeline on the GPU when its weights fit the free memory with
  headroom, else ``enable_model_cpu_offload`` (one component on the GPU at a time); VAE tiling on,
  so decoding a 480p shot does not peak above the transformer.
- **progress and cancel**: ``callback_on_step_end`` reports each denoising step to a
  ``backend.runtime.Progress``; once that raises ``Cancelled`` the callback sets the pipeline's
  interrupt flag and re-raises, so the job stops within a step and skips the VAE decode.
- **frame counts**: the pipelines take ``k * t + 1`` frames with ``t`` their VAE's temporal
  compression (Wan and CogVideoX 4, LTX-Video 8); :meth:`DiffusersGenerator.frames_for` says which
  count a request becomes (the next accepted one up, at most ``max_frames``).
- **output**: (F, H, W, 3) uint8.
- **lifetime**: the adapter holds its pipeline; the server keeps the adapter between jobs
  (``server.tasks.load_once``) and "Release GPU memory" ends the worker that holds it;
  :meth:`DiffusersGenerator.release` frees it in process (the CLI, the benchmark).

``load_generator(resolved)`` picks the adapter from the catalogue entry's loader, or for a
folder without an entry from ``model_index.json``'s ``_class_name``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..runtime import Cancelled, Progress

# Frames each family makes at most (its training length): Wan 2.1 81 at 16 fps, LTX-Video 257,
# CogVideoX its transformer's sample_frames (49; 81 for 1.5), read from the config.
WAN_MAX_FRAMES = 81
LTX_MAX_FRAMES = 257
# Weights bytes times this is what a pipeline is taken to need on the GPU without offload
# (activations of a 480p shot and the VAE decode on top of the weights; VAE tiling bounds the
# latter). Below it, ``enable_model_cpu_offload``.
VRAM_HEADROOM = 1.3


def _to_uint8(frames) -> np.ndarray:
    """diffusers' ``output_type="np"`` video (F, H, W, 3) floats in [0, 1] -> uint8."""
    return (np.clip(np.asarray(frames, dtype=np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _pil(image: np.ndarray, height: int, width: int):
    """(h, w, 3) uint8 -> a PIL image of ``width`` x ``height`` (the size the model generates)."""
    from PIL import Image

    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    return im if im.size == (width, height) else im.resize((width, height), Image.BICUBIC)


class DiffusersGenerator:
    """A diffusers video pipeline in the generator role.

    Args:
        pipe: the loaded diffusers pipeline.
        model_id (`str`): catalogue id or folder, written into bundles.
        height, width (`int`, *optional*): the frame size (default the family's 480p size; the
            pipeline's multiple is enforced).
        steps (`int`, *optional*), guidance (`float`, *optional*): sampling defaults for
            :meth:`interpolate` and :meth:`image_to_video` and when ``text_to_video`` gets None.
        negative_prompt (`str`): classifier-free guidance's negative prompt.
        offload (`bool`): whether the pipeline runs with model CPU offload (for the record).
    """

    name = "diffusers"
    supports: frozenset = frozenset()
    size_multiple = 16  # height and width must be multiples of this
    default_size = (480, 832)  # (height, width)
    default_steps, default_guidance = 50, 5.0
    max_frames = WAN_MAX_FRAMES
    fps = 16.0  # frames per second the family was trained at (written into bundles)

    def __init__(self, pipe, model_id: str, height: Optional[int] = None, width: Optional[int] = None,
                 steps: Optional[int] = None, guidance: Optional[float] = None, negative_prompt: str = "",
                 offload: bool = False):
        self.pipe, self.model_id, self.offload = pipe, str(model_id), bool(offload)
        h, w = self.default_size
        self.height, self.width = self._fit(int(height or h)), self._fit(int(width or w))
        self.steps = int(steps or self.default_steps)
        self.guidance = float(self.default_guidance if guidance is None else guidance)
        self.negative_prompt = negative_prompt

    # -- frames and sizes --------------------------------------------------------------------------
    @property
    def temporal(self) -> int:
        """The VAE's temporal compression: frame counts are ``k * temporal + 1``."""
        return int(getattr(self.pipe, "vae_scale_factor_temporal", 4))

    def frames_for(self, frames: int) -> int:
        """The count this model makes for ``frames``: the next ``k * t + 1`` up, at most ``max_frames``."""
        n, t = int(frames), self.temporal
        if n < 2:
            raise ValueError(f"{self.name}: a video needs at least 2 frames, asked for {n}")
        most = (self.max_frames - 1) // t * t + 1
        return min(math.ceil((n - 1) / t) * t + 1, most)

    def _fit(self, side: int) -> int:
        m = self.size_multiple
        return max(m, int(round(side / m)) * m)

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """A frame size at the aspect of ``height`` x ``width`` with about this generator's
        pixel count, in its multiple: conditioning images keep their aspect (InterPose's views
        are square, and their intrinsics are resized with the frames)."""
        area = self.height * self.width
        scale = math.sqrt(area / float(height * width))
        return self._fit(height * scale), self._fit(width * scale)

    def _check(self, task: str) -> None:
        if task not in self.supports:
            raise NotImplementedError(f"{self.name} ({self.model_id}) does not do {task}; it does: "
                                      f"{', '.join(sorted(self.supports))}")

    # -- running -----------------------------------------------------------------------------------
    def _run(self, progress, frames: int, seed: int, steps: int, **kwargs) -> np.ndarray:
        """One pipeline call with per-step progress and cancel; returns (F, H, W, 3) uint8."""
        import torch

        progress = Progress.of(progress)
        progress(0.0, "encoding prompt")
        denoise = progress.span(0.02, 0.92)
        pipe = self.pipe

        def on_step(p, i, t, callback_kwargs):
            try:
                denoise.step(i, steps, "denoising")
                if i + 1 == steps:
                    progress(0.92, "decoding")
            except Cancelled:
                p._interrupt = True  # the pipeline's own stop flag, as diffusers documents it
                raise
            return callback_kwargs

        generator = torch.Generator(device="cpu").manual_seed(int(seed))  # same video on any device
        try:
            out = pipe(num_frames=frames, num_inference_steps=steps, generator=generator, output_type="np",
                       callback_on_step_end=on_step, **kwargs)
        except Cancelled:
            pipe.maybe_free_model_hooks()  # offloaded components back to the CPU, as a finished call leaves them
            raise
        video = _to_uint8(out.frames[0])
        progress(1.0, "generated")
        return video

    def text_to_video(self, prompt: str, frames: int, seed: int = 0, steps: Optional[int] = None,
                      guidance: Optional[float] = None, progress=None) -> np.ndarray:
        self._check("t2v")
        n = self.frames_for(frames)
        return self._run(progress, n, seed, int(steps or self.steps), prompt=prompt,
                         negative_prompt=self.negative_prompt, height=self.height, width=self.width,
                         guidance_scale=self.guidance if guidance is None else float(guidance),
                         **self._text_kwargs())

    def interpolate(self, first: np.ndarray, last: np.ndarray, frames: int, seed: int = 0, prompt: str = "",
                    progress=None) -> np.ndarray:
        self._check("flf2v")
        return self.keyframes({0: first, int(frames) - 1: last}, frames, seed=seed, prompt=prompt, progress=progress)

    def image_to_video(self, image: np.ndarray, frames: int, seed: int = 0, prompt: str = "",
                       progress=None) -> np.ndarray:
        self._check("i2v")
        return self.keyframes({0: image}, self.frames_for(frames), seed=seed, prompt=prompt, progress=progress)

    def keyframes(self, images: dict, frames: int, seed: int = 0, prompt: str = "", progress=None) -> np.ndarray:
        """A video through given frames ({index: (h, w, 3) uint8}); ``frames`` must be a count this
        model makes (``frames_for(frames) == frames``), since the indices are fixed. The given
        frames are put back exactly (resized) at their indices, as the unified model's keyframes
        are: pipelines that read them (InterPose's A and B) get the images, not a VAE round trip."""
        n = int(frames)
        if self.frames_for(n) != n:
            raise ValueError(f"{self.name} makes {self.temporal}k+1 frames (up to {self.max_frames}); "
                             f"{n} is not one: use {self.frames_for(n)}")
        bad = [i for i in images if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"keyframe indices {bad} are outside the video's {n} frames")
        first = np.asarray(next(iter(images.values())))
        h, w = self.size_for(*first.shape[:2])
        video = self._conditioned(images, n, seed, prompt, progress, h, w)
        for i, img in images.items():
            video[int(i)] = np.asarray(_pil(img, video.shape[1], video.shape[2]))
        return video

    def _conditioned(self, images: dict, frames: int, seed: int, prompt: str, progress, height: int,
                     width: int) -> np.ndarray:
        raise NotImplementedError(f"{self.name} takes no image conditions")

    def _text_kwargs(self) -> dict:
        return {}

    def release(self) -> None:
        """Drop the pipeline and give its GPU memory back."""
        import gc

        self.pipe = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


class WanT2V(DiffusersGenerator):
    """Wan 2.1 / 2.2 text-to-video (``WanPipeline``), 480p at 832 x 480."""

    name = "wan-t2v"
    supports = frozenset({"t2v"})
    fps = 16.0
    default_size, default_steps, default_guidance = (480, 832), 50, 5.0


class WanFLF2V(DiffusersGenerator):
    """Wan first-last-frame to video (``WanImageToVideoPipeline`` with ``last_image``). The same
    class loads Wan's image-to-video checkpoints; which one a folder holds is in its transformer's
    config: a first-last-frame model embeds two images (``pos_embed_seq_len`` set) and refuses
    one, an image-to-video model was trained on the first frame only."""

    name = "wan-flf2v"
    fps = 16.0
    default_size, default_steps, default_guidance = (480, 832), 50, 5.5

    def __init__(self, pipe, model_id, **kw):
        two_images = getattr(pipe.transformer.config, "pos_embed_seq_len", None) is not None
        self.supports = frozenset({"flf2v"}) if two_images else frozenset({"i2v"})
        super().__init__(pipe, model_id, **kw)

    def _conditioned(self, images, frames, seed, prompt, progress, height, width):
        idx = sorted(int(i) for i in images)
        if idx[0] != 0 or len(idx) > 2 or (len(idx) == 2 and idx[1] != frames - 1):
            raise ValueError(f"{self.name} conditions on the first frame, and optionally the last; got frames {idx}")
        given = {int(i): v for i, v in images.items()}
        last = _pil(given[frames - 1], height, width) if len(idx) == 2 else None
        return self._run(progress, frames, seed, self.steps, image=_pil(given[0], height, width), last_image=last,
                         prompt=prompt, negative_prompt=self.negative_prompt, height=height, width=width,
                         guidance_scale=self.guidance)


class LTXCondition(DiffusersGenerator):
    """LTX-Video with frame conditions (``LTXConditionPipeline``): keyframes at chosen frame
    indices, and text-to-video without conditions. 704 x 480 by default (multiples of 32)."""

    name = "ltx-condition"
    supports = frozenset({"t2v", "i2v", "flf2v", "keyframes"})
    size_multiple = 32
    fps = 25.0  # the frame_rate LTXConditionPipeline conditions on by default
    default_size, default_steps, default_guidance = (480, 704), 40, 3.0
    max_frames = LTX_MAX_FRAMES

    @property
    def temporal(self) -> int:
        return int(getattr(self.pipe, "vae_temporal_compression_ratio", 8))

    def _conditioned(self, images, frames, seed, prompt, progress, height, width):
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        conditions = [LTXVideoCondition(image=_pil(img, height, width), frame_index=int(i))
                      for i, img in sorted(images.items())]
        return self._run(progress, frames, seed, self.steps, conditions=conditions, prompt=prompt,
                         negative_prompt=self.negative_prompt, height=height, width=width,
                         guidance_scale=self.guidance)


class CogVideoX(DiffusersGenerator):
    """CogVideoX text-to-video (``CogVideoXPipeline``). The size and the most frames come from the
    transformer's config (720 x 480 and 49 frames for CogVideoX-2b/5b, which were trained at those
    only: other counts run, at lower quality); the prompt is read to its ``max_text_seq_length``."""

    name = "cogvideox"
    supports = frozenset({"t2v"})
    fps = 8.0
    default_steps, default_guidance = 50, 6.0

    def __init__(self, pipe, model_id, **kw):
        cfg = pipe.transformer.config
        scale = int(getattr(pipe, "vae_scale_factor_spatial", 8))
        self.default_size = (cfg.sample_height * scale, cfg.sample_width * scale)
        self.max_frames = int(cfg.sample_frames)
        super().__init__(pipe, model_id, **kw)

    def _text_kwargs(self) -> dict:
        return {"max_sequence_length": int(self.pipe.transformer.config.max_text_seq_length)}

    @property
    def temporal(self) -> int:
        """Twice the VAE's compression: CogVideoX's VAE decodes its latent frames in pairs after the
        first, so it returns the asked count only for an odd number of latent frames (8k + 1
        frames: 9, 17, ... 49); 5 frames (2 latent frames) came back as 8."""
        return 2 * int(getattr(self.pipe, "vae_scale_factor_temporal", 4))


ADAPTERS = {"wan-t2v": ("WanPipeline", WanT2V), "wan-flf2v": ("WanImageToVideoPipeline", WanFLF2V),
            "ltx-condition": ("LTXConditionPipeline", LTXCondition), "cogvideox": ("CogVideoXPipeline", CogVideoX)}
# model_index.json ``_class_name`` -> loader, for folders without a catalogue entry. LTX-Video's
# hub snapshots name LTXPipeline (or its image-to-video class); the condition pipeline has the
# same components, so it loads them and adds keyframes.
CLASS_LOADERS = {"WanPipeline": "wan-t2v", "WanImageToVideoPipeline": "wan-flf2v",
                 "LTXConditionPipeline": "ltx-condition", "LTXPipeline": "ltx-condition",
                 "LTXImageToVideoPipeline": "ltx-condition", "CogVideoXPipeline": "cogvideox"}


def detect_loader(folder) -> str:
    """The loader of a model folder: ``parallax`` for our checkpoint, else from the diffusers
    pipeline class in ``model_index.json`` (ValueError saying what the folder is not)."""
    folder = Path(folder)
    index = folder / "model_index.json"
    if not index.is_file():
        if (folder / "config.json").is_file():  # the unified model's own checkpoint layout
            return "parallax"
        raise ValueError(f"{folder} is not a diffusers model folder (no model_index.json)")
    try:
        cls = json.loads(index.read_text())["_class_name"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{index} cannot be read as a diffusers model index: {e}") from None
    if cls in CLASS_LOADERS:
        return CLASS_LOADERS[cls]
    if "parallax" in cls.lower():  # our own checkpoint as a diffusers pipeline
        return "parallax"
    raise ValueError(f"{folder} holds a {cls}, which is not a video generator Parallax knows; it loads: "
                     f"{', '.join(sorted(CLASS_LOADERS))}")


def _weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())


def needs_offload(folder: Path, device, dtype, vram_gb: Optional[float] = None) -> bool:
    """Whether a pipeline must run with model CPU offload on ``device``: its VRAM need (the
    catalogue's ``vram_gb``, else its weights at ``dtype`` times :data:`VRAM_HEADROOM`) is more than
    the device's free memory. Never on the CPU."""
    import torch

    if device.type != "cuda":
        return False
    if vram_gb is not None:
        need = float(vram_gb) * 1024**3
    else:  # the weights are stored at fp32 or bf16; count them at the dtype they will run in
        need = _weights_bytes(folder) * VRAM_HEADROOM * (0.5 if dtype in (torch.bfloat16, torch.float16) else 1.0)
    free, _ = torch.cuda.mem_get_info(device)
    return need > free


def load_generator(resolved, device=None, dtype=None, progress=None, *, height: Optional[int] = None,
                   width: Optional[int] = None, steps: Optional[int] = None, guidance: Optional[float] = None,
                   offload: Optional[bool] = None):
    """The generator role for a resolved model (``backend.hub.catalogue.ResolvedModel``: ``path``
    and ``entry``, the catalogue entry or None for a user folder).

    Args:
        device: ``backend.runtime.pick_device``'s argument (None: CUDA when there is one).
        dtype: torch dtype (None: bf16 on CUDA, float32 on the CPU).
        progress: reports the load (it cannot stop halfway; a cancel is seen after it).
        height, width, steps, guidance: the adapter's defaults (None: the family's).
        offload: force model CPU offload on or off (None: when the model does not fit, see
            :func:`needs_offload`).
    """
    import torch

    from ..runtime import pick_device

    progress = Progress.of(progress)
    folder = Path(resolved.path)
    entry = getattr(resolved, "entry", None)
    loader = entry.loader if entry is not None else detect_loader(folder)
    model_id = entry.id if entry is not None else str(folder)
    if loader == "parallax":
        from ..pipelines.unified_roles import UnifiedGenerator

        # a Parallax pipeline folder keeps the unified model in transformer/ (hub.geometry reads it the same way)
        weights = folder / "transformer" if (folder / "model_index.json").is_file() else folder
        return UnifiedGenerator(model_path=None if _is_shipped(weights) else weights, device=device,
                                steps=steps or 25, guidance=5.0 if guidance is None else guidance, model_id=model_id)
    if loader not in ADAPTERS:
        raise ValueError(f"{model_id}: loader {loader!r} is not a generator (generators: "
                         f"{', '.join(sorted(ADAPTERS) + ['parallax'])})")
    import diffusers

    class_name, adapter = ADAPTERS[loader]
    dev = pick_device(device)
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    progress(0.0, f"loading {model_id}")
    pipe = getattr(diffusers, class_name).from_pretrained(folder, dtype=dtype)  # diffusers 0.42: torch_dtype is deprecated
    pipe.set_progress_bar_config(disable=True)
    use_offload = needs_offload(folder, dev, dtype, getattr(entry, "vram_gb", None)) if offload is None else offload
    if use_offload and dev.type == "cuda":
        pipe.enable_model_cpu_offload(device=dev)
    else:
        pipe.to(dev)
    if hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()
    progress(1.0, f"loaded {model_id}")
    return adapter(pipe, model_id, height=height, width=width, steps=steps, guidance=guidance,
                   offload=use_offload and dev.type == "cuda")


def _is_shipped(folder: Path) -> bool:
    """The bundled parallax-tiny folder (loaded by the unified model's default path)."""
    shipped = Path(__file__).resolve().parents[1] / "weights" / "parallax-tiny"
    try:
        return folder.resolve() == shipped.resolve()
    except OSError:
        return False
