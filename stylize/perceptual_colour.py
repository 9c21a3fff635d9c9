"""sRGB <-> CIELAB (D65) and the CIEDE2000 colour difference, vectorised over numpy arrays.

- :func:`srgb_to_lab` / :func:`lab_to_srgb`: IEC 61966-2-1 sRGB (the piecewise transfer curve),
  its D65 primaries (the matrix below, as Lindbloom publishes it) and CIE 1976 L*a*b* relative to
  D65 (X, Y, Z of the white = 0.95047, 1, 1.08883). Colours are floats 0..1 (uint8 arrays are
  divided by 255 first); ``lab_to_srgb`` does not clip, so a caller sees what leaves the gamut.
- :func:`ciede2000`: the CIEDE2000 difference (CIE 142-2001) with kL = kC = kH = 1, following the
  implementation notes of Sharma, Wu and Dalal (2005): the mean hue and the hue difference of a
  pair where one colour is achromatic, and the mean hue across 0/360 degrees, as their equations
  (7)-(12) give them; ``tests/test_brand_colours.py`` checks the 34 pairs of their Table 1.

numpy only.
"""

from __future__ import annotations

import numpy as np

D65_WHITE = np.array([0.95047, 1.0, 1.08883])
SRGB_TO_XYZ = np.array([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)
_DELTA = 6.0 / 29.0


def _as_unit(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    return rgb.astype(np.float64) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)


def srgb_to_linear(rgb) -> np.ndarray:
    c = _as_unit(rgb)
    return np.where(c <= 0.04045, c / 12.92, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear) -> np.ndarray:
    c = np.asarray(linear, dtype=np.float64)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.maximum(c, 0.0031308) ** (1.0 / 2.4) - 0.055)


def srgb_to_lab(rgb) -> np.ndarray:
    """(..., 3) sRGB (float 0..1 or uint8) -> (..., 3) CIELAB (L* 0..100), D65."""
    xyz = srgb_to_linear(rgb) @ SRGB_TO_XYZ.T / D65_WHITE
    f = np.where(xyz > _DELTA ** 3, np.cbrt(np.maximum(xyz, 0.0)), xyz / (3 * _DELTA ** 2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_linear(lab) -> np.ndarray:
    """(..., 3) CIELAB -> (..., 3) linear sRGB (not clipped)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4.0 / 29.0)) * D65_WHITE
    return xyz @ XYZ_TO_SRGB.T


def lab_to_srgb(lab) -> np.ndarray:
    """(..., 3) CIELAB -> (..., 3) sRGB 0..1 (not clipped: out-of-gamut colours leave 0..1)."""
    return linear_to_srgb(lab_to_linear(lab))


def ciede2000(lab1, lab2) -> np.ndarray:
    """CIEDE2000 difference between CIELAB colours (..., 3) and (..., 3) (broadcast), kL = kC = kH = 1."""
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    # 1. a' from the mean chroma (G), C' and h'
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0
    c7 = c_mean ** 7
    g = 0.5 * (1.0 - np.sqrt(c7 / (c7 + 25.0 ** 7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.where((a1p == 0) & (b1 == 0), 0.0, np.degrees(np.arctan2(b1, a1p)) % 360.0)
    h2p = np.where((a2p == 0) & (b2 == 0), 0.0, np.degrees(np.arctan2(b2, a2p)) % 360.0)
    # 2. differences; the hue difference is 0 when either colour is achromatic
    d_l = l2 - l1
    d_c = c2p - c1p
    chromatic = (c1p * c2p) != 0
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(chromatic, dh, 0.0)
    d_hp = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)
    # 3. means; the mean hue is the sum when either is achromatic, and wraps across 0/360
    l_mean = (l1 + l2) / 2.0
    c_mean_p = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    far = np.abs(h1p - h2p) > 180.0
    h_mean = np.where(far, np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0), h_sum / 2.0)
    h_mean = np.where(chromatic, h_mean, h_sum)
    t = (1.0 - 0.17 * np.cos(np.radians(h_mean - 30.0)) + 0.24 * np.cos(np.radians(2.0 * h_mean))
         + 0.32 * np.cos(np.radians(3.0 * h_mean + 6.0)) - 0.20 * np.cos(np.radians(4.0 * h_mean - 63.0)))
    d_theta = 30.0 * np.exp(-(((h_mean - 275.0) / 25.0) ** 2))
    c7p = c_mean_p ** 7
    r_c = 2.0 * np.sqrt(c7p / (c7p + 25.0 ** 7))
    s_l = 1.0 + 0.015 * (l_mean - 50.0) ** 2 / np.sqrt(20.0 + (l_mean - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_mean_p
    s_h = 1.0 + 0.015 * c_mean_p * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c
    # 4. the difference
    ql, qc, qh = d_l / s_l, d_c / s_c, d_hp / s_h
    return np.sqrt(np.maximum(ql * ql + qc * qc + qh * qh + r_t * qc * qh, 0.0))
