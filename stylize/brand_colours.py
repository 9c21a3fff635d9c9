"""Brand colours that hold: a correction in CIELAB inside each target's mask, and its figures.

``[[style.brand_colors]]`` names objects (:mod:`scenes.brand_targets`) and an sRGB colour. Inside
those objects' pixels (and texels) the hue and chroma become the brand colour's while the
lightness follows what light and texture made it: each colour (L*, a*, b*) becomes
(g(f(L*)), C*, h) with the brand's hue h and chroma C* (or the most of it sRGB can show at that
lightness).

- f, the **lightness fit** of one object, is affine (L* -> c' + s (L* - c), s <= 1) and chosen
  with g's span (:meth:`BrandColour.fit`) on what the frames show of the object: every frame's
  mean CIEDE2000 predicted within ``FRAME_BUDGET`` (1.9, the contract's 2.0 less a margin), then
  checked on the frames' 8-bit pixels and refitted tighter where the prediction was optimistic
  (:meth:`BrandColour.fit_pixels`). Of the maps within it: the smallest difference that keeps
  ``RATIO_GOAL`` (0.85) of the object's L* standard deviation (differences within
  ``DELTA_E_COMFORT`` alike, then the least change of L*: the render's light); where none keeps
  it, the most contrast. A saturated brand on a harshly lit object is moved into the lightnesses
  sRGB can show it at, with as much of its contrast (the texture) as the budget allows.
- g is the identity except near the ends of a span of lightnesses where sRGB holds the brand's
  chroma within a tolerance (``SPAN_TOLERANCES``, CIEDE2000; or all of 0..100); there it rolls off
  smoothly (C1, an exponential knee ``KNEE`` L* wide) towards the span's end.

Both are monotone and 1-Lipschitz, so the order of lightnesses, the texture, is kept. A fit is
fixed per object and shot: in ``keyframes`` from the shot's frames gathered from the object's
unbranded atlas (recorded with it, kept by the looks that start from it), in ``flow_warp`` from
every frame of the chain; ``per_frame`` fits each frame on its own. A target whose figures still
miss the contract (sRGB cannot show every colour at every lightness) gets a warning naming it and
its figures (:meth:`BrandColour.contract_warning`: the manifest's entry, and stderr).

The correction is applied once, to the unbranded colours (never to corrected ones).

Where it applies: the final frames of every mode (:func:`apply_to_frame`, pixels of the target
objects; in ``flow_warp`` each frame of the unbranded chain once it is done), and in ``keyframes`` also
the objects' atlases (so a look, and the textures baked from it, carry the brand colour).

The figures (:func:`brand_figures`), the issue's contract: the mean CIEDE2000 between each mask
pixel and the brand colour re-lit to that pixel's own L* (at most 2.0), and the L* standard
deviation inside the mask (at least 80% of the same render's without the brand colour).

numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scenes.brand_targets import brand_targets, contract_warning, parse_hex, pooled_figures
from stylize.perceptual_colour import ciede2000, lab_to_linear, lab_to_srgb, srgb_to_lab

GAMUT_TOLERANCE = 5.0  # CIEDE2000 a lightness may miss the brand chroma by and still count as holding it
FRAME_BUDGET = 1.9  # the mean CIEDE2000 a lightness fit allows in any frame (the contract: 2.0 over every frame)
DELTA_E_COMFORT = 1.0  # CIEDE2000 under which a fit prefers keeping the render's lightness to a smaller difference
RATIO_GOAL = 0.85  # the L* std ratio a fit aims at (the contract: 0.8), keeping the render's lightness otherwise
CONTRAST_TOLERANCE = 0.99  # a fit may give up 1% of the most L* contrast within the budget for a smaller difference
_FIT_SCALES = np.round(np.arange(1.0, 0.195, -0.01), 2)
_FIT_CENTRES = np.linspace(0.0, 100.0, 401)
SPAN_TOLERANCES = (5.0, 10.0, 20.0)  # CIEDE2000: the spans a fit's roll-off may end at (the last: 0..100)
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
        # the same as the figures read it: the held colour written as 8-bit, against the brand re-lit to its own L*
        written = srgb_to_lab(np.rint(np.clip(lab_to_srgb(held), 0.0, 1.0) * 255.0) / 255.0)
        self._delta_e_q_lut = ciede2000(written, self.relit(written[:, 0]))
        self.lightness_range = self._range_within(GAMUT_TOLERANCE)
        # the spans a fit may roll its lightnesses off towards: where sRGB holds the brand within each tolerance, or all
        self._spans = list(dict.fromkeys([self._range_within(t) for t in SPAN_TOLERANCES] + [(0.0, 100.0)]))

    def _range_within(self, tolerance: float) -> tuple[float, float]:
        """The run of lightnesses around the brand's own (which sRGB holds: it is an sRGB colour) where
        the held colour is within ``tolerance`` (CIEDE2000) of the brand's chroma."""
        ok = self._delta_e_lut <= tolerance
        i = int(np.argmin(np.abs(_L_GRID - self.lab[0])))
        lo = hi = i
        while lo > 0 and ok[lo - 1]:
            lo -= 1
        while hi < len(_L_GRID) - 1 and ok[hi + 1]:
            hi += 1
        return (float(_L_GRID[lo]), float(_L_GRID[hi]))

    def _lab_at(self, lightness: np.ndarray, chroma: np.ndarray) -> np.ndarray:
        return np.stack([lightness, chroma * np.cos(self.hue), chroma * np.sin(self.hue)], axis=-1)

    def fit_lightness(self, lightness: np.ndarray, span: tuple[float, float] | None = None) -> np.ndarray:
        """g(L*): identity inside ``span`` (default ``lightness_range``), an exponential knee towards each end (C1, monotone)."""
        lo, hi = self.lightness_range if span is None else span
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

    def fit(self, lightness, budget: float = FRAME_BUDGET) -> tuple:
        """The lightness fit (c, c', s) for an object whose unbranded lightnesses are these (module docstring).

        ``lightness``: one array, or a list of arrays, one per frame (each frame's pixels of the object).
        Among the maps g(c' + s (L* - c)) (s from 1 down to 0.2 by 0.01, c' on a 0.25 L* grid, g rolling
        off towards one of the spans where sRGB holds the brand within ``SPAN_TOLERANCES``, or towards
        0..100), those whose predicted mean CIEDE2000 (the 8-bit colours' difference, ``_delta_e_q_lut``) is within
        ``budget`` in every frame; of them the one giving the largest L* standard deviation over all
        the lightnesses (the texture) when none keeps ``RATIO_GOAL`` of it (less ``CONTRAST_TOLERANCE`` spent
        on the smallest difference), otherwise of those keeping it the one with the smallest worst-frame
        difference (any within ``DELTA_E_COMFORT`` alike), then the one changing L* least on average. Returns (c, c', s, span low, span high); a fit of three (recorded before spans) uses
        ``lightness_range``."""
        groups = [np.asarray(v, dtype=np.float64).ravel() for v in (lightness if isinstance(lightness, (list, tuple)) else [lightness])]
        groups = [v[np.isfinite(v)] for v in groups]
        groups = [v for v in groups if len(v)]
        if not groups:
            return (50.0, 50.0, 1.0, *self.lightness_range)
        values = np.concatenate(groups)
        p_lo, p_hi = np.percentile(values, [2.0, 98.0])
        centre = float((p_lo + p_hi) / 2.0)
        edges = np.linspace(0.0, 100.0, 201)
        per_group = np.stack([np.histogram(np.clip(v, 0.0, 100.0), bins=edges)[0] for v in groups]).astype(np.float64)
        pooled = per_group.sum(axis=0)
        keep = pooled > 0
        mids = ((edges[:-1] + edges[1:]) / 2.0)[keep]
        frame_weights = (per_group[:, keep] / per_group.sum(axis=1, keepdims=True)).T  # (bins, frames)
        weights = pooled[keep] / pooled.sum()

        def predicted(mapped: np.ndarray, span):
            shown = self.fit_lightness(mapped.ravel(), span).reshape(mapped.shape)
            frame_means = np.interp(shown, _L_GRID, self._delta_e_q_lut) @ frame_weights
            mean = shown @ weights
            return (frame_means.max(axis=-1), np.sqrt(np.maximum((shown ** 2) @ weights - mean ** 2, 0.0)),
                    np.abs(shown - mids) @ weights)

        spread = float(np.sqrt(max((mids ** 2) @ weights - (mids @ weights) ** 2, 0.0)))
        centres = np.concatenate([[centre], _FIT_CENTRES])  # the identity's centre first
        goal = RATIO_GOAL * spread
        found = []  # (std, worst frame, mean lightness change, c', s, span) of the maps within the budget
        fallback = (float("inf"),)
        for span in self._spans:
            for scale in _FIT_SCALES:
                top = max((f[0] for f in found), default=-1.0)
                if scale * spread < (goal if top >= goal else CONTRAST_TOLERANCE * top):
                    break  # g is 1-Lipschitz: no smaller scale can give as much contrast
                worst, std, change = predicted(centres[:, None] + scale * (mids[None, :] - centre), span)
                ok = worst <= budget
                found += [(float(d), float(w), float(m), float(c), float(scale), span)
                          for d, w, m, c in zip(std[ok], worst[ok], change[ok], centres[ok])]
                i = int(np.argmin(worst))
                if worst[i] < fallback[0]:
                    fallback = (float(worst[i]), float(centres[i]), float(scale), span)
        if not found:
            return (centre, fallback[1], fallback[2], *fallback[3])
        # of the maps keeping RATIO_GOAL of the contrast the smallest difference (all those within DELTA_E_COMFORT
        # alike), then the least mean change of L* (the render's own light); without one, the most contrast, less a
        # tolerance spent on the smallest difference
        top = max(f[0] for f in found)
        kept = [f for f in found if f[0] >= goal]
        if kept:
            pick = min(kept, key=lambda f: (round(max(f[1], DELTA_E_COMFORT), 6), round(f[2], 6), round(f[1], 6), -f[4],
                                            f[5][1] - f[5][0], f[3]))
        else:
            pick = min((f for f in found if f[0] >= CONTRAST_TOLERANCE * top),
                       key=lambda f: (round(f[1], 6), round(f[2], 6), -f[4], f[5][1] - f[5][0], f[3]))
        _, _, _, c_new, scale, span = pick
        return (centre, c_new, scale, *span)

    def fit_pixels(self, frames: list[np.ndarray]) -> tuple[float, float, float]:
        """The lightness fit for an object from what the frames show of it (``frames``: per frame its
        unbranded pixels, (N, 3) uint8), checked on those pixels: each frame's mean CIEDE2000 after the
        correction (8-bit, as written) is within ``FRAME_BUDGET``; where the prediction was optimistic,
        refitted with the budget lowered by the miss (deterministic)."""
        frames = [np.asarray(f, dtype=np.uint8).reshape(-1, 3) for f in frames if len(f)]
        if not frames:
            return (50.0, 50.0, 1.0)
        labs = [srgb_to_lab(f) for f in frames]
        budget = FRAME_BUDGET
        fit = self.fit([lab[:, 0] for lab in labs], budget)
        for _ in range(8):
            worst = max(self.frame_delta_e(f, fit) for f in frames)
            if worst <= FRAME_BUDGET:
                break
            budget -= worst - FRAME_BUDGET + 0.01
            fit = self.fit([lab[:, 0] for lab in labs], budget)
        return fit

    def frame_delta_e(self, pixels: np.ndarray, fit) -> float:
        """The mean CIEDE2000 of these (N, 3) uint8 pixels once corrected with ``fit`` and written as 8-bit."""
        out = np.clip(np.rint(self.correct(np.asarray(pixels, np.float64) / 255.0, fit) * 255.0), 0, 255).astype(np.uint8)
        lab = srgb_to_lab(out)
        return float(ciede2000(lab, self.relit(lab[:, 0])).mean())

    def contract_warning(self, figures: dict) -> str | None:
        """:func:`scenes.brand_targets.contract_warning` for this target's pooled figures."""
        return contract_warning({**figures, "target": self.target, "color": self.color})

    def relit(self, lightness: np.ndarray) -> np.ndarray:
        """The brand colour re-lit to these lightnesses: (L*, a*, b*) with the brand's a*, b* (the figures' reference)."""
        lightness = np.asarray(lightness, dtype=np.float64)
        return np.stack([lightness, np.full_like(lightness, self.lab[1]), np.full_like(lightness, self.lab[2])], axis=-1)

    def correct(self, rgb: np.ndarray, fit: tuple[float, float, float] | None = None) -> np.ndarray:
        """(N, 3) sRGB 0..1 -> (N, 3) sRGB 0..1 with the brand's hue and chroma at the fitted lightness
        (``fit``: (c, c', s), default the fit of these colours themselves)."""
        lightness = srgb_to_lab(rgb)[..., 0]
        fit = self.fit(lightness) if fit is None else fit
        c, c_new, scale = fit[:3]
        lightness = self.fit_lightness(c_new + scale * (lightness - c), tuple(fit[3:5]) if len(fit) >= 5 else None)
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


def fix_fits(images: list[np.ndarray], instance_ids: list[np.ndarray], brands: list[BrandColour]) -> None:
    """Give every brand target these frames show and that has no lightness fit yet the fit of what they
    show of it (:meth:`BrandColour.fit_pixels`: every frame's mean CIEDE2000 within ``FRAME_BUDGET``);
    ``images``: the unbranded frames, ``instance_ids`` their instance passes."""
    for brand in brands:
        for inst in brand.instance_ids:
            if inst not in brand.fits:
                shown = [image[ids == inst] for image, ids in zip(images, instance_ids)]
                shown = [pixels for pixels in shown if len(pixels)]
                if shown:
                    brand.fits[inst] = brand.fit_pixels(shown)


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
                fit = brand.fits.get(inst)
                if fit is None:  # fitted to this frame alone (per_frame), checked on its pixels
                    fit = brand.fit_pixels([out[mask]])
                corrected = brand.correct(out[mask].astype(np.float64) / 255.0, fit)
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
