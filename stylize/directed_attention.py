"""Directed cross-attention: each region's prompt conditions only its pixels, at every cross-attention layer.

:class:`DirectionState` holds what the current UNet (and ControlNet) call directs: the prompts'
token counts in ``encoder_hidden_states`` (the global prompt first, then each region that touches
the frame, concatenated along the token axis, so CFG's uncond and cond halves, the pipelines'
batching and the ControlNets carry them as they carry one prompt), the per-cell weights of each
prompt at every attention resolution (:func:`stylize.region_masks.attention_weights`), and whether
reference images apply to this call.

:func:`install_directed_attention` wraps every ``attn2`` (cross-attention) processor of a UNet or
ControlNet in a :class:`DirectedCrossAttention` (``directed_processor_class``) that keeps the
processor it found: diffusers' ``AttnProcessor2_0``, or the ``IPAdapterAttnProcessor2_0`` that
``load_ip_adapter`` installed. Per call it:

1. splits ``encoder_hidden_states`` (a tensor, or the IP-Adapter's ``(text, image)`` tuple) into
   the prompts' segments;
2. runs the kept processor once per segment, the image tokens (and ``ip_adapter_masks``) going
   with every segment when reference images apply, else runs ``AttnProcessor2_0`` on the text
   alone, exactly the computation without an adapter. The ``ip_adapter_masks`` the adapter gets
   are the reference images' masks at this layer's own grid
   (:func:`stylize.region_masks.mask_weights`, set in the state), not the full-resolution ones the
   call carries: diffusers would resample those bicubically to each grid, losing small objects;
3. blends the outputs per token: ``out = sum_p w_p * out_p``. A processor's output is affine in
   its attention output (output projection, residual, rescale) and the weights sum to 1 in every
   cell, so the blend is the attention output each cell's own prompt mix gives, and the image term
   of an IP-Adapter, present in every ``out_p``, is added exactly once.

Without regions on a call (no segments) the kept processor runs as it would alone: bit for bit the
plain result. Self-attention (``attn1``, where anchor attention lives) is untouched. Installed
after the IP-Adapter is loaded: re-installing SDPA processors afterwards would drop the adapter's
(:func:`check_image_processors` refuses that state). torch and diffusers are imported inside functions.
"""

from __future__ import annotations

import numpy as np


class DirectionState:
    """Shared by the installed processors: what the current call directs.

    ``segments``: token counts of the prompts in ``encoder_hidden_states`` (global first), or None
    when the call has no regions. ``weights``: ``{tokens: tensor (frames, prompts, tokens)}`` for
    each attention resolution (the batch's element ``b`` uses frame ``b % frames``: CFG repeats the
    frames). ``images_on``: whether reference images apply to this call. ``image_masks``:
    ``{tokens: tensor (1, images, rows, columns)}``, each reference image's mask at each attention
    grid (:func:`stylize.region_masks.mask_weights`; ones for a whole-frame image).
    """

    def __init__(self):
        self.segments: list[int] | None = None
        self.weights: dict[int, object] = {}
        self.images_on = False
        self.image_masks: dict[int, object] = {}

    def set_image_masks(self, masks: list[np.ndarray | None], height: int, width: int, device=None, dtype=None) -> None:
        """The reference images of the next calls: per image its (H, W) bool mask, or None for the
        whole frame; kept per attention grid (the class docstring)."""
        import torch

        from stylize.region_masks import mask_weights

        per_image = [mask_weights(np.ones((height, width), bool) if m is None else np.asarray(m, bool)) for m in masks]
        self.image_masks = {n: torch.from_numpy(np.stack([w[n] for w in per_image])[None]).to(device=device, dtype=dtype)
                            for n in per_image[0]} if per_image else {}

    def set_regions(self, segments: list[int] | None, frame_weights: list[dict[int, np.ndarray]] | None, device=None, dtype=None):
        """Direct the next calls: ``segments`` as above and, per frame of the batch, the weights of
        :func:`stylize.region_masks.attention_weights` (None: no regions)."""
        import torch

        if not segments or len(segments) < 2:
            self.segments, self.weights = None, {}
            return
        self.segments = [int(s) for s in segments]
        tokens = frame_weights[0].keys()
        self.weights = {n: torch.from_numpy(np.stack([w[n] for w in frame_weights])).to(device=device, dtype=dtype)
                        for n in tokens}

    def clear(self) -> None:
        self.segments, self.weights, self.images_on, self.image_masks = None, {}, False, {}


_CLASS = None


def directed_processor_class():
    """The processor class (built on first use so that importing this module needs no torch)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0

    class DirectedCrossAttention(torch.nn.Module):
        """A cross-attention processor that blends per-prompt attention by region weights (module docstring)."""

        def __init__(self, layer: str, state: DirectionState, kept=None):
            super().__init__()
            self.layer = layer
            self.state = state
            self.text = AttnProcessor2_0()
            # the IP-Adapter's processor (a module holding weights: assigned here, it moves with the model)
            self.image = kept if isinstance(kept, IPAdapterAttnProcessor2_0) else None
            self.kept = self.text if (self.image is not None or kept is None) else kept

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                     scale: float = 1.0, ip_adapter_masks=None):
            state = self.state
            text, image_tokens = (encoder_hidden_states if isinstance(encoder_hidden_states, tuple)
                                  else (encoder_hidden_states, None))
            with_images = self.image is not None and image_tokens is not None and state.images_on
            if with_images and ip_adapter_masks is not None and hidden_states.ndim == 3:
                level = state.image_masks.get(hidden_states.shape[1])
                if level is None:
                    raise RuntimeError(f"{self.layer}: no reference image masks for a {hidden_states.shape[1]}-token "
                                       f"attention grid (have {sorted(state.image_masks)})")
                ip_adapter_masks = [level]

            def run(segment):
                if with_images:
                    return self.image(attn, hidden_states, (segment, image_tokens), attention_mask, temb, scale=scale,
                                      ip_adapter_masks=ip_adapter_masks)
                return self.kept(attn, hidden_states, segment, attention_mask, temb)

            segments = state.segments
            if text is None or not segments or text.shape[1] != sum(segments):
                return run(text)
            if hidden_states.ndim != 3:
                raise RuntimeError(f"{self.layer}: directed attention takes (batch, tokens, channels) hidden states")
            tokens = hidden_states.shape[1]
            weights = state.weights.get(tokens)
            if weights is None:
                raise RuntimeError(f"{self.layer}: no region weights for a {tokens}-token attention grid "
                                   f"(have {sorted(state.weights)})")
            batch = hidden_states.shape[0]
            per_element = weights[torch.arange(batch, device=weights.device) % weights.shape[0]]  # (batch, prompts, tokens)
            out = None
            for p, segment in enumerate(torch.split(text, segments, dim=1)):
                term = run(segment) * per_element[:, p, :, None].to(hidden_states.dtype)
                out = term if out is None else out + term
            return out

    _CLASS = DirectedCrossAttention
    return _CLASS


def install_directed_attention(model, state: DirectionState) -> int:
    """Wrap every ``attn2`` processor of ``model`` (a UNet or ControlNet) in a directed one keeping
    it (module docstring); returns how many. Idempotent for the same state."""
    cls = directed_processor_class()
    current = dict(model.attn_processors)
    fresh, count = {}, 0
    for name, processor in current.items():
        if name.endswith("attn2.processor") and not isinstance(processor, cls):
            fresh[name] = cls(name, state, processor)
            count += 1
        else:
            fresh[name] = processor
    model.set_attn_processor(fresh)
    return count


def check_image_processors(unet) -> None:
    """Raise RuntimeError unless every cross-attention processor of ``unet`` carries the IP-Adapter's
    (directly or inside a directed one): setting plain SDPA processors after ``load_ip_adapter``
    silently drops them, and reference images would then do nothing."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    cls = directed_processor_class()
    missing = []
    for name, processor in unet.attn_processors.items():
        if not name.endswith("attn2.processor"):
            continue
        inner = processor.image if isinstance(processor, cls) else processor
        if not isinstance(inner, IPAdapterAttnProcessor2_0):
            missing.append(name)
    if missing:
        raise RuntimeError(f"the IP-Adapter's attention processors are gone from {len(missing)} layer(s) "
                           f"({missing[0]}, ...): were other processors set after load_ip_adapter?")
