"""The unified model (DESIGN section 5): ParallaxSTDiT backbone + geometry branch."""

from .configs import CONFIGS, build_model, get_config
from .stdit import ParallaxSTDiT, STDiTOutput

DEFAULT_WEIGHTS = __import__("pathlib").Path(__file__).resolve().parent.parent / "weights" / "parallax-tiny"


def load_model(name_or_path=None, device="cpu", dtype=None):
    """Load a checkpoint (folder or hub id; default: the shipped tiny weights, offline). A
    pipeline folder (``model_index.json``, see ``pipeline_parallax.py``) gives its transformer."""
    import torch

    path = __import__("pathlib").Path(str(name_or_path or DEFAULT_WEIGHTS))
    sub = {"subfolder": "transformer"} if (path / "model_index.json").is_file() else {}
    model = ParallaxSTDiT.from_pretrained(str(path), torch_dtype=dtype or torch.float32, **sub)
    return model.to(device).eval()


__all__ = ["CONFIGS", "build_model", "get_config", "ParallaxSTDiT", "STDiTOutput", "load_model", "DEFAULT_WEIGHTS"]
