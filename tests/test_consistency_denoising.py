"""The masked denoising loop and anchor attention, with tiny random-weight SD1.5 + ControlNets."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from stylize.anchor_attention import AnchorState, anchor_attention  # noqa: E402
from stylize.masked_denoising import (  # noqa: E402
    ControlSpec,
    DenoisingCounter,
    encode_prompts,
    inward_feather,
    latent_known_mask,
    masked_denoise,
)

SIZE = 32


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    from diffusers import ControlNetModel, MultiControlNetModel, StableDiffusionControlNetPipeline

    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_sd15

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("tiny_models")
    base = save_tiny_sd15(root / "sd15")
    nets = [ControlNetModel.from_pretrained(str(save_tiny_controlnet(root / f"cn{i}", base, seed=10 + i))) for i in range(2)]
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        str(base), controlnet=MultiControlNetModel(nets), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    controls = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in nets]
    cond, uncond = encode_prompts(pipe, "a room", "blurry")
    return pipe, nets, controls, cond, uncond


def run(tiny_pipe, **kwargs):
    pipe, nets, controls, cond, uncond = tiny_pipe
    args = dict(frame=1, prompt_embeds=cond, negative_prompt_embeds=uncond,
                controls=[ControlSpec(nets[0], controls[0], 1.0, 0.0, 1.0), ControlSpec(nets[1], controls[1], 0.6, 0.0, 0.5)],
                height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=3.0, seed=5)
    args.update(kwargs)
    return masked_denoise(pipe, **args)


def test_without_known_content_it_is_the_text_to_image_pipeline(tiny_pipe):
    pipe, nets, controls, cond, uncond = tiny_pipe
    counter = DenoisingCounter()
    ours = run(tiny_pipe, counter=counter)
    images = [torch.from_numpy(c.astype(np.float32) / 255).permute(2, 0, 1)[None] for c in controls]
    theirs = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, image=images, num_inference_steps=2,
                  guidance_scale=3.0, controlnet_conditioning_scale=[1.0, 0.6], control_guidance_start=[0.0, 0.0],
                  control_guidance_end=[1.0, 0.5], generator=torch.Generator().manual_seed(5), height=SIZE, width=SIZE,
                  output_type="np").images[0]
    theirs8 = np.clip(np.rint(theirs * 255), 0, 255).astype(np.uint8)
    assert np.abs(ours.astype(int) - theirs8.astype(int)).max() <= 1
    # every UNet evaluation counted, a CFG pair as 2 (PNDM's PLMS runs one extra evaluation)
    pipe.scheduler.set_timesteps(2)
    assert counter.unet_evaluations == len(pipe.scheduler.timesteps) * 2
    # an all-unknown mask is the same as no known content
    nothing = run(tiny_pipe, known_image=np.zeros((SIZE, SIZE, 3)), known_mask=np.zeros((SIZE, SIZE), bool))
    assert np.array_equal(nothing, ours)


def test_known_cells_hold_the_known_latents_and_known_pixels_stay_bit_identical(tiny_pipe):
    rng = np.random.default_rng(3)
    known_image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[:, :20] = True  # latent columns 0 and 1 fully known, column 2 only partly: unknown
    counter = DenoisingCounter()
    out, latents, known_latents = run(tiny_pipe, known_image=known_image, known_mask=mask, strength=0.5,
                                      num_inference_steps=4, counter=counter, return_latents=True)
    cells = latent_known_mask(mask)
    assert cells[:, :2].all() and not cells[:, 2:].any()
    assert torch.equal(latents[..., :2], known_latents[..., :2])
    assert not torch.allclose(latents[..., 2:], known_latents[..., 2:], atol=1e-3)
    assert np.array_equal(out[mask], known_image[mask])
    pipe = tiny_pipe[0]
    pipe.scheduler.set_timesteps(4)
    assert counter.unet_evaluations == len(pipe.scheduler.timesteps[2 * pipe.scheduler.order:]) * 2  # strength 0.5
    # an all-known mask at a small strength keeps everything
    everything = np.ones((SIZE, SIZE), bool)
    kept, latents, known_latents = run(tiny_pipe, known_image=known_image, known_mask=everything, strength=0.25,
                                       num_inference_steps=4, return_latents=True)
    assert torch.equal(latents, known_latents) and np.array_equal(kept, known_image)


def test_same_seed_same_frame_and_unknown_region_changes_with_the_seed(tiny_pipe):
    known_image = np.full((SIZE, SIZE, 3), 128, np.uint8)
    mask = np.ones((SIZE, SIZE), bool)
    mask[8:24, 8:24] = False
    a = run(tiny_pipe, known_image=known_image, known_mask=mask, strength=0.5, num_inference_steps=4)
    b = run(tiny_pipe, known_image=known_image, known_mask=mask, strength=0.5, num_inference_steps=4)
    c = run(tiny_pipe, known_image=known_image, known_mask=mask, strength=0.5, num_inference_steps=4, seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[~mask], c[~mask]) and np.array_equal(a[mask], c[mask])


def test_anchor_attention_to_an_identical_frame_reproduces_the_plain_output(tiny_pipe):
    pipe = tiny_pipe[0]
    plain, plain_latents, _ = run(tiny_pipe, return_latents=True)
    state = AnchorState()
    before = dict(pipe.unet.attn_processors)
    with anchor_attention(pipe.unet, state):
        state.mode = "record"
        recorded, _, _ = run(tiny_pipe, return_latents=True, anchor=state)
        assert len(state.store) > 0 and all(k[0].endswith("attn1.processor") for k in state.store)
        assert {k[1] for k in state.store} == set(range(len(tiny_pipe[0].scheduler.timesteps)))
        state.mode = "use"
        anchored, anchored_latents, _ = run(tiny_pipe, return_latents=True, anchor=state)
        # a different frame attending to the anchor does change
        state.mode = "use"
        other_anchored = run(tiny_pipe, seed=9, anchor=state)
    state.mode = "off"
    other_plain = run(tiny_pipe, seed=9)
    assert np.array_equal(recorded, plain)
    assert torch.allclose(anchored_latents, plain_latents, atol=1e-4)
    assert np.abs(anchored.astype(int) - plain.astype(int)).max() <= 1
    assert not np.array_equal(other_anchored, other_plain)
    # the processors are restored
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == {k: type(v) for k, v in before.items()}


def test_mask_helpers():
    mask = np.zeros((16, 16), bool)
    mask[3, 4] = True
    grown = np.zeros((16, 16), bool)
    grown[:8, :8] = True  # the latent cell of the masked pixel
    known = ~mask
    assert latent_known_mask(known).tolist() == [[False, True], [True, True]]
    alpha = inward_feather(grown, 2)
    assert (alpha[~grown] == 0).all() and alpha[3, 3] == 1.0 and alpha[7, 7] == pytest.approx(1 / 3)
