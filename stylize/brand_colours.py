"""Brand colours that hold: a correction in CIELAB inside each target's mask, and its figures.

``[[style.brand_colors]]`` names objects (:mod:`scenes.brand_targets`) and an sRGB colour. Inside
those objects' pixels (and texels) the hue and chroma become the brand colour's while the
lightness stays what light and texture made it: each colour (L*, a*, b*) becomes
(g(L*), C*, h) with the brand's hue h and chroma C* (or the most of it sRGB can show at that
lightness). g is the identity except near the ends of the lightness range where sRGB holds the
brand's chroma within ``GAMUT_TOLERANCE`` (CIEDE2000) of itself; there it rolls off smoothly
(C1, an exponential knee ``KNEE`` L* wide) towards that range's end, so the order of lightnesses,
which is the texture, is kept. The correction is pointwise: the same colour gives the same
colour in every frame, texel and shot.

Where it applies: the final frames of every mode (:func:`apply_to_frame`, pixels of the target
objects; in ``flow_warp`` each frame before the next warps from it), and in ``keyframes`` also
the objects' atlases (so a look, and the textures baked from it, carry the brand colour).

The figures (:func:`brand_figures`), the issue's contract: the mean CIEDE2000 between each mask
pixel and the brand colour re-lit to that pixel's own L* (at most 2.0), and the L* standard
deviation inside the mask (at least 80% of the same render's without the brand colour).

numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scenes.brand_targets import brand_targets, parse_hex, pooled_figures
from stylize.perceptual_colour import ciede2000, lab_to_linear, lab_to_srgb, srgb_to_lab

GAMUT_TOLERANCE = 5.0  # CIEDE2000 a lightness may miss the brand chroma by and still count as holding it
KNEE = 6.0  # L*: width of the roll-off at each end of that range
_L_GRID = np.linspace(0.0, 100.0, 2001)


def _max_chroma(lightness: np.ndarray, hue: float) -> np.ndarray:
    """The largest chroma at ``hue`` (radians) that sRGB holds at each L* (bisection on the gamut)."""
    lo = np.zeros_like(lightness)
    hi = np.full_like(lightness, 200.0)
    direction = np.array([np.cos(hue), np.sin(hue)])
    for _ in range(40):
        mid = (lo + hi) / 2.0
        lab = np.stack([lightness, mid * direction[0], mid * direction[1]], axis=-1)
        rgb = lab_to_linear(lab)
        inside = np.all((rgb >= -1e-9) & (rgb <= 1.0 + 1e-9), axis=-1)
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    return lo


@dataclass
class BrandColour:
    """One ``[[style.brand_colors]]`` entry, resolved: its colour in CIELAB and the lightness range sRGB holds it in."""

    target: str
    color: str
    instance_ids: list[int]
    lab: np.ndarray = field(init=False)
    chroma: float = field(init=False)
    hue: float = field(init=False)
    lightness_range: tuple[float, float] = field(init=False)
    _chroma_lut: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.lab = srgb_to_lab(np.asarray(parse_hex(self.color), dtype=np.uint8))
        self.chroma = float(np.hypot(self.lab[1], self.lab[2]))
        self.hue = float(np.arctan2(self.lab[2], self.lab[1]))
        cmax = _max_chroma(_L_GRID, self.hue)
        self._chroma_lut = np.minimum(cmax, self.chroma)
        held = self._lab_at(_L_GRID, self._chroma_lut)
        wanted = self._lab_at(_L_GRID, np.full_like(_L_GRID, self.chroma))
        ok = ciede2000(held, wanted) <= GAMUT_TOLERANCE
        # the run of lightnesses around the brand's own (which sRGB holds: it is an sRGB colour)
        i = int(np.argmin(np.abs(_L_GRID - self.lab[0])))
        lo = hi = i
        while lo > 0 and ok[lo - 1]:
            lo -= 1
        while hi < len(_L_GRID) - 1 and ok[hi + 1]:
            hi += 1
        self.lightness_range = (float(_L_GRID[lo]), float(_L_GRID[hi]))

    def _lab_at(self, lightness: np.ndarray, chroma: np.ndarray) -> np.ndarray:
        return np.stack([lightness, chroma * np.cos(self.hue), chroma * np.sin(self.hue)], axis=-1)

    def fit_lightness(self, lightness: np.ndarray) -> np.ndarray:
        """g(L*): identity inside the range, an exponential knee towards each end (C1, monotone)."""
        lo, hi = self.lightness_range
        knee = min(KNEE, (hi - lo) / 4.0)
        out = np.asarray(lightness, dtype=np.float64).copy()
        if knee <= 0:
            return np.full_like(out, (lo + hi) / 2.0)
        low_start, high_start = lo + knee, hi - knee
        below = out < low_start
        above = out > high_start
        out[below] = lo + knee * np.exp(-(low_start - out[below]) / knee)
        out[above] = hi - knee * np.exp(-(out[above] - high_start) / knee)
        return out

    def relit(self, lightness: np.ndarray) -> np.ndarray:
        """The brand colour re-lit to these lightnesses: (L*, a*, b*) with the brand's a*, b* (the figures' reference)."""
        lightness = np.asarray(lightness, dtype=np.float64)
        return np.stack([lightness, np.full_like(lightness, self.lab[1]), np.full_like(lightness, self.lab[2])], axis=-1)

    def correct(self, rgb: np.ndarray) -> np.ndarray:
        """(N, 3) sRGB 0..1 -> (N, 3) sRGB 0..1 with the brand's hue and chroma at the fitted lightness."""
        lightness = self.fit_lightness(srgb_to_lab(rgb)[..., 0])
        chroma = np.interp(lightness, _L_GRID, self._chroma_lut)
        return np.clip(lab_to_srgb(self._lab_at(lightness, chroma)), 0.0, 1.0)

    def record(self) -> dict:
        return {"target": self.target, "color": self.color, "instance_ids": list(self.instance_ids),
                "lab": [round(float(v), 4) for v in self.lab],
                "lightness_range": [round(v, 2) for v in self.lightness_range]}


def resolve_brand_colours(style, scene) -> list[BrandColour]:
    """The style's brand colours against a Scene (or a parsed layout.json), each with its objects."""
    if not style.brand_colors:
        return []
    ids = brand_targets(style, scene)
    return [BrandColour(entry.target, entry.color.upper(), list(i)) for entry, i in zip(style.brand_colors, ids)]


def target_mask(instance_id: np.ndarray, brand: BrandColour) -> np.ndarray:
    return np.isin(instance_id, np.asarray(brand.instance_ids, dtype=instance_id.dtype))


def apply_to_frame(image: np.ndarray, instance_id: np.ndarray, brands: list[BrandColour]) -> np.ndarray:
    """The frame (H, W, 3) uint8 with every brand's target pixels corrected (a copy; uint8)."""
    if not brands:
        return image
    out = np.array(image, copy=True)
    for brand in brands:
        mask = target_mask(instance_id, brand)
        if mask.any():
            corrected = brand.correct(out[mask].astype(np.float64) / 255.0)
            out[mask] = np.clip(np.rint(corrected * 255.0), 0, 255).astype(np.uint8)
    return out


def apply_to_texels(colour: np.ndarray, selection: np.ndarray, brand: BrandColour) -> None:
    """Correct an atlas's selected texels in place (``colour`` (S, S, 3) float 0..1, ``selection`` (S, S) bool)."""
    if selection.any():
        colour[selection] = brand.correct(colour[selection].astype(np.float64)).astype(colour.dtype)


def frame_figure_sums(image: np.ndarray, instance_id: np.ndarray, brand: BrandColour,
                      before: np.ndarray | None = None) -> dict | None:
    """The sums one frame adds to a target's figures, or None when the frame does not show it:
    ``pixels``, the sum of CIEDE2000 to the re-lit brand colour, and the sum and sum of squares of
    L* (after the correction, and ``before`` it when given), so figures pool over any set of frames."""
    mask = target_mask(instance_id, brand)
    n = int(mask.sum())
    if n == 0:
        return None
    lab = srgb_to_lab(image[mask])
    sums = {"pixels": n, "delta_e": float(ciede2000(lab, brand.relit(lab[:, 0])).sum()),
            "delta_e_max_frame_mean": float(ciede2000(lab, brand.relit(lab[:, 0])).mean()),
            "l": float(lab[:, 0].sum()), "l2": float((lab[:, 0] ** 2).sum())}
    if before is not None:
        lb = srgb_to_lab(before[mask])[:, 0]
        sums.update({"l_before": float(lb.sum()), "l2_before": float((lb ** 2).sum())})
    return sums


def brand_figures(frames: list[np.ndarray], instance_ids: list[np.ndarray], brand: BrandColour,
                  unbranded: list[np.ndarray] | None = None) -> dict:
    """The contract's figures for one target over a shot's frames: :func:`pooled_figures` of the
    frames, with ``unbranded`` (the same render without the brand colour) as the L* reference."""
    sums = [frame_figure_sums(f, i, brand, None if unbranded is None else u)
            for f, i, u in zip(frames, instance_ids, unbranded or [None] * len(frames))]
    return pooled_figures(sums)
