"""Geometric line art from the frame's exact passes (never an edge detector on a shaded image).

Lines are where the surface really changes, read off the exact geometric passes of the frame
(instance id, camera-space normal, planar depth; the class follows the instance) between each pair of
4-neighbouring pixels. The cost follows the pixels: a fixed number of array operations per pixel,
whatever the scene's object, triangle or edge count, and the Scene is not needed.

A pair of 4-neighbours ``a``, ``b`` is an edge when

- **object boundary**: their instance ids differ (background, id 0, included);
- **silhouette or self-occlusion** (same object): the depth jumps, i.e. both
  ``|1/z_a - 1/z_b| > DEPTH_JUMP * min(1/z_a, 1/z_b)`` (the farther depth is more than 2% beyond the
  nearer one) and the jump is not the surface's own slope: planar depth ``z`` of a plane has
  ``1/z`` affine in pixel coordinates, so the pair is continuous when the line through the next pixel
  on either side (same object) predicts the other pixel's ``1/z`` to the same 2%. A floor or wall
  seen at a grazing angle, where neighbouring depths differ by more than 2%, thus draws nothing;
- **crease** (same object, no depth jump): the normals turn by more than ``crease_angle_deg``
  (``passes.line_crease_angle``), ``n_a . n_b < cos(angle)``.

Each edge marks one pixel of its pair, so lines are one pixel wide, on a stated side: for object
boundaries and depth jumps the occluding (nearer) pixel, ties broken by the higher instance id; for
creases the pixel of the face seen more obliquely (smaller camera-space normal z: constant along a
straight crease, so the line does not hop between its sides, and a face one pixel thin is one line,
not two), ties broken by the nearer pixel; a last tie keeps the top or left pixel. Background
(id 0) is never marked. ``width`` > 1 (``passes.line_width``) grows the mask over a
``width`` x ``width`` square (:func:`greybox.pixel_masks.widen`).

A step under 2% of the depth whose own face covers no pixel centre (a drawer gap seen from 2 m, a
1 cm ledge at 4 m) is continuous by this definition and draws no line, or a dotted one where the
step's face shows on some rows.

Why no projected mesh edges (as the line pass once did, at a cost that grew with the scene's edges:
1.5 s of CPU a frame at 1M triangles against 4 ms here, ``benchmarks/line_pass.py``): a crease seen
exactly edge-on has one face covering no pixel, so its other face meets a farther surface or another
object there and the depth or id rule draws it; a feature thinner than a pixel is missing from the
depth, normal and seg control images too, and a line for it would lie over pixels whose passes are
continuous, which the line contract forbids (where it covers some pixel centres it is drawn there).
Over every frame of the bundled templates, 3.6% of the projected-edge pixels were false lines
(seams where walls are built from several boxes, diagonals across L-shaped floors and ceilings,
flush joints of furniture parts; none here), and the 2% it drew that this pass leaves out are steps
under 2% of the depth (drawer gaps, books' fronts, a cushion's ledge): four fifths of them have no
discontinuity of the passes within a pixel at all.
"""

from __future__ import annotations

import numpy as np

from greybox.pixel_masks import widen
from passes.frame_passes import FramePasses

DEPTH_JUMP = 0.02  # relative: a silhouette or self-occlusion is a depth jump above 2% of the depth


def _mark_edges(step: int, mask, disparity, normal, instance_id, cos_limit) -> None:
    """Set in ``mask`` (flat) the one marked pixel of each edge between pixels k and k + ``step`` of
    the flattened HxW image (``step`` 1: horizontal neighbours, ``step`` W: vertical ones).

    Dense (a few contiguous array operations a pixel): the candidate pairs, whose ids differ, whose
    depth jumps by more than DEPTH_JUMP or whose normals turn by more than the crease angle. Sparse,
    over the candidates only: the slope test for depth jumps and the side rules.
    """
    h, w = mask.shape
    size = h * w
    s = disparity.reshape(-1)
    ids = instance_id.reshape(-1)
    n = [normal[..., c].reshape(-1) for c in range(3)]  # views when the normal is stored planar
    a, b = slice(0, size - step), slice(step, size)
    s_a, s_b = s[a], s[b]
    ids_a = ids[a]
    candidate = np.abs(s_a - s_b) > np.float32(DEPTH_JUMP) * np.minimum(s_a, s_b)
    candidate |= ids_a != ids[b]
    dot = n[0][a] * n[0][b]
    dot += n[1][a] * n[1][b]
    dot += n[2][a] * n[2][b]
    candidate |= (dot < cos_limit) & (ids_a != 0)
    if step == 1:
        candidate[w - 1 :: w] = False  # the last pixel of a row and the first of the next are no pair
    k = np.flatnonzero(candidate)
    if len(k) == 0:
        return

    # the candidates: pixel a = k, pixel b = k + step
    kb = k + step
    sa, sb = s[k], s[kb]
    ia, ib = ids[k], ids[kb]
    same = ia == ib
    limit = np.float32(DEPTH_JUMP) * np.minimum(sa, sb)
    jump = same & (ia != 0) & (np.abs(sa - sb) > limit)
    # the slope test: 1/z of a plane is affine in pixel coordinates, so the pair is continuous when
    # the line through (a - step, a) predicts b, or the line through (b + step, b) predicts a, to
    # DEPTH_JUMP (the extra pixel inside the image and showing the same object)
    j = np.flatnonzero(jump)
    if len(j):
        ka, kbj = k[j], kb[j]
        if step == 1:
            col = ka % w
            has_prev, has_next = col >= 1, col + 2 <= w - 1
        else:
            has_prev, has_next = ka >= step, kbj + step < size
        prev = np.where(has_prev, ka - step, ka)
        nxt = np.where(has_next, kbj + step, kbj)
        from_a = has_prev & (ids[prev] == ia[j]) & (np.abs(sb[j] - (2.0 * sa[j] - s[prev])) <= limit[j])
        from_b = has_next & (ids[nxt] == ib[j]) & (np.abs(sa[j] - (2.0 * sb[j] - s[nxt])) <= limit[j])
        jump[j[from_a | from_b]] = False
    turn = (n[0][k] * n[0][kb] + n[1][k] * n[1][kb] + n[2][k] * n[2][kb]) < cos_limit
    crease = same & (ia != 0) & ~jump & turn
    occlusion = ~same | jump
    # the occluding pixel: nearer (larger 1/z; background has 0), then the higher id, then a.
    # creases: the face seen more obliquely (smaller normal z), then the nearer pixel, then a
    a_occludes = (sa > sb) | ((sa == sb) & (ia >= ib))
    nz_a, nz_b = n[2][k], n[2][kb]
    a_oblique = (nz_a < nz_b) | ((nz_a == nz_b) & (sa >= sb))
    mark_a = (occlusion & a_occludes) | (crease & a_oblique)
    mark_b = (occlusion | crease) & ~mark_a
    flat = mask.reshape(-1)
    flat[k[mark_a]] = True
    flat[kb[mark_b]] = True


def line_mask(depth: np.ndarray, normal: np.ndarray, instance_id: np.ndarray, crease_angle_deg: float = 30.0) -> np.ndarray:
    """Bool HxW, one pixel wide: object boundaries, depth jumps and creases (see the module docstring).

    ``depth`` planar metres (inf on background), ``normal`` (H, W, 3) unit camera-space normals,
    ``instance_id`` (H, W) with 0 on background, as in :class:`passes.frame_passes.FramePasses`.
    """
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    normal = np.asarray(normal, dtype=np.float32)
    instance_id = np.ascontiguousarray(instance_id)
    h, w = depth.shape
    with np.errstate(divide="ignore"):
        disparity = np.float32(1.0) / depth  # inf -> 0: background is the farthest
    cos_limit = np.float32(np.cos(np.radians(float(crease_angle_deg))))
    mask = np.zeros((h, w), dtype=bool)
    if w >= 2:
        _mark_edges(1, mask, disparity, normal, instance_id, cos_limit)
    if h >= 2:
        _mark_edges(w, mask, disparity, normal, instance_id, cos_limit)
    return mask


def render_lines(passes: FramePasses, crease_angle_deg: float = 30.0, width: int = 1) -> np.ndarray:
    """uint8 HxW line mask (255 = line) of one frame's passes, ``width`` px (``passes.line_width``)."""
    mask = line_mask(passes.depth, passes.normal, passes.instance_id, crease_angle_deg)
    return np.where(widen(mask, width), np.uint8(255), np.uint8(0))
