"""ControlNet-guided diffusion: control images (and optionally init images) in, stylised frames out.

Pipelines (diffusers):
- SD1.5-style base + ControlNets: ``StableDiffusionControlNetPipeline`` (one ``ControlNetModel``,
  or a ``MultiControlNetModel`` list, each with its own ``controlnet_conditioning_scale`` and
  ``control_guidance_start``/``end``); with init images ``StableDiffusionControlNetImg2ImgPipeline``
  (built from the same components, no second load).
- SDXL base + ControlNets: ``StableDiffusionXLControlNetPipeline`` / ``...Img2ImgPipeline``.
- SDXL base + the union ControlNet: ``StableDiffusionXLControlNetUnionPipeline`` (and its img2img
  twin), one control image per pass with its ``control_mode`` (depth 1, lines 3, normal 4, seg 5)
  and one guidance window.

Reproducibility: one CPU ``torch.Generator`` per frame (``generator=[...]``), so a frame's noise
depends only on its seed, not on how frames are grouped into batches; batches have fixed
boundaries (``style.batch_size``); a fixed CPU thread count. Batched kernels do not round like
single ones (a CPU GEMM with 4 rows differs from one with 1 row in the last bit, which shows up
as 1 in uint8 after a few steps), so on the CPU, where batching buys little, the frames of a batch
run one by one (``batch_invariant``): results are then bit-identical whatever the batch size.
On CUDA a batch runs as one; the fixed boundaries keep the same frames together on every run. CUDA runs fp16 (or bf16 if asked),
the CPU float32. Attention is PyTorch SDPA (``AttnProcessor2_0``). Control images are handed over
as float tensors at exactly the output size, so the pipeline never resamples them.

Region prompts and reference images (``style.regions``, ``style.reference_images``): the
IP-Adapter is loaded after the SDPA processors are set (:mod:`stylize.reference_adapter`), then
every cross-attention processor of the UNet and the ControlNets is wrapped by a directed one
(:mod:`stylize.directed_attention`) and a :class:`stylize.prompt_direction.PromptDirector` builds
each call's conditioning from the frames' :class:`stylize.region_masks.FrameDirection`. A frame
that shows a masked reference image's objects is generated twice: the pipeline's frame without
the masked images, then the masked loop regenerates only those objects' pixels with them and keeps
every other pixel bit for bit (the images' locality comes from that composite, not from the
adapter's mask). SD1.x only for reference images; regions in every family.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from greybox.errors import InputError

from stylize.control_inputs import check_control_sizes

SUPPORTED_DTYPES = ("float32", "float16", "bfloat16")


def choose_device_and_dtype(device=None, dtype=None):
    """``(torch.device, torch.dtype)``: CUDA with fp16 when present (bf16 if asked), else CPU float32."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if isinstance(dtype, str):
        if dtype not in SUPPORTED_DTYPES:
            raise InputError(f"dtype {dtype!r} is not one of {', '.join(SUPPORTED_DTYPES)}")
        dtype = getattr(torch, dtype)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cpu" and dtype != torch.float32:
        raise InputError(f"dtype {dtype} on the CPU: the CPU runs float32 only (half precision is for CUDA)")
    return device, dtype


class DiffusionStylizer:
    """Loads the resolved models once and stylises frames from their control images.

    ``resolved`` comes from ``stylize.model_resolution.resolve_models``; ``style`` is the
    template's ``StyleSpec``. ``threads`` fixes ``torch.set_num_threads`` (CPU results depend on
    it). ``.pipeline`` is the loaded text-to-image pipeline (``.unet``, ``.controlnet``,
    ``.vae``, ``.text_encoder``, ``.tokenizer``, ``.scheduler``); ``.img2img_pipeline`` shares
    its components.
    """

    def __init__(self, resolved, style, *, device=None, dtype=None, threads: int | None = None):
        from stylize.quiet_libraries import quiet_libraries

        quiet_libraries()  # before diffusers is imported: no torchvision advice, no loading bars
        import torch

        # 1. Check inputs and fix the numerics.
        if not resolved.controlnets:
            raise InputError("the diffusion stylizer needs at least one ControlNet (style.controlnets)")
        self.resolved = resolved
        self.style = style
        self.device, self.dtype = choose_device_and_dtype(device, dtype)
        if threads is not None:
            if threads < 1:
                raise InputError(f"threads must be at least 1, got {threads}")
            torch.set_num_threads(int(threads))
        self.threads = torch.get_num_threads()

        # 2. Load the ControlNets and the pipeline through from_pretrained (local folders only,
        #    safetensors only, no remote code).
        self.controlnet = self._load_controlnets()
        self.pipeline = self._load_pipeline()

        # 3. Scheduler by its diffusers class name, SDPA attention, device.
        self.pipeline.scheduler = _scheduler_from_name(style.scheduler, self.pipeline.scheduler.config)
        _use_sdpa(self.pipeline)
        self.pipeline.to(self.device)
        self.pipeline.set_progress_bar_config(disable=True)
        self._img2img = None
        # On the CPU run each frame of a batch alone, so that outputs do not depend on batching.
        self.batch_invariant = self.device.type == "cpu"

        # 4. Regions and reference images: the IP-Adapter after SDPA, then the directed processors.
        from stylize.masked_denoising import DenoisingCounter

        self.counter = DenoisingCounter()  # the masked passes of masked reference images
        self.director = self._load_direction() if (style.regions or style.reference_images) else None

    # ----------------------------------------------------------------------------------------
    # Loading
    # ----------------------------------------------------------------------------------------

    def _load_controlnets(self):
        import diffusers

        loaded: dict[str, Any] = {}
        models = []
        for c in self.resolved.controlnets:
            key = str(c.model.local_path)
            if key not in loaded:
                cls = getattr(diffusers, c.model.class_name)
                loaded[key] = cls.from_pretrained(key, **_dtype_kwargs(self.dtype), use_safetensors=True, local_files_only=True)
            models.append(loaded[key])
        if self.resolved.union:
            return models[0]
        if len(models) == 1:
            return models[0]
        try:
            from diffusers import MultiControlNetModel
        except ImportError:  # diffusers before it was exported at the top level
            from diffusers.pipelines.controlnet.multicontrolnet import MultiControlNetModel
        return MultiControlNetModel(models)

    def _pipeline_classes(self):
        import diffusers

        if self.resolved.union:
            return diffusers.StableDiffusionXLControlNetUnionPipeline, diffusers.StableDiffusionXLControlNetUnionImg2ImgPipeline
        if self.resolved.family == "sdxl":
            return diffusers.StableDiffusionXLControlNetPipeline, diffusers.StableDiffusionXLControlNetImg2ImgPipeline
        return diffusers.StableDiffusionControlNetPipeline, diffusers.StableDiffusionControlNetImg2ImgPipeline

    def _load_pipeline(self):
        text2img, _ = self._pipeline_classes()
        kwargs: dict[str, Any] = dict(
            controlnet=self.controlnet, use_safetensors=True, local_files_only=True, **_dtype_kwargs(self.dtype)
        )
        if self.resolved.family == "sd15":
            kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        return text2img.from_pretrained(str(self.resolved.base.local_path), **kwargs)

    def _load_direction(self):
        from stylize.directed_attention import DirectionState, check_image_processors, install_directed_attention
        from stylize.prompt_direction import PromptDirector

        adapter = self.resolved.ip_adapter
        if self.style.reference_images:
            if adapter is None:
                raise InputError("style.reference_images need the IP-Adapter resolved (resolve_models resolves "
                                 "style.ip_adapter when the style has reference images)")
            from stylize.reference_adapter import load_reference_adapter

            load_reference_adapter(self.pipeline, adapter, device=self.device, dtype=self.dtype)
        state = DirectionState()
        install_directed_attention(self.pipeline.unet, state)
        controlnet = self.pipeline.controlnet
        for net in getattr(controlnet, "nets", [controlnet]):
            install_directed_attention(net, state)
        if self.style.reference_images:
            check_image_processors(self.pipeline.unet)
        return PromptDirector(self.pipeline, self.style, self.resolved.family, state,
                              adapter=bool(self.style.reference_images))

    def set_reference_images(self, images: list[np.ndarray], hashes: list[str]) -> None:
        """The style's reference images (uint8 (H, W, 3), in ``style.reference_images`` order), encoded
        once (again only when ``hashes`` change)."""
        if self.director is not None and self.style.reference_images:
            self.director.set_reference_images(images, hashes)

    @property
    def img2img_pipeline(self):
        """The img2img pipeline over the same components (built on first use, nothing reloaded)."""
        if self._img2img is None:
            _, img2img = self._pipeline_classes()
            parameters = _init_parameters(img2img)
            components = {k: v for k, v in self.pipeline.components.items() if k in parameters}
            if "requires_safety_checker" in parameters:
                components["requires_safety_checker"] = False
            self._img2img = img2img(**components)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    # ----------------------------------------------------------------------------------------
    # Stylising
    # ----------------------------------------------------------------------------------------

    def stylize(
        self,
        frames: list[int],
        controls: list[dict[str, np.ndarray]],
        *,
        init_images: list[np.ndarray] | None = None,
        seeds: list[int],
        directions: list | None = None,
    ) -> list[np.ndarray]:
        """Stylise ``frames`` (uint8 (H, W, 3) each, in order).

        ``controls[i]`` maps each ControlNet's pass to frame ``frames[i]``'s uint8 (H, W, 3) control
        image, all at the output size; ``init_images`` (optional, same size) switches to img2img
        with ``style.strength``; ``seeds[i]`` is the frame's noise seed. Frames are processed in
        consecutive batches of ``style.batch_size``; each frame's result does not depend on that.
        ``directions[i]``: frame ``frames[i]``'s :class:`stylize.region_masks.FrameDirection`
        (needed when the style has regions or reference images).
        """
        # 1. Check inputs.
        n = len(frames)
        if len(controls) != n or len(seeds) != n or (init_images is not None and len(init_images) != n):
            raise InputError(
                f"stylize got {n} frames, {len(controls)} control sets, {len(seeds)} seeds"
                + (f", {len(init_images)} init images" if init_images is not None else "")
                + "; give one of each per frame"
            )
        if n == 0:
            return []
        pass_names = self.resolved.pass_names
        first = controls[0]
        missing = [p for p in pass_names if p not in first]
        if missing:
            raise InputError(f"frame {frames[0]}: no control image for pass(es) {', '.join(missing)} (ControlNets: {', '.join(pass_names)})")
        height, width = first[pass_names[0]].shape[:2]
        if height % 8 or width % 8:
            raise InputError(f"output size {width}x{height} must be a multiple of 8 in both sides (render.resolution)")
        for frame, control in zip(frames, controls):
            absent = [p for p in pass_names if p not in control]
            if absent:
                raise InputError(f"frame {frame}: no control image for pass(es) {', '.join(absent)}")
            check_control_sizes({p: control[p] for p in pass_names}, (width, height), frame=frame)
        if init_images is not None:
            check_control_sizes({f"init image of frame {f}": im for f, im in zip(frames, init_images)}, (width, height))
        if self.director is not None and (directions is None or len(directions) != n):
            raise InputError("this style has regions or reference images: give each frame its direction (stylize.region_masks.frame_direction)")

        # 2. Fixed batch boundaries: consecutive groups of style.batch_size.
        outputs: list[np.ndarray] = []
        size = self.style.batch_size
        for lo in range(0, n, size):
            hi = min(lo + size, n)
            step = 1 if self.batch_invariant else hi - lo
            for k in range(lo, hi, step):
                outputs += self._run_batch(
                    controls[k : k + step], None if init_images is None else init_images[k : k + step], seeds[k : k + step], height, width,
                    None if directions is None else directions[k : k + step],
                )
        return outputs

    def _control_tensor(self, images: list[np.ndarray]):
        import torch

        # (B, 3, H, W) float32 in [0, 1] at exactly the output size: the pipeline's control image
        # processor does not resize it (and never normalises control images to [-1, 1]).
        batch = np.stack(images).astype(np.float32) / 255.0
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def _image_tensor(self, images: list[np.ndarray]):
        # img2img source: the pipeline's image processor normalises [0, 1] to [-1, 1].
        return self._control_tensor(images)

    def _run_batch(self, controls, init_images, seeds, height, width, directions=None) -> list[np.ndarray]:
        from contextlib import nullcontext

        import torch

        style = self.style
        batch = len(seeds)
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        call: dict[str, Any] = dict(
            prompt=[style.prompt] * batch,
            negative_prompt=[style.negative_prompt] * batch,
            num_inference_steps=style.num_inference_steps,
            guidance_scale=style.guidance_scale,
            generator=generators,
            output_type="np",
        )
        pass_names = self.resolved.pass_names
        control_tensors = [self._control_tensor([c[p] for c in controls]) for p in pass_names]
        nets = self.resolved.controlnets
        if self.resolved.union:
            start, end = self.resolved.union_window
            call.update(
                control_image=control_tensors,
                control_mode=self.resolved.union_control_modes,
                controlnet_conditioning_scale=[float(c.scale) for c in nets],
                control_guidance_start=float(start),
                control_guidance_end=float(end),
            )
        else:
            one = len(nets) == 1
            call.update(
                controlnet_conditioning_scale=float(nets[0].scale) if one else [float(c.scale) for c in nets],
                control_guidance_start=float(nets[0].start) if one else [float(c.start) for c in nets],
                control_guidance_end=float(nets[0].end) if one else [float(c.end) for c in nets],
            )
        if init_images is None:
            pipe = self.pipeline
            if not self.resolved.union:
                call["image"] = control_tensors[0] if len(nets) == 1 else control_tensors
        else:
            pipe = self.img2img_pipeline
            call["image"] = self._image_tensor(init_images)
            call["strength"] = float(style.strength)
            if not self.resolved.union:
                call["control_image"] = control_tensors[0] if len(nets) == 1 else control_tensors
        call.update(height=height, width=width)
        directing = nullcontext({})
        if self.director is not None:  # regions and the whole-frame reference images (masked ones below)
            directing = self.director.directing(directions, height, width, do_cfg=style.guidance_scale > 1.0)
        with torch.inference_mode(), directing as extra:
            if "prompt_embeds" in extra:
                del call["prompt"], call["negative_prompt"]
            call.update(extra)
            result = pipe(**call).images
        # As diffusers' numpy_to_pil: round(x * 255).
        out = [np.ascontiguousarray((np.clip(im, 0.0, 1.0) * 255.0).round().astype(np.uint8)) for im in result]
        for k, direction in enumerate(directions or []):
            if direction.masked:
                out[k] = self._masked_references(direction, controls[k], seeds[k], out[k], height, width)
        return out

    def _masked_references(self, direction, control: dict, seed: int, base: np.ndarray, height: int, width: int) -> np.ndarray:
        """Regenerate the pixels of the masked reference images' objects with them applied, keeping
        every other pixel of ``base`` bit for bit (the masked loop at full strength)."""
        from stylize.masked_denoising import ControlSpec, masked_denoise

        style = self.style
        covered = np.zeros((height, width), dtype=bool)
        for _, mask in direction.masked:
            covered |= mask
        nets = list(getattr(self.pipeline.controlnet, "nets", [self.pipeline.controlnet]))
        specs = [ControlSpec(net, control[c.pass_name], float(c.scale), float(c.start), float(c.end))
                 for net, c in zip(nets, self.resolved.controlnets)]
        with self.director.directing([direction], height, width, masked=True, loop=True,
                                     do_cfg=style.guidance_scale > 1.0) as extra:
            if "prompt_embeds" not in extra:
                embeddings, _ = self.director.prompt_embeddings([])
                extra.update(prompt_embeds=embeddings["prompt_embeds"], negative_prompt_embeds=embeddings["negative_prompt_embeds"])
            return masked_denoise(
                self.pipeline, frame=direction.frame, controls=specs, height=height, width=width,
                num_inference_steps=style.num_inference_steps, guidance_scale=style.guidance_scale, seed=seed,
                known_image=base, known_mask=~covered, strength=1.0, counter=self.counter, **extra,
            )


def _dtype_kwargs(dtype) -> dict:
    """``dtype=`` where diffusers has it (0.42+; ``torch_dtype`` is deprecated there), else ``torch_dtype=``."""
    from diffusers.utils import deprecation_utils

    return {"dtype": dtype} if hasattr(deprecation_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def _init_parameters(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def _scheduler_from_name(name: str, config):
    """The scheduler class ``name`` (diffusers class name) configured from the model's scheduler config."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_config"):
        raise InputError(f"style.scheduler {name!r} is not a diffusers scheduler class")
    return cls.from_config(config)


def _use_sdpa(pipe) -> None:
    """PyTorch scaled-dot-product attention for the UNet and every ControlNet."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    modules = [pipe.unet]
    controlnet = pipe.controlnet
    modules += list(getattr(controlnet, "nets", [controlnet]))
    for module in modules:
        if hasattr(module, "set_attn_processor"):
            module.set_attn_processor(AttnProcessor2_0())
