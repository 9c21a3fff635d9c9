"""Reference images through an IP-Adapter: diffusers' own ``load_ip_adapter``, and the image embeddings.

:func:`load_reference_adapter` loads ``style.ip_adapter`` (resolved to local files by
:func:`stylize.model_resolution.resolve_ip_adapter`) into an SD1.x ControlNet pipeline:

1. the image processor first, as transformers' Pillow backend (``CLIPImageProcessorPil`` where
   transformers has it): ``load_ip_adapter`` would otherwise build a ``CLIPImageProcessor``,
   which without torchvision logs advice to install it (on a CPU machine PyPI's torchvision is a
   CUDA build that breaks diffusers: not advice to follow);
2. the CLIP vision encoder named by ``style.ip_adapter.image_encoder``, when one is
   (``CLIPVisionModelWithProjection.from_pretrained``, safetensors only); otherwise
   ``load_ip_adapter`` loads the adapter's own ``<subfolder>/image_encoder``;
3. ``pipe.load_ip_adapter(folder, subfolder, weight_name)`` (safetensors only, local files only),
   after the stylizer set its SDPA processors: setting processors afterwards would silently drop
   the adapter's, which :func:`stylize.directed_attention.check_image_processors` refuses.

:func:`reference_embeddings` encodes each reference image once (``pipe.encode_image``: the
pipeline's own feature extractor and encoder); :func:`image_kwargs` builds, for one call, the
``image_embeds`` (zeros for the unconditional half, as diffusers does) and the
``ip_adapter_masks`` (one per image: ones for a whole-frame image, the objects' exact mask for a
masked one), with one scale per image on the adapter's processors.

A masked reference image still moves pixels outside its mask (the adapter's mask only gates its
cross-attention term; self-attention and convolutions carry the change everywhere), so the
stylizers never rely on the mask for locality: a frame's masked reference images are applied by a
second, masked generation that regenerates only their objects' pixels and keeps every other pixel
of the frame bit for bit (the masked composite of :func:`stylize.masked_denoising.masked_denoise`).
torch, diffusers and transformers are imported inside functions.
"""

from __future__ import annotations

import numpy as np


def _pil_image_processor(image_size: int):
    try:  # transformers 5: the Pillow backend by name (no torchvision needed, nothing logged)
        from transformers import CLIPImageProcessorPil as processor_class
    except ImportError:  # older transformers: CLIPImageProcessor is the Pillow one
        from transformers import CLIPImageProcessor as processor_class
    return processor_class(size=image_size, crop_size=image_size)


def load_reference_adapter(pipe, resolved_ip, *, device, dtype) -> None:
    """Load the IP-Adapter ``resolved_ip`` (:class:`stylize.model_resolution.ResolvedIpAdapter`) into ``pipe``."""
    import json

    from stylize.directed_attention import check_image_processors

    # 1. The image encoder when another one is named, and the image processor (Pillow backend)
    if not resolved_ip.own_image_encoder:
        from transformers import CLIPVisionModelWithProjection

        encoder = CLIPVisionModelWithProjection.from_pretrained(str(resolved_ip.image_encoder), use_safetensors=True,
                                                                local_files_only=True)
        pipe.register_modules(image_encoder=encoder.to(device=device, dtype=dtype))
    size = int(json.loads((resolved_ip.image_encoder / "config.json").read_text()).get("image_size", 224))
    if getattr(pipe, "feature_extractor", None) is None:
        pipe.register_modules(feature_extractor=_pil_image_processor(size))

    # 2. The adapter, through diffusers' loader (safetensors, local files)
    pipe.load_ip_adapter(str(resolved_ip.folder), subfolder=resolved_ip.subfolder, weight_name=resolved_ip.weight_name,
                         image_encoder_folder="image_encoder" if resolved_ip.own_image_encoder else None,
                         local_files_only=True)
    pipe.image_encoder.to(device=device, dtype=dtype)
    check_image_processors(pipe.unet)


def reference_embeddings(pipe, images: list[np.ndarray]):
    """``(positive, negative)`` image embeddings of ``images`` (uint8 (H, W, 3) each), each (n, ...),
    through the pipeline's feature extractor and image encoder, as ``prepare_ip_adapter_image_embeds``
    computes them (the encoder's image embeddings and zeros for a plain IP-Adapter; its penultimate
    hidden states, and those of a black image, for the "plus" kinds)."""
    import torch
    from diffusers.models.embeddings import ImageProjection
    from PIL import Image

    device = pipe.unet.device
    layer = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    with torch.inference_mode():
        return pipe.encode_image([Image.fromarray(np.ascontiguousarray(im)) for im in images], device, 1,
                                 not isinstance(layer, ImageProjection))


def set_image_scales(unet, scales: list[float]) -> None:
    """One IP-Adapter scale per image of the next calls, on every adapter processor of ``unet``."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    for processor in unet.attn_processors.values():
        inner = getattr(processor, "image", processor)
        if isinstance(inner, IPAdapterAttnProcessor2_0):
            inner.scale = [list(float(s) for s in scales)]


def image_kwargs(embeddings, masks: list[np.ndarray | None], *, height: int, width: int, batch: int,
                 do_cfg: bool, device, dtype) -> tuple[list, list]:
    """``(image_embeds, ip_adapter_masks)`` for one adapter and the images of ``embeddings``
    (``(positive, negative)``, each (n, ...), in order): ``image_embeds`` is ``[tensor (2 * batch or
    batch, n, ...)]`` (the negative half first under CFG), ``ip_adapter_masks`` ``[tensor (1, n,
    height, width)]`` (None in ``masks``: the whole frame)."""
    import torch

    positive, negative = embeddings
    n = positive.shape[0]
    if len(masks) != n:
        raise ValueError(f"{len(masks)} masks for {n} reference images")

    def batched(t):
        return t.to(device=device, dtype=dtype)[None].expand(batch, *t.shape)

    embeds = torch.cat([batched(negative), batched(positive)]) if do_cfg else batched(positive)
    stack = np.stack([np.ones((height, width), np.float32) if m is None else m.astype(np.float32) for m in masks])
    mask = torch.from_numpy(stack)[None].to(device=device, dtype=dtype)
    return [embeds.contiguous()], [mask]
