"""Brand colours that hold: a correction in CIELAB inside each target's mask, and its figures.

``[[style.brand_colors]]`` names objects (:mod:`scenes.brand_targets`) and an sRGB colour. Inside
those objects' pixels (and texels) the hue and chroma become the brand colour's while the
lightness follows what light and texture made it: each colour (L*, a*, b*) becomes
(g(f(L*)), C*, h) with the brand's hue h and chroma C* (or the most of it sRGB can show at that
lightness).

- f, the **lightness fit** of one object, is affine (L* -> c' + s (L* - c), s <= 1): the
  identity when the object's own lightnesses (2nd..98th percentile) lie where sRGB holds the brand
  colour; otherwise the largest s (and the c' nearest c) for which the mean CIEDE2000 over those
  lightnesses stays within ``FIT_BUDGET`` (:meth:`BrandColour.fit`). A saturated brand on a
  harshly lit object is moved into the lightnesses sRGB can show it at, with as much of its
  contrast (the texture) as that allows.
- g is the identity except near the ends of the lightness range where sRGB holds the brand's
  chroma within ``GAMUT_TOLERANCE`` (CIEDE2000) of itself; there it rolls off smoothly (C1, an
  exponential knee ``KNEE`` L* wide) towards that range's end, bounding every pixel's difference.

Both are monotone, so the order of lightnesses, the texture, is kept. A fit is fixed per object and
shot: in ``keyframes`` from the object's atlas (recorded with it, kept by the looks that start from
it), in ``flow_warp`` from the first frame that shows it; ``per_frame`` fits each frame on its own.
The correction is applied once, to the unbranded colours (never to corrected ones).

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
FIT_BUDGET = 1.2  # the mean CIEDE2000 a lightness fit aims at over its object's lightnesses (the contract: 2.0)
_FIT_SCALES = np.round(np.arange(1.0, 0.195, -0.02), 2)
_FIT_CENTRES = np.linspace(0.0, 100.0, 401)
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
    # {instance id: (c, c', s)}: each object's lightness fit; an object without one is fitted to the pixels corrected
    fits: dict = field(default_factory=dict)
    _chroma_lut: np.ndarray = field(init=False, repr=False)
    _delta_e_lut: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.lab = srgb_to_lab(np.asarray(parse_hex(self.color), dtype=np.uint8))
        self.chroma = float(np.hypot(self.lab[1], self.lab[2]))
        self.hue = float(np.arctan2(self.lab[2], self.lab[1]))
        cmax = _max_chroma(_L_GRID, self.hue)
        self._chroma_lut = np.minimum(cmax, self.chroma)
        held = self._lab_at(_L_GRID, self._chroma_lut)
        wanted = self._lab_at(_L_GRID, np.full_like(_L_GRID, self.chroma))
        self._delta_e_lut = ciede2000(held, wanted)
        ok = self._delta_e_lut <= GAMUT_TOLERANCE
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

    def fit(self, lightness: np.ndarray) -> tuple[float, float, float]:
        """The lightness fit (c, c', s) for an object whose unbranded lightnesses are these (module docstring):
        the largest scale s, then the centre c' nearest their centre c, whose mean CIEDE2000 after the
        correction is within ``FIT_BUDGET``; (c, c, 1) when the identity already is."""
        values = np.asarray(lightness, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return (50.0, 50.0, 1.0)
        p_lo, p_hi = np.percentile(values, [2.0, 98.0])
        centre = float((p_lo + p_hi) / 2.0)
        counts, edges = np.histogram(np.clip(values, 0.0, 100.0), bins=200, range=(0.0, 100.0))
        mids = (edges[:-1] + edges[1:]) / 2.0
        keep = counts > 0
        weights, mids = counts[keep] / counts.sum(), mids[keep]
        for scale in _FIT_SCALES:
            mapped = _FIT_CENTRES[:, None] + scale * (mids[None, :] - centre)
            de = np.interp(self.fit_lightness(mapped.ravel()).reshape(mapped.shape), _L_GRID, self._delta_e_lut) @ weights
            if scale == 1.0 and np.interp(self.fit_lightness(mids), _L_GRID, self._delta_e_lut) @ weights <= FIT_BUDGET:
                return (centre, centre, 1.0)
            ok = de <= FIT_BUDGET
            if ok.any():
                best = _FIT_CENTRES[ok][np.argmin(np.abs(_FIT_CENTRES[ok] - centre))]
                return (centre, float(best), float(scale))
        best = _FIT_CENTRES[int(np.argmin(de))]
        return (centre, float(best), float(_FIT_SCALES[-1]))

    def relit(self, lightness: np.ndarray) -> np.ndarray:
        """The brand colour re-lit to these lightnesses: (L*, a*, b*) with the brand's a*, b* (the figures' reference)."""
        lightness = np.asarray(lightness, dtype=np.float64)
        return np.stack([lightness, np.full_like(lightness, self.lab[1]), np.full_like(lightness, self.lab[2])], axis=-1)

    def correct(self, rgb: np.ndarray, fit: tuple[float, float, float] | None = None) -> np.ndarray:
        """(N, 3) sRGB 0..1 -> (N, 3) sRGB 0..1 with the brand's hue and chroma at the fitted lightness
        (``fit``: (c, c', s), default the fit of these colours themselves)."""
        lightness = srgb_to_lab(rgb)[..., 0]
        c, c_new, scale = self.fit(lightness) if fit is None else fit
        lightness = self.fit_lightness(c_new + scale * (lightness - c))
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


def fix_fits(image: np.ndarray, instance_id: np.ndarray, brands: list[BrandColour]) -> None:
    """Give every brand target this frame shows and that has no lightness fit yet the fit of its pixels here
    (``image``: the unbranded frame; ``flow_warp`` calls this frame by frame, so the first frame showing an object fixes it)."""
    for brand in brands:
        for inst in brand.instance_ids:
            if inst not in brand.fits:
                mask = instance_id == inst
                if mask.any():
                    brand.fits[inst] = brand.fit(srgb_to_lab(image[mask])[:, 0])


def target_mask(instance_id: np.ndarray, brand: BrandColour) -> np.ndarray:
    return np.isin(instance_id, np.asarray(brand.instance_ids, dtype=instance_id.dtype))


def apply_to_frame(image: np.ndarray, instance_id: np.ndarray, brands: list[BrandColour]) -> np.ndarray:
    """The frame (H, W, 3) uint8 with every brand's target pixels corrected (a copy; uint8)."""
    if not brands:
        return image
    out = np.array(image, copy=True)
    for brand in brands:
        for inst in brand.instance_ids:
            mask = instance_id == inst
            if mask.any():
                corrected = brand.correct(out[mask].astype(np.float64) / 255.0, brand.fits.get(inst))
                out[mask] = np.clip(np.rint(corrected * 255.0), 0, 255).astype(np.uint8)
    return out


def apply_to_texels(colour: np.ndarray, selection: np.ndarray, brand: BrandColour, fit=None) -> None:
    """Correct an atlas's selected texels in place (``colour`` (S, S, 3) float 0..1, ``selection`` (S, S) bool)
    with the object's lightness ``fit`` (default: the fit of the selected texels)."""
    if selection.any():
        colour[selection] = brand.correct(colour[selection].astype(np.float64), fit).astype(colour.dtype)


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
