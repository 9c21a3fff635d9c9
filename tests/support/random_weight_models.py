"""Diffusion models built from configs with seeded random weights: tiny ones for tests, full-size ones for benchmarks.

Nothing here downloads anything. The tiny models are saved in the exact folder layout of the hub
repositories they stand in for (``model_index.json`` + one sub-folder per component, safetensors
weights, a CLIP tokenizer as ``vocab.json``/``merges.txt``), so the code under test loads them back
through the same ``from_pretrained`` path real weights take.

- ``save_tiny_sd15(folder)``: a Stable Diffusion 1.5 layout (``StableDiffusionPipeline``).
- ``save_tiny_controlnet(folder, unet_folder_or_config, seed=...)``: a ``ControlNetModel`` matching
  that UNet. A freshly built ControlNet has zero-initialised output convolutions and would not
  change the image at all; here they get small random weights, so a control image has an effect.
- ``save_tiny_sdxl(folder)`` and ``save_tiny_controlnet_union(folder)``: the SDXL layout and a
  ``ControlNetUnionModel`` that matches it.
- ``save_tiny_ip_adapter(folder, unet_folder_or_config)``: an IP-Adapter in the layout of
  ``h94/IP-Adapter`` (``models/ip-adapter_sd15.safetensors`` with its ``image_proj.*`` and
  ``ip_adapter.N.to_k_ip/to_v_ip`` keys, ``models/image_encoder/`` a ``CLIPVisionModelWithProjection``)
  matching that UNet, for diffusers' ``load_ip_adapter``.
- ``build_full_size_sd15_unet_and_controlnets(n, dtype, device)`` and
  ``build_full_size_sdxl_unet_and_controlnet_union(dtype, device)``: the real architectures (configs
  written out below, as published with the SD1.5 / ControlNet v1.1 / SDXL / ControlNet-union
  weights), randomly initialised, for timing.

Every module is built right after ``torch.manual_seed(k)`` with its own fixed ``k``, so a folder
has the same content each time it is written. torch, diffusers and transformers are imported
inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Seeds, one per component, so adding a component never changes another one's weights.
_SEED_UNET = 0
_SEED_VAE = 1
_SEED_TEXT_ENCODER = 2
_SEED_TEXT_ENCODER_2 = 3
_SEED_CONTROLNET = 10
_SEED_CONTROLNET_UNION = 20
_SEED_IP_ADAPTER = 30
_SEED_IMAGE_ENCODER = 31
TINY_IMAGE_EMBED_DIM = 16  # the tiny CLIP vision encoder's projection width

TINY_VAE_BLOCK_OUT_CHANNELS = (8, 16, 16, 32)  # four levels: the real 8x latent downsampling
TINY_CONDITIONING_EMBEDDING_OUT_CHANNELS = (8, 16, 16, 32)  # three stride-2 convs: 8x, like the VAE

# The letter pairs merged by the tiny tokenizer, in merge-rank order (a real BPE's first merges).
_TINY_MERGES = (
    ("t", "h"), ("i", "n"), ("e", "r"), ("a", "n"), ("o", "n"), ("r", "e"), ("th", "e</w>"),
    ("e", "n"), ("o", "r"), ("a", "r"), ("a", "t"), ("i", "c"), ("o", "o"), ("l", "i"),
    ("a", "l"), ("e", "d</w>"), ("s", "t"), ("in", "g</w>"), ("r", "o"),
)


# --------------------------------------------------------------------------------------------
# Tokenizer (handwritten vocabulary, CLIP's byte-level BPE format)
# --------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte -> printable unicode character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def tiny_clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """A small CLIP BPE vocabulary (every byte, alone and word-final, a few merges, the two
    special tokens last as in CLIP) and its merge list."""
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    merges: list[str] = []
    for pair in _TINY_MERGES:
        merges.append(f"{pair[0]} {pair[1]}")
        tokens.append(pair[0] + pair[1])
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def save_tiny_clip_tokenizer(folder: str | Path) -> Path:
    """Write a CLIP tokenizer folder (vocab.json, merges.txt, tokenizer_config.json,
    special_tokens_map.json: the files of SD1.5's ``tokenizer/``, and only those) without any download."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("tokenizer.json", "added_tokens.json", "chat_template.jinja"):  # what a tokenizer's own save may add
        (folder / stale).unlink(missing_ok=True)
    vocab, merges = tiny_clip_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2, sort_keys=True) + "\n")
    config = dict(special, tokenizer_class="CLIPTokenizer", model_max_length=77, do_lower_case=True, errors="replace")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def _tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    save_tiny_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder))


def _tiny_text_config(*, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    vocab, _ = tiny_clip_vocab_and_merges()
    kwargs: dict[str, Any] = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    if projection_dim is not None:
        kwargs["projection_dim"] = projection_dim
    return CLIPTextConfig(**kwargs)


# --------------------------------------------------------------------------------------------
# Tiny SD1.5
# --------------------------------------------------------------------------------------------


def tiny_sd15_unet_config() -> dict[str, Any]:
    """The tiny SD1.5-style UNet: two levels (32, 64 channels), one layer each, 32-wide cross-attention."""
    return dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def _tiny_vae(scaling_factor: float, *, force_upcast: bool = False):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(_SEED_VAE)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(TINY_VAE_BLOCK_OUT_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(TINY_VAE_BLOCK_OUT_CHANNELS),
        block_out_channels=TINY_VAE_BLOCK_OUT_CHANNELS,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=scaling_factor,
        force_upcast=force_upcast,
    )


def _sd_scheduler():
    from diffusers import PNDMScheduler

    # SD1.5's own scheduler config.
    return PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def save_tiny_sd15(folder: str | Path) -> Path:
    """Save a tiny SD1.5 pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
    scheduler/; safetensors) loadable by ``StableDiffusionControlNetPipeline.from_pretrained``.

    The VAE downsamples 8x like the real one and the UNet's ``sample_size`` is 8, so the default
    output is 64x64. Returns the folder.
    """
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(_SEED_UNET)
    unet = UNet2DConditionModel(**tiny_sd15_unet_config())
    vae = _tiny_vae(0.18215)
    torch.manual_seed(_SEED_TEXT_ENCODER)
    text_encoder = CLIPTextModel(_tiny_text_config())
    tokenizer = _tiny_tokenizer(folder / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    save_tiny_clip_tokenizer(folder / "tokenizer")  # the handwritten files, as SD1.5 ships them
    return folder


def _read_unet_config(unet_folder_or_config: str | Path | dict) -> dict[str, Any]:
    if isinstance(unet_folder_or_config, dict):
        return dict(unet_folder_or_config)
    path = Path(unet_folder_or_config)
    for candidate in (path / "unet" / "config.json", path / "config.json", path):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    raise FileNotFoundError(f"no UNet config.json in {path} (looked for unet/config.json and config.json)")


def _randomise_zero_initialised(model, seed: int, std: float = 0.05) -> None:
    """Give a ControlNet's zero-initialised weights (its 'zero convolutions') small seeded random
    values, so that untrained it still responds to its control image."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and not bool(parameter.any()):
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * std)


def save_tiny_controlnet(folder: str | Path, unet_folder_or_config: str | Path | dict, *, seed: int = _SEED_CONTROLNET) -> Path:
    """Save a tiny ``ControlNetModel`` (config.json + diffusion_pytorch_model.safetensors) whose
    architecture matches the given UNet (a pipeline folder, a unet/ folder, a config.json or a
    config dict). Give each ControlNet of a multi-ControlNet test its own ``seed``."""
    import torch
    from diffusers import ControlNetModel

    config = _read_unet_config(unet_folder_or_config)
    torch.manual_seed(seed)
    controlnet = ControlNetModel(
        in_channels=config.get("in_channels", 4),
        down_block_types=tuple(config["down_block_types"]),
        block_out_channels=tuple(config["block_out_channels"]),
        layers_per_block=config.get("layers_per_block", 2),
        cross_attention_dim=config.get("cross_attention_dim", 768),
        attention_head_dim=config.get("attention_head_dim", 8),
        norm_num_groups=config.get("norm_num_groups", 32),
        use_linear_projection=config.get("use_linear_projection", False),
        transformer_layers_per_block=config.get("transformer_layers_per_block", 1),
        addition_embed_type=config.get("addition_embed_type"),
        addition_time_embed_dim=config.get("addition_time_embed_dim"),
        projection_class_embeddings_input_dim=config.get("projection_class_embeddings_input_dim"),
        conditioning_embedding_out_channels=_conditioning_channels_for(config),
    )
    _randomise_zero_initialised(controlnet, seed + 1000)
    folder = Path(folder)
    controlnet.save_pretrained(str(folder), safe_serialization=True)
    return folder


def _conditioning_channels_for(unet_config: dict[str, Any]) -> tuple[int, ...]:
    # The conditioning embedding must downsample as much as the VAE: 8x for SD (and our tiny VAE).
    if tuple(unet_config["block_out_channels"])[0] >= 320:
        return (16, 32, 96, 256)
    return TINY_CONDITIONING_EMBEDDING_OUT_CHANNELS


# --------------------------------------------------------------------------------------------
# Tiny SDXL + ControlNet union
# --------------------------------------------------------------------------------------------

_TINY_SDXL_TIME_EMBED_DIM = 8
_TINY_SDXL_TEXT_WIDTH = 32


def tiny_sdxl_unet_config() -> dict[str, Any]:
    """The tiny SDXL-style UNet (text_time conditioning, linear projections, two text encoders)."""
    return dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=_TINY_SDXL_TIME_EMBED_DIM,
        transformer_layers_per_block=(1, 1),
        # 6 micro-conditioning numbers (original size, crop, target size) + text_encoder_2's pooled projection.
        projection_class_embeddings_input_dim=6 * _TINY_SDXL_TIME_EMBED_DIM + _TINY_SDXL_TEXT_WIDTH,
        cross_attention_dim=2 * _TINY_SDXL_TEXT_WIDTH,
        norm_num_groups=32,
    )


def save_tiny_sdxl(folder: str | Path) -> Path:
    """Save a tiny SDXL pipeline folder (``StableDiffusionXLPipeline`` layout: unet, vae,
    text_encoder, text_encoder_2, tokenizer, tokenizer_2, scheduler; safetensors)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(_SEED_UNET)
    unet = UNet2DConditionModel(**tiny_sdxl_unet_config())
    vae = _tiny_vae(0.13025, force_upcast=False)
    torch.manual_seed(_SEED_TEXT_ENCODER)
    text_encoder = CLIPTextModel(_tiny_text_config())
    torch.manual_seed(_SEED_TEXT_ENCODER_2)
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_text_config(projection_dim=_TINY_SDXL_TEXT_WIDTH))
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=_tiny_tokenizer(folder / "tokenizer"),
        tokenizer_2=_tiny_tokenizer(folder / "tokenizer_2"),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    save_tiny_clip_tokenizer(folder / "tokenizer")
    save_tiny_clip_tokenizer(folder / "tokenizer_2")
    return folder


def save_tiny_controlnet_union(folder: str | Path, *, seed: int = _SEED_CONTROLNET_UNION) -> Path:
    """Save a tiny ``ControlNetUnionModel`` matching ``save_tiny_sdxl``'s UNet."""
    import torch
    from diffusers import ControlNetUnionModel

    unet = tiny_sdxl_unet_config()
    torch.manual_seed(seed)
    controlnet = ControlNetUnionModel(
        in_channels=4,
        down_block_types=unet["down_block_types"],
        block_out_channels=unet["block_out_channels"],
        layers_per_block=unet["layers_per_block"],
        attention_head_dim=unet["attention_head_dim"],
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=unet["addition_time_embed_dim"],
        transformer_layers_per_block=unet["transformer_layers_per_block"],
        projection_class_embeddings_input_dim=unet["projection_class_embeddings_input_dim"],
        cross_attention_dim=unet["cross_attention_dim"],
        norm_num_groups=32,
        conditioning_embedding_out_channels=TINY_CONDITIONING_EMBEDDING_OUT_CHANNELS,
        num_control_type=6,
        num_trans_channel=unet["block_out_channels"][0],
        num_trans_head=2,
        num_trans_layer=1,
        num_proj_channel=unet["block_out_channels"][0],
    )
    _randomise_zero_initialised(controlnet, seed + 1000)
    folder = Path(folder)
    controlnet.save_pretrained(str(folder), safe_serialization=True)
    return folder


# --------------------------------------------------------------------------------------------
# Tiny IP-Adapter and CLIP image encoder
# --------------------------------------------------------------------------------------------


def save_tiny_image_encoder(folder: str | Path, *, seed: int = _SEED_IMAGE_ENCODER) -> Path:
    """A tiny ``CLIPVisionModelWithProjection`` (32x32 input, 8-pixel patches, 16-wide projection),
    saved with safetensors weights and ``architectures`` in its config, as the hub's image encoders are."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=TINY_IMAGE_EMBED_DIM, hidden_act="quick_gelu")
    config.architectures = ["CLIPVisionModelWithProjection"]
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(config)
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def save_tiny_ip_adapter(folder: str | Path, unet_folder_or_config: str | Path | dict, *, seed: int = _SEED_IP_ADAPTER,
                         subfolder: str = "models", weight_name: str = "ip-adapter_sd15.safetensors",
                         image_encoder: bool = True, std: float = 0.2) -> Path:
    """Save a tiny IP-Adapter for the given UNet in ``h94/IP-Adapter``'s layout: ``folder/<subfolder>/<weight_name>``
    (safetensors: ``image_proj.proj.weight``/``bias``, ``image_proj.norm.weight``/``bias``, and for the
    k-th cross-attention processor of the UNet, in ``unet.attn_processors`` order,
    ``ip_adapter.{2k+1}.to_k_ip.weight`` and ``to_v_ip.weight``), and, with ``image_encoder``,
    ``folder/<subfolder>/image_encoder/``. The weights are seeded random (``std`` large enough
    that an image moves the output). Returns ``folder``."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    config = _read_unet_config(unet_folder_or_config)
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    unet = UNet2DConditionModel(**config)
    cross = int(config["cross_attention_dim"])
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (torch.randn(shape, generator=generator) * std).contiguous()

    tensors = {
        "image_proj.proj.weight": rand(4 * cross, TINY_IMAGE_EMBED_DIM),
        "image_proj.proj.bias": rand(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        attn = unet.get_submodule(name[: -len(".processor")])
        hidden = attn.to_k.out_features
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(hidden, cross)
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(hidden, cross)
        key_id += 2
    folder = Path(folder)
    (folder / subfolder).mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / subfolder / weight_name))
    if image_encoder:
        save_tiny_image_encoder(folder / subfolder / "image_encoder")
    return folder


# --------------------------------------------------------------------------------------------
# Full-size architectures (random weights) for benchmarks
# --------------------------------------------------------------------------------------------

# stable-diffusion-v1-5/stable-diffusion-v1-5, unet/config.json
SD15_UNET_CONFIG: dict[str, Any] = dict(
    act_fn="silu",
    attention_head_dim=8,
    block_out_channels=(320, 640, 1280, 1280),
    center_input_sample=False,
    cross_attention_dim=768,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
    norm_num_groups=32,
    out_channels=4,
    sample_size=64,
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)

# lllyasviel/control_v11f1p_sd15_depth (and the other v1.1 SD1.5 ControlNets), config.json
SD15_CONTROLNET_CONFIG: dict[str, Any] = dict(
    act_fn="silu",
    attention_head_dim=8,
    block_out_channels=(320, 640, 1280, 1280),
    conditioning_embedding_out_channels=(16, 32, 96, 256),
    controlnet_conditioning_channel_order="rgb",
    cross_attention_dim=768,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
    norm_num_groups=32,
)

# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json
SDXL_UNET_CONFIG: dict[str, Any] = dict(
    act_fn="silu",
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    attention_head_dim=(5, 10, 20),
    block_out_channels=(320, 640, 1280),
    center_input_sample=False,
    cross_attention_dim=2048,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
    norm_num_groups=32,
    out_channels=4,
    projection_class_embeddings_input_dim=2816,
    sample_size=128,
    transformer_layers_per_block=(1, 2, 10),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    use_linear_projection=True,
)

# xinsir/controlnet-union-sdxl-1.0 (ControlNetUnionModel), config.json
SDXL_CONTROLNET_UNION_CONFIG: dict[str, Any] = dict(
    act_fn="silu",
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    attention_head_dim=(5, 10, 20),
    block_out_channels=(320, 640, 1280),
    conditioning_embedding_out_channels=(16, 32, 96, 256),
    controlnet_conditioning_channel_order="rgb",
    cross_attention_dim=2048,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
    norm_num_groups=32,
    num_control_type=6,
    num_trans_channel=320,
    num_trans_head=8,
    num_trans_layer=1,
    num_proj_channel=320,
    projection_class_embeddings_input_dim=2816,
    transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True,
)


def _placed(module, dtype, device):
    """``module`` in eval mode on ``device``, cast only when ``dtype`` is not float32 (a cast warns)."""
    import torch

    module = module.to(device=device)
    if dtype is not None and dtype != torch.float32:
        module = module.to(dtype=dtype)
    return module.eval()


def build_full_size_sd15_unet_and_controlnets(n: int, dtype=None, device=None):
    """SD1.5's UNet and ``n`` SD1.5 ControlNets with random weights, in eval mode on ``device``
    with ``dtype``. Returns ``(unet, [controlnet, ...])``."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    dtype = dtype or torch.float32
    torch.manual_seed(_SEED_UNET)
    unet = _placed(UNet2DConditionModel(**SD15_UNET_CONFIG), dtype, device)
    controlnets = []
    for k in range(n):
        torch.manual_seed(_SEED_CONTROLNET + k)
        controlnets.append(_placed(ControlNetModel(**SD15_CONTROLNET_CONFIG), dtype, device))
    return unet, controlnets


def build_full_size_sdxl_unet_and_controlnet_union(dtype=None, device=None):
    """SDXL's UNet and the SDXL ControlNet-union model with random weights. Returns ``(unet, controlnet)``."""
    import torch
    from diffusers import ControlNetUnionModel, UNet2DConditionModel

    dtype = dtype or torch.float32
    torch.manual_seed(_SEED_UNET)
    unet = _placed(UNet2DConditionModel(**SDXL_UNET_CONFIG), dtype, device)
    torch.manual_seed(_SEED_CONTROLNET_UNION)
    controlnet = _placed(ControlNetUnionModel(**SDXL_CONTROLNET_UNION_CONFIG), dtype, device)
    return unet, controlnet
