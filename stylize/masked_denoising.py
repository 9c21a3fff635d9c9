"""A ControlNet denoising loop that keeps known content per pixel at every step (as inpainting does).

Used by the ``flow_warp`` mode (known = the previous output warped by exact flow) and the
``keyframes`` mode (known = what the texture atlases already hold). One global img2img strength
cannot keep some pixels and regenerate others; this loop can:

1. Timesteps as img2img: ``set_timesteps(N)``, start at index ``N - int(N * strength)``.
2. Latents: ``strength == 1``: fresh noise x ``init_noise_sigma`` everywhere (exactly what the
   text-to-image pipeline does). Otherwise known latent cells start from
   ``scheduler.add_noise(known_latents, noise, t0)`` and unknown cells from fresh noise scaled to
   the marginal at ``t0`` (a sample of the prior: nothing of the old content leaks in).
3. Each step: classifier-free guidance (uncond / cond halves), each ControlNet with its own scale
   and guidance window (diffusers' ``control_guidance_start``/``end`` rule), UNet with the summed
   residuals, ``scheduler.step``, then
   ``latents = mask * add_noise(known_latents, noise, t_next) + (1 - mask) * latents``
   (the known latents themselves after the last step).
4. Decode, then composite in pixel space: known pixels keep the known image bit for bit, the
   generated region is blended in with a feather that lies only inside it.

The known mask on the latent grid is conservative: a latent cell is known only if all its 8x8
pixels are. Noise comes from one CPU ``torch.Generator`` per frame, so results do not depend on
the device's RNG. Cost: :class:`DenoisingCounter` counts UNet evaluations x batch elements (a CFG
pair counts 2); ControlNet evaluations are not counted separately.

SD1.x only: the components of a ``StableDiffusionControlNetPipeline`` (``unet``, ``vae``,
``scheduler``, the text encoder through ``encode_prompt``) with ``ControlNetModel`` ControlNets. SDXL
(its added text and time embeddings) and the union ControlNet are not handled: the stylize stage
refuses ``flow_warp`` and ``keyframes`` for them, and runs ``per_frame`` through the diffusers
pipelines, which serve every family. Without known content this loop is the text-to-image pipeline
(``tests/test_consistency_denoising.py`` checks they agree to 1 LSB). torch is imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from greybox.pixel_masks import dilate

LATENT_SCALE = 8


@dataclass
class DenoisingCounter:
    """UNet evaluations x batch elements over a job (a CFG pair counts 2)."""

    unet_evaluations: int = 0
    per_frame: dict[int, int] = field(default_factory=dict)

    def add(self, frame: int, n: int) -> None:
        self.unet_evaluations += n
        self.per_frame[frame] = self.per_frame.get(frame, 0) + n


@dataclass
class ControlSpec:
    """One ControlNet's input: the model, its (H, W, 3) uint8 control image, scale and window."""

    model: object
    image: np.ndarray
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0


def latent_known_mask(pixel_known: np.ndarray, factor: int = LATENT_SCALE) -> np.ndarray:
    """(H/8, W/8) bool: a latent cell is known only when all of its 8x8 pixels are known."""
    h, w = pixel_known.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {w}x{h} must be a multiple of {factor}")
    return pixel_known.reshape(h // factor, factor, w // factor, factor).all(axis=(1, 3))


def inward_feather(generate: np.ndarray, width: int) -> np.ndarray:
    """Alpha (H, W) float: 0 outside ``generate``, rising to 1 over ``width`` px inside it (city-block
    distance to the outside), so pixels outside the mask are never touched."""
    alpha = generate.astype(np.float64)
    if width <= 0:
        return alpha
    # city-block distance to the outside, up to ``width``: the step at which 4-connected growth of the outside arrives
    dist = np.where(generate, np.inf, 0.0)
    reached = ~generate
    for step in range(1, width + 1):
        grown = dilate(reached, 1, connectivity=4)
        dist[grown & ~reached] = step
        reached = grown
    return np.where(generate, np.minimum(dist / (width + 1), 1.0), 0.0)


def encode_prompts(pipe, prompt: str, negative_prompt: str, device=None):
    """(cond, uncond) text embeddings (1, L, D) with the pipeline's tokenizer and text encoder."""
    import torch

    device = device or pipe.unet.device
    with torch.inference_mode():
        cond, uncond = pipe.encode_prompt(prompt, device, 1, True, negative_prompt=negative_prompt)
    return cond, uncond


def _marginal_std(scheduler, timestep) -> float:
    """Standard deviation of x_t for a unit-variance x_0 at ``timestep`` (VP: 1; sigma-space: sqrt(1 + sigma^2))."""
    import torch

    one = torch.ones(1, 1, 1, 1)
    zero = torch.zeros(1, 1, 1, 1)
    t = timestep.reshape(1) if hasattr(timestep, "reshape") else torch.tensor([timestep])
    a = float(scheduler.add_noise(one, zero, t).flatten()[0])
    s = float(scheduler.add_noise(zero, one, t).flatten()[0])
    return float(np.sqrt(a * a + s * s))


def masked_denoise(
    pipe,
    *,
    frame: int,
    prompt_embeds,
    negative_prompt_embeds,
    controls: list[ControlSpec],
    height: int,
    width: int,
    num_inference_steps: int,
    guidance_scale: float,
    seed: int,
    known_image: np.ndarray | None = None,
    known_mask: np.ndarray | None = None,
    strength: float = 1.0,
    feather: int = 2,
    anchor=None,
    counter: DenoisingCounter | None = None,
    return_latents: bool = False,
    added_cond_kwargs: dict | None = None,
    cross_attention_kwargs: dict | None = None,
):
    """Generate one frame, keeping ``known_image`` where ``known_mask`` (pixels) is True.

    ``pipe``: SD1.x components (``unet``, ``vae``, ``scheduler``; ControlNets come in ``controls``).
    ``known_image``: (H, W, 3) float 0..1 or uint8. ``strength``: share of the schedule run (1 =
    from pure noise). ``anchor``: an :class:`stylize.anchor_attention.AnchorState` already installed
    on ``pipe.unet`` (its ``mode`` is honoured; this loop sets its step index). Returns (H, W, 3)
    uint8: decoded, then composited (known pixels bit-identical to ``known_image`` rounded to uint8);
    with ``return_latents`` also the final latents and the known latents (None without known content).
    ``added_cond_kwargs`` / ``cross_attention_kwargs`` go to the UNet as the pipelines pass them: a
    UNet with an IP-Adapter loaded needs ``added_cond_kwargs={"image_embeds": [...]}`` (CFG halves
    as the latents), and masked reference images come as ``{"ip_adapter_masks": [...]}``
    (:class:`stylize.prompt_direction.PromptDirector` builds both). ``prompt_embeds`` may hold
    several prompts along the token axis (region prompts; the directed processors split them).
    """
    import torch

    # 1. Check inputs
    if height % LATENT_SCALE or width % LATENT_SCALE:
        raise ValueError(f"size {width}x{height} must be a multiple of {LATENT_SCALE}")
    if not 0 < strength <= 1:
        raise ValueError(f"strength {strength} must be in (0, 1]")
    if (known_image is None) != (known_mask is None):
        raise ValueError("give known_image and known_mask together")
    unet, vae, scheduler = pipe.unet, pipe.vae, pipe.scheduler
    device, dtype = unet.device, unet.dtype
    do_cfg = guidance_scale > 1.0
    known8 = None
    if known_image is not None:
        known8 = known_image if known_image.dtype == np.uint8 else np.clip(np.rint(known_image * 255), 0, 255).astype(np.uint8)
        if known8.shape[:2] != (height, width) or known_mask.shape != (height, width):
            raise ValueError(f"known image {known8.shape[:2]} / mask {known_mask.shape} must be {(height, width)}")
        if not known_mask.any():
            known8 = None
    if known8 is None:
        strength = 1.0

    # 2. Timesteps (img2img's rule) and the noise
    scheduler.set_timesteps(num_inference_steps, device=device)
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    t_start = max(num_inference_steps - init_timestep, 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order :]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    if len(timesteps) == 0:
        raise ValueError(f"strength {strength} with {num_inference_steps} steps runs no step; raise one of them")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    shape = (1, unet.config.in_channels, height // LATENT_SCALE, width // LATENT_SCALE)
    noise = torch.randn(shape, generator=generator, device="cpu", dtype=dtype).to(device)

    # 3. Known latents, the latent mask, the starting latents
    mask_t = None
    known_latents = None
    if known8 is not None:
        pixels = torch.from_numpy(known8.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None].to(device, dtype)
        with torch.inference_mode():
            known_latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
        cell_known = latent_known_mask(known_mask)
        mask_t = torch.from_numpy(cell_known.astype(np.float32))[None, None].to(device, dtype)
    if strength >= 1.0 or known_latents is None:
        latents = noise * scheduler.init_noise_sigma
    else:
        t0 = timesteps[:1]
        fresh = noise * _marginal_std(scheduler, t0.cpu())
        latents = mask_t * scheduler.add_noise(known_latents, noise, t0) + (1 - mask_t) * fresh

    # 4. Conditioning: embeddings and control images (CFG halves: uncond, cond)
    embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_cfg else prompt_embeds
    embeds = embeds.to(device, dtype)
    control_tensors = []
    for c in controls:
        img = torch.from_numpy(c.image.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device, dtype)
        control_tensors.append(torch.cat([img] * 2) if do_cfg else img)
    extra = pipe.prepare_extra_step_kwargs(generator, 0.0) if hasattr(pipe, "prepare_extra_step_kwargs") else {}
    n = len(timesteps)

    # 5. The loop
    with torch.inference_mode():
        for i, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            down, mid = None, None
            for c, image in zip(controls, control_tensors):
                keep = 1.0 - float(i / n < c.start or (i + 1) / n > c.end)
                scale = float(c.scale) * keep
                if scale == 0.0:
                    continue
                d, m = c.model(model_input, t, encoder_hidden_states=embeds, controlnet_cond=image,
                               conditioning_scale=scale, guess_mode=False, return_dict=False)
                if down is None:
                    down, mid = list(d), m
                else:
                    down = [a + b for a, b in zip(down, d)]
                    mid = mid + m
            if anchor is not None:
                anchor.step = i
            noise_pred = unet(model_input, t, encoder_hidden_states=embeds, down_block_additional_residuals=down,
                              mid_block_additional_residual=mid, added_cond_kwargs=added_cond_kwargs,
                              cross_attention_kwargs=cross_attention_kwargs, return_dict=False)[0]
            if counter is not None:
                counter.add(frame, int(model_input.shape[0]))
            if do_cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (cond - uncond)
            latents = scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0]
            if mask_t is not None:
                proper = known_latents
                if i < n - 1:
                    proper = scheduler.add_noise(known_latents, noise, torch.tensor([timesteps[i + 1]]))
                latents = mask_t * proper + (1 - mask_t) * latents

        # 6. Decode
        decoded = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    image = (decoded / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
    out = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)

    # 7. Composite: known pixels stay bit-identical; feather only inward
    if known8 is not None:
        alpha = inward_feather(~known_mask, feather)[..., None]
        blended = np.rint(alpha * out.astype(np.float64) + (1 - alpha) * known8.astype(np.float64))
        out = np.where(known_mask[..., None], known8, np.clip(blended, 0, 255).astype(np.uint8))
    if return_latents:
        return out, latents, known_latents
    return out
