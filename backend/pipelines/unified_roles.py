"""The unified model in the generator and geometry roles (``backend.roles``).

- :class:`UnifiedGenerator`: T2V, image-to-video and first-last-frame interpolation with the
  unified model (``t2v.T2VPipeline``: keyframes given clean through the frame mask and
  re-imposed after every step). It also does T2V+C, the video and its cameras from the same
  passes, which only a model with our geometry heads can (``t2v.generate_bundle``).
- :class:`UnifiedGeometry`: V2C on a clip (``v2c.UnifiedEngine``: windows, point maps, focal,
  PnP, global alignment, photometric refinement) returned as a ``GeometryPrediction``.

Both load the model lazily; a generator and a geometry built with ``share=`` hold one copy.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..roles import GeometryPrediction
from ..runtime import Progress


class UnifiedGenerator:
    """The unified model as a generator: ``text_to_video``, ``image_to_video``, ``interpolate``
    and ``keyframes`` at any frame count up to its window (``max_frames``).

    Args:
        pipe (`T2VPipeline`, *optional*): a loaded pipeline to use (the server's); else one is
            built on ``model_path`` (None: the shipped parallax-tiny) and ``device``.
        steps (`int`), guidance (`float`): the sampling of ``interpolate``, ``image_to_video`` and
            ``keyframes`` (and of ``text_to_video`` when it gets None).
        model_id (`str`, *optional*): the id to report (a catalogue id); default the pipeline's.
    """

    name = "unified"
    supports = frozenset({"t2v", "t2v+c", "i2v", "flf2v", "keyframes"})

    def __init__(self, pipe=None, steps: int = 25, guidance: float = 5.0, model_path=None, device=None,
                 model_id: Optional[str] = None):
        from .t2v import T2VPipeline

        self.pipe = pipe if pipe is not None else T2VPipeline(model_path=model_path, device=device)
        self.steps, self.guidance = int(steps), float(guidance)
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        return self._model_id or self.pipe.model_id

    @property
    def max_frames(self) -> int:
        return int(self.pipe.model.config.num_frames)

    def frames_for(self, frames: int) -> int:
        """Any count from 2 to the window is made as asked (ValueError beyond it)."""
        n = int(frames)
        if not 2 <= n <= self.max_frames:
            raise ValueError(f"this model generates 2 to {self.max_frames} frames, asked for {n}")
        return n

    def text_to_video(self, prompt: str, frames: int, seed: int = 0, steps: Optional[int] = None,
                      guidance: Optional[float] = None, progress=None) -> np.ndarray:
        res = self.pipe(prompt, frames=self.frames_for(frames), steps=int(steps or self.steps),
                        guidance=self.guidance if guidance is None else float(guidance), seed=seed, camera=False,
                        progress=progress)
        return res["video"].numpy()

    def keyframes(self, images: dict, frames: int, seed: int = 0, prompt: str = "", progress=None) -> np.ndarray:
        res = self.pipe(prompt, frames=self.frames_for(frames), steps=self.steps, guidance=self.guidance, seed=seed,
                        camera=False, keyframes=dict(images), progress=progress)
        return res["video"].numpy()

    def interpolate(self, first: np.ndarray, last: np.ndarray, frames: int, seed: int = 0, prompt: str = "",
                    progress=None) -> np.ndarray:
        return self.keyframes({0: first, int(frames) - 1: last}, frames, seed=seed, prompt=prompt, progress=progress)

    def image_to_video(self, image: np.ndarray, frames: int, seed: int = 0, prompt: str = "",
                       progress=None) -> np.ndarray:
        return self.keyframes({0: image}, frames, seed=seed, prompt=prompt, progress=progress)


class UnifiedGeometry:
    """The unified model's V2C as the geometry role.

    Args:
        engine (`UnifiedEngine`, *optional*): the engine to run (else one on ``model_path``,
            ``device``, or on the model of ``share``, a ``LazyModel`` such as the T2V pipeline).
        model_id (`str`, *optional*): the id to report (a catalogue id); default the engine's.
        options: ``UnifiedEngine.solve`` options (``window``, ``align``, ``photometric``...).
    """

    name = "unified"

    def __init__(self, engine=None, model_path=None, device=None, share=None, model_id=None, **options):
        from .v2c import UnifiedEngine

        if engine is None:
            if share is not None:  # the generator's loaded model: one copy for both roles
                engine = UnifiedEngine(model=share.model, model_path=share._model_path, device=share.device)
            else:
                engine = UnifiedEngine(model_path=model_path, device=device)
        self.engine, self.options, self._model_id = engine, options, model_id

    @property
    def model_id(self) -> str:
        return self._model_id or self.engine.model_id

    def predict(self, frames: np.ndarray, K: Optional[np.ndarray] = None, progress=None) -> GeometryPrediction:
        """V2C on ``frames`` (F >= 2). Depth and confidence cover the centred square the model
        sees (0 outside it); cameras and intrinsics hold for the whole frame."""
        from ..bundle import BundleError

        progress = Progress.of(progress)
        frames = np.asarray(frames)
        b = self.engine.solve(frames, progress=progress, K=K, **self.options)
        n, H, W = frames.shape[:3]
        if b.frame_count != n or b.depth is None:
            raise BundleError(f"the unified engine answered {b.frame_count} frames without depth for a {n}-frame clip")
        c2w = b.c2w_array()
        if np.isfinite(c2w[0]).all():  # world = the first frame's camera, exactly
            c2w = np.linalg.inv(c2w[0]) @ c2w
            c2w[0] = np.eye(4)
        K_all = np.stack([c.K for c in b.cameras])
        from .assemble import CONFIDENT

        return GeometryPrediction(
            depth=np.stack([d.depth for d in b.depth]).astype(np.float32), c2w=c2w, K=K_all,
            conf=np.stack([d.conf for d in b.depth]).astype(np.float32), conf_threshold=CONFIDENT,
            extras={"scores": {k: v for k, v in b.scores.items() if isinstance(v, (int, float))},
                    "timings": b.timings})
