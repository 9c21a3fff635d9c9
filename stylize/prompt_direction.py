"""The conditioning of a directed call: region prompts and reference images for one batch of frames.

:class:`PromptDirector` is what the diffusion stylizer (the pipelines, ``per_frame``) and the
sequence modes (the masked loop) share. For one call over a batch of frames
(:class:`stylize.region_masks.FrameDirection` each) :meth:`PromptDirector.directing`:

1. encodes the global prompt and each region prompt the batch shows, once per style (a region's
   empty ``negative_prompt`` takes the global one), and concatenates them along the token axis:
   ``prompt_embeds`` = [global | region a | region b ...], the same for ``negative_prompt_embeds``
   (SDXL: the pooled embeddings are the global prompt's);
2. sets the :class:`stylize.directed_attention.DirectionState` the processors read: the segments
   and, per frame, the weights of :func:`stylize.region_masks.attention_weights` (a frame of the
   batch that shows none of the batch's regions weighs the global prompt 1 everywhere);
3. adds the reference images that apply to the call: the whole-frame ones in a base call; the
   masked ones too (each with its mask) in a masked call; their embeddings (computed once), one
   scale per image and the ``ip_adapter_masks`` (the processors hand the adapter each mask at
   its layer's grid: :meth:`stylize.directed_attention.DirectionState.set_image_masks`). When none applies and an adapter is loaded, the
   UNet is given zero image embeddings it never attends to (the processors run text attention
   alone: bit for bit the result without an adapter).

It yields the keyword arguments to add to the pipeline call (``prompt_embeds``, ...,
``ip_adapter_image_embeds``, ``cross_attention_kwargs``) or to the masked loop
(``prompt_embeds``, ``negative_prompt_embeds``, ``added_cond_kwargs``, ``cross_attention_kwargs``),
and clears the state after. torch is imported inside functions.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from stylize.region_masks import FrameDirection, attention_weights


class PromptDirector:
    """Region prompts and reference images of one style on one loaded pipeline (module docstring).

    ``state``: the :class:`DirectionState` installed on the pipeline's UNet and ControlNets;
    ``family``: ``sd15`` or ``sdxl``; ``adapter``: whether an IP-Adapter is loaded.
    """

    def __init__(self, pipe, style, family: str, state, *, adapter: bool = False):
        self.pipe = pipe
        self.style = style
        self.family = family
        self.state = state
        self.adapter = adapter
        self._prompts: dict[int, tuple] = {}
        self.reference: tuple | None = None  # (positive, negative) embeddings of every reference image
        self.reference_hashes: tuple[str, ...] = ()

    # -- reference images ------------------------------------------------------------------------

    def set_reference_images(self, images: list[np.ndarray], hashes: list[str]) -> None:
        """Encode the style's reference images (uint8 (H, W, 3), in ``style.reference_images`` order)
        once; again only when their bytes (``hashes``) change."""
        from stylize.reference_adapter import reference_embeddings

        if len(images) != len(self.style.reference_images):
            raise ValueError(f"{len(images)} reference images for {len(self.style.reference_images)} entries")
        if tuple(hashes) != self.reference_hashes or self.reference is None:
            self.reference = reference_embeddings(self.pipe, images) if images else None
            self.reference_hashes = tuple(hashes)

    # -- prompts ---------------------------------------------------------------------------------

    def _encode(self, index: int) -> tuple:
        """(cond, uncond[, pooled, negative pooled]) of prompt ``index`` (0 global, k + 1 region k)."""
        import torch

        if index not in self._prompts:
            style = self.style
            if index == 0:
                prompt, negative = style.prompt, style.negative_prompt
            else:
                region = style.regions[index - 1]
                prompt, negative = region.prompt, region.negative_prompt or style.negative_prompt
            device = self.pipe.unet.device
            with torch.inference_mode():
                if self.family == "sdxl":
                    cond, uncond, pooled, negative_pooled = self.pipe.encode_prompt(
                        prompt=prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True,
                        negative_prompt=negative)
                    self._prompts[index] = (cond, uncond, pooled, negative_pooled)
                else:
                    cond, uncond = self.pipe.encode_prompt(prompt, device, 1, True, negative_prompt=negative)
                    self._prompts[index] = (cond, uncond)
        return self._prompts[index]

    def prompt_embeddings(self, regions: list[int]) -> tuple[dict, list[int]]:
        """``({prompt_embeds, negative_prompt_embeds[, pooled...]}, segments)`` for the global prompt
        followed by ``regions`` (indices of ``style.regions``), batch 1."""
        import torch

        encoded = [self._encode(0)] + [self._encode(r + 1) for r in regions]
        kwargs = {"prompt_embeds": torch.cat([e[0] for e in encoded], dim=1),
                  "negative_prompt_embeds": torch.cat([e[1] for e in encoded], dim=1)}
        if self.family == "sdxl":
            kwargs["pooled_prompt_embeds"], kwargs["negative_pooled_prompt_embeds"] = encoded[0][2], encoded[0][3]
        return kwargs, [int(e[0].shape[1]) for e in encoded]

    # -- one call --------------------------------------------------------------------------------

    @contextmanager
    def directing(self, directions: list[FrameDirection], height: int, width: int, *, masked: bool = False,
                  loop: bool = False, do_cfg: bool = True):
        """Direct one call over ``directions`` (one per frame of the batch); yields the keyword
        arguments to add (see the module docstring). ``masked``: also the masked reference images
        the frames show (a masked call; one frame). ``loop``: arguments for the masked loop rather
        than the pipelines."""
        import torch

        # 1. Check inputs: the regions of the batch, in template order
        if masked and len(directions) != 1:
            raise ValueError("a masked call directs one frame")
        batch = len(directions)
        regions = sorted({r for d in directions for r in d.regions})
        unet = self.pipe.unet
        device, dtype = unet.device, unet.dtype
        extra: dict = {}

        # 2. Prompts and region weights
        if regions:
            embeddings, segments = self.prompt_embeddings(regions)
            frame_weights = []
            for d in directions:
                owner = np.zeros((height, width), np.int16)
                if d.owner is not None:  # the frame's own region numbers -> the batch's
                    remap = np.array([0] + [regions.index(r) + 1 for r in d.regions], dtype=np.int16)
                    owner = remap[d.owner]
                frame_weights.append(attention_weights(owner, len(segments)))
            self.state.set_regions(segments, frame_weights, device=device, dtype=dtype)
            if loop:
                extra.update(prompt_embeds=embeddings["prompt_embeds"], negative_prompt_embeds=embeddings["negative_prompt_embeds"])
            else:
                extra.update({k: torch.cat([v] * batch) for k, v in embeddings.items()})
        else:
            self.state.set_regions(None, None)

        # 3. Reference images: the whole-frame ones, and in a masked call the masked ones the frame shows.
        #    The pipelines repeat image embeddings per frame themselves: they get one frame's.
        if self.adapter:
            from stylize.reference_adapter import image_kwargs, set_image_scales

            if self.reference is None:
                raise RuntimeError("reference images were not set (PromptDirector.set_reference_images)")
            chosen = [(i, None) for i in directions[0].references]
            if masked:
                chosen += list(directions[0].masked)
            copies = batch if loop else 1
            if chosen:
                index = torch.tensor([i for i, _ in chosen])
                pick = (self.reference[0][index], self.reference[1][index])
                set_image_scales(unet, [self.style.reference_images[i].scale for i, _ in chosen])
                embeds, masks = image_kwargs(pick, [m for _, m in chosen], height=height, width=width, batch=copies,
                                             do_cfg=do_cfg, device=device, dtype=dtype)
                extra["cross_attention_kwargs"] = {"ip_adapter_masks": masks}
                self.state.set_image_masks([m for _, m in chosen], height, width, device=device, dtype=dtype)
                self.state.images_on = True
            else:  # the UNet needs image embeddings; the processors do not attend to them
                shape = self.reference[0].shape[1:]
                embeds = [torch.zeros((2 * copies if do_cfg else copies, 1, *shape), device=device, dtype=dtype)]
                self.state.images_on = False
            extra["added_cond_kwargs" if loop else "ip_adapter_image_embeds"] = (
                {"image_embeds": embeds} if loop else embeds)
        try:
            yield extra
        finally:
            self.state.clear()
