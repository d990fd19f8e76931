"""Tiny random hub models, built offline from each real diffusers class's config and saved with
``save_pretrained`` in the hub's folder layout (``model_index.json`` and one folder per component).

The sizes are diffusers' own test suites' (``tests/pipelines/wan/test_wan.py``,
``test_wan_image_to_video.py``, ``ltx/test_ltx_condition.py``, ``cogvideo/test_cogvideox.py``).
Those tests download ``hf-internal-testing/tiny-random-t5`` for the text encoder and its
tokenizer; no hub is reachable here, so the text encoder is a T5 / UMT5 of the same tiny size
(d_model 32) with random weights, and the tokenizer a T5 Unigram tokenizer built from a small
local vocabulary (``transformers.T5Tokenizer(vocab=...)``, saved as ``tokenizer.json``).

Each ``build_*`` writes a folder and returns its path; the weights are random (seeded), so the
videos are noise, but every class, config and file is the real one a hub snapshot holds.
Other helpers may append builders at the end of this file.
"""

from __future__ import annotations

from pathlib import Path

# Tiny-T5 sizes of hf-internal-testing/tiny-random-t5 (d_model 32 is what the tiny transformers'
# text_dim / caption_channels / text_embed_dim expect).
T5_SIZES = dict(d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                dropout_rate=0.0)
WORDS = ("a the camera dollies pans orbits left right across past around scene objects red box blue sphere "
         "slowly fast forward back up down over street room table tree car dance monkey").split()


def tiny_tokenizer():
    """A T5 Unigram tokenizer over letters and :data:`WORDS` (pad 0, eos 1, unk 2 as T5's)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -3.0) for w in WORDS]
    pieces += [(c, -6.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,'-"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def tiny_t5(umt5: bool = False):
    """A random tiny T5 (or UMT5, Wan's class) encoder whose vocabulary matches :func:`tiny_tokenizer`."""
    import torch
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vocab = len(tiny_tokenizer())
    if umt5:
        return UMT5EncoderModel(UMT5Config(vocab_size=vocab, **T5_SIZES)).eval()
    return T5EncoderModel(T5Config(vocab_size=vocab, **T5_SIZES)).eval()


def _wan_vae():
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def build_wan_t2v(folder) -> Path:
    """Wan 2.1 text-to-video (``WanPipeline``): 16 latent channels, UMT5 text encoder."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32)
    pipe = WanPipeline(tokenizer=tiny_tokenizer(), text_encoder=tiny_t5(umt5=True), vae=_wan_vae(),
                       transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    pipe.save_pretrained(folder)
    return Path(folder)


def build_wan_flf2v(folder) -> Path:
    """Wan 2.1 first-last-frame to video (``WanImageToVideoPipeline`` with a CLIP image encoder;
    36 input channels: 16 noise + 4 mask + 16 condition latents)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=36, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32, image_dim=4, pos_embed_seq_len=2 * (4 * 4 + 1))
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=4,
        intermediate_size=16, patch_size=1))
    pipe = WanImageToVideoPipeline(tokenizer=tiny_tokenizer(), text_encoder=tiny_t5(umt5=True), vae=_wan_vae(),
                                   transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                   image_encoder=image_encoder,
                                   image_processor=CLIPImageProcessor(crop_size=4, size=4))
    pipe.save_pretrained(folder)
    return Path(folder)


def build_ltx_condition(folder) -> Path:
    """LTX-Video with frame conditions (``LTXConditionPipeline``): 8 latent channels."""
    import torch
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXConditionPipeline,
                           LTXVideoTransformer3DModel)

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                             num_layers=1, caption_channels=32)
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=1,
        patch_size_t=1, encoder_causal=True, decoder_causal=False)
    pipe = LTXConditionPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=tiny_t5(),
                                tokenizer=tiny_tokenizer(), transformer=transformer)
    pipe.save_pretrained(folder)
    return Path(folder)


def build_cogvideox(folder) -> Path:
    """CogVideoX text-to-video (``CogVideoXPipeline``): a 2 x 2 latent (16 x 16 px), 9 frames native."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel, DDIMScheduler

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=16)
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
    pipe = CogVideoXPipeline(tokenizer=tiny_tokenizer(), text_encoder=tiny_t5(), vae=vae, transformer=transformer,
                             scheduler=DDIMScheduler())
    pipe.save_pretrained(folder)
    return Path(folder)


BUILDERS = {"wan-t2v": build_wan_t2v, "wan-flf2v": build_wan_flf2v, "ltx-condition": build_ltx_condition,
            "cogvideox": build_cogvideox}


def build_depth_anything_3(folder, preset: str = "da3-small", seed: int = 0) -> Path:
    """A random Depth Anything 3 in the layout ``DepthAnything3.save_pretrained`` writes.

    The package's hub class is ``DepthAnything3(nn.Module, PyTorchModelHubMixin)`` with one init
    argument, ``model_name`` (a preset of its ``configs/``), and the network in ``self.model``:
    the mixin saves ``config.json`` = ``{"model_name": ...}`` and ``model.safetensors`` with
    ``model.``-prefixed keys. That class's module cannot be imported here (it pulls torchvision),
    so a class of the same shape, on the same mixin, writes the folder. Presets fix the DINOv2
    size, so the smallest a DA3 can be is ``da3-small`` (34 M parameters), saved in fp16 (69 MB).
    """
    import torch
    from depth_anything_3.cfg import create_object, load_config
    from depth_anything_3.registry import MODEL_REGISTRY
    from huggingface_hub import PyTorchModelHubMixin

    class DepthAnything3(torch.nn.Module, PyTorchModelHubMixin):
        def __init__(self, model_name: str = "da3-large"):
            super().__init__()
            self.model = create_object(load_config(MODEL_REGISTRY[model_name]))

    torch.manual_seed(seed)
    DepthAnything3(model_name=preset).half().save_pretrained(folder)
    return Path(folder)
