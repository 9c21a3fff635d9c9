"""Anchor attention: later frames' self-attention also attends to an anchor frame (the first).

A processor derived from diffusers' ``AttnProcessor2_0`` (PyTorch SDPA). For self-attention
(``encoder_hidden_states is None``): in ``record`` mode it stores the anchor frame's hidden states
per (layer, denoising step index) -- the batch keeps its CFG halves in place, so each half is
stored with its own -- and in ``use`` mode it calls the parent with
``encoder_hidden_states = cat([hidden_states, anchor], dim=1)``: keys and values come from both the
current frame and the anchor. Cross-attention is untouched. Installed on the UNet's ``attn1``
processors only, through ``unet.set_attn_processor`` with a fresh dict (the call empties it).
Attending to an identical anchor reproduces the plain output (duplicated keys leave the softmax
average unchanged).

torch and diffusers are imported inside functions (``anchor_processor_class`` builds the class).
"""

from __future__ import annotations

from contextlib import contextmanager


class AnchorState:
    """Shared by every installed processor: the mode, the current step index and the stored states."""

    def __init__(self):
        self.mode = "off"  # "off" | "record" | "use"
        self.step = 0
        self.store: dict[tuple[str, int], object] = {}

    def clear(self) -> None:
        self.store.clear()
        self.mode = "off"
        self.step = 0


_CLASS = None


def anchor_processor_class():
    """The processor class (built on first use so that importing this module needs no torch)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    class AnchorAttnProcessor(AttnProcessor2_0):
        def __init__(self, layer: str, state: AnchorState):
            super().__init__()
            self.layer = layer
            self.state = state

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
            state = self.state
            if encoder_hidden_states is None and state.mode != "off":
                key = (self.layer, state.step)
                if state.mode == "record":
                    state.store[key] = hidden_states.detach().clone()
                elif state.mode == "use" and key in state.store:
                    anchor = state.store[key]
                    if anchor.shape[0] != hidden_states.shape[0]:
                        raise RuntimeError(
                            f"anchor attention: anchor batch {anchor.shape[0]} differs from the frame's {hidden_states.shape[0]}"
                        )
                    encoder_hidden_states = torch.cat([hidden_states, anchor.to(hidden_states.dtype)], dim=1)
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)

    _CLASS = AnchorAttnProcessor
    return _CLASS


def install_anchor_attention(unet, state: AnchorState) -> dict:
    """Put anchor processors on every ``attn1`` (self-attention) of ``unet``; others keep theirs.
    Returns the previous processors (pass to :func:`restore_processors`)."""
    cls = anchor_processor_class()
    previous = dict(unet.attn_processors)
    fresh = {}
    for name, processor in previous.items():
        fresh[name] = cls(name, state) if name.endswith("attn1.processor") else processor
    unet.set_attn_processor(fresh)
    return previous


def restore_processors(unet, previous: dict) -> None:
    unet.set_attn_processor(dict(previous))


@contextmanager
def anchor_attention(unet, state: AnchorState):
    """``with anchor_attention(unet, state): ...`` installs the processors and restores the old ones after."""
    previous = install_anchor_attention(unet, state)
    try:
        yield state
    finally:
        restore_processors(unet, previous)
