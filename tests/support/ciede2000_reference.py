"""A second, independent CIEDE2000 and sRGB -> CIELAB for the tests' oracles: scalar Python (``math``),
written from the formulas of Sharma, Wu and Dalal (2005) and IEC 61966-2-1 / CIE 15, sharing no
code with ``stylize.perceptual_colour``. Slow (one colour at a time) and meant to be.
"""

from __future__ import annotations

import math

# sRGB (D65) -> XYZ, IEC 61966-2-1 (the 4-digit matrix of the standard itself), white D65 of CIE 15
_M = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))
_WHITE = (0.9505, 1.0000, 1.0890)


def srgb8_to_lab(r: int, g: int, b: int) -> tuple[float, float, float]:
    def lin(v: int) -> float:
        c = v / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    rl, gl, bl = lin(r), lin(g), lin(b)
    xyz = [(_M[i][0] * rl + _M[i][1] * gl + _M[i][2] * bl) / _WHITE[i] for i in range(3)]

    def f(t: float) -> float:
        return t ** (1.0 / 3.0) if t > 216.0 / 24389.0 else (24389.0 / 27.0 * t + 16.0) / 116.0

    fx, fy, fz = (f(t) for t in xyz)
    return 116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)


def delta_e_2000(lab1, lab2) -> float:
    l1, a1, b1 = lab1
    l2, a2, b2 = lab2
    c_bar = (math.sqrt(a1 * a1 + b1 * b1) + math.sqrt(a2 * a2 + b2 * b2)) / 2.0
    g = 0.5 * (1.0 - math.sqrt(c_bar ** 7 / (c_bar ** 7 + 25.0 ** 7)))
    ap1, ap2 = a1 * (1.0 + g), a2 * (1.0 + g)
    cp1, cp2 = math.sqrt(ap1 * ap1 + b1 * b1), math.sqrt(ap2 * ap2 + b2 * b2)

    def hue(b: float, ap: float) -> float:
        if b == 0 and ap == 0:
            return 0.0
        h = math.degrees(math.atan2(b, ap))
        return h + 360.0 if h < 0 else h

    hp1, hp2 = hue(b1, ap1), hue(b2, ap2)
    dlp, dcp = l2 - l1, cp2 - cp1
    if cp1 * cp2 == 0:
        dhp = 0.0
    elif abs(hp2 - hp1) <= 180.0:
        dhp = hp2 - hp1
    elif hp2 - hp1 > 180.0:
        dhp = hp2 - hp1 - 360.0
    else:
        dhp = hp2 - hp1 + 360.0
    d_hp = 2.0 * math.sqrt(cp1 * cp2) * math.sin(math.radians(dhp / 2.0))
    lp_bar, cp_bar = (l1 + l2) / 2.0, (cp1 + cp2) / 2.0
    if cp1 * cp2 == 0:
        hp_bar = hp1 + hp2
    elif abs(hp1 - hp2) <= 180.0:
        hp_bar = (hp1 + hp2) / 2.0
    elif hp1 + hp2 < 360.0:
        hp_bar = (hp1 + hp2 + 360.0) / 2.0
    else:
        hp_bar = (hp1 + hp2 - 360.0) / 2.0
    t = (1.0 - 0.17 * math.cos(math.radians(hp_bar - 30.0)) + 0.24 * math.cos(math.radians(2.0 * hp_bar))
         + 0.32 * math.cos(math.radians(3.0 * hp_bar + 6.0)) - 0.20 * math.cos(math.radians(4.0 * hp_bar - 63.0)))
    d_ro = 30.0 * math.exp(-(((hp_bar - 275.0) / 25.0) ** 2))
    r_c = 2.0 * math.sqrt(cp_bar ** 7 / (cp_bar ** 7 + 25.0 ** 7))
    s_l = 1.0 + 0.015 * (lp_bar - 50.0) ** 2 / math.sqrt(20.0 + (lp_bar - 50.0) ** 2)
    s_c = 1.0 + 0.045 * cp_bar
    s_h = 1.0 + 0.015 * cp_bar * t
    r_t = -math.sin(math.radians(2.0 * d_ro)) * r_c
    return math.sqrt((dlp / s_l) ** 2 + (dcp / s_c) ** 2 + (d_hp / s_h) ** 2 + r_t * (dcp / s_c) * (d_hp / s_h))


def target_figures(frames, masks, brand_hex: str, unbranded=None) -> dict:
    """The issue's figures for one target, from uint8 frames and boolean masks: the mean CIEDE2000 between
    each mask pixel and the brand colour re-lit to the pixel's own L* (over all pixels, and the worst
    frame's mean), and the L* standard deviation inside the mask over its ratio to ``unbranded``'s."""
    text = brand_hex.lstrip("#")
    _, ba, bb = srgb8_to_lab(int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    cache: dict[tuple[int, int, int], tuple] = {}

    def lab(px) -> tuple:
        k = (int(px[0]), int(px[1]), int(px[2]))
        if k not in cache:
            cache[k] = srgb8_to_lab(*k)
        return cache[k]

    def l_std(images) -> float:
        ls = [lab(px)[0] for image, mask in zip(images, masks) for px in image[mask]]
        mean = sum(ls) / len(ls)
        return math.sqrt(sum((v - mean) ** 2 for v in ls) / len(ls))

    total, n, worst = 0.0, 0, 0.0
    for image, mask in zip(frames, masks):
        pixels = image[mask]
        if len(pixels) == 0:
            continue
        s = 0.0
        for px in pixels:
            c = lab(px)
            s += delta_e_2000(c, (c[0], ba, bb))
        total, n, worst = total + s, n + len(pixels), max(worst, s / len(pixels))
    out = {"pixels": n, "delta_e_mean": total / max(n, 1), "delta_e_worst_frame_mean": worst, "l_std": l_std(frames)}
    if unbranded is not None:
        out["l_std_before"] = l_std(unbranded)
        out["l_std_ratio"] = out["l_std"] / out["l_std_before"] if out["l_std_before"] > 0.05 else None
    return out
