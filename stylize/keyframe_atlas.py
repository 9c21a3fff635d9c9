"""Keyframe texture projection: per-object texture atlases filled from stylised keyframes.

Mode ``keyframes`` (issue 5): stylise a few keyframes chosen along the camera path by coverage,
project each into per-object texture atlases through the exact geometry, and produce every frame
by gathering from the atlases with its own UV and instance passes; only the pixels no keyframe saw
are generated, and what is generated is written back so later frames reuse it.

What is here (numpy only; no bpy, cv2 or torch):

- :func:`rasterise_triangles`: a small barycentric rasteriser (screen space with a z-buffer and
  perspective-correct barycentrics, or UV space without depth).
- :func:`render_scene_passes`: a reference rasteriser of a :class:`scenes.scene_data.Scene`
  into :class:`passes.frame_passes.FramePasses` (depth, normal, flow both ways, instance, class,
  UV at one sample per pixel centre). Tests build sequences with it; it cross-checks Blender's passes.
- :class:`ObjectAtlas`: one object's atlas. Texel (row i, col j) has its centre at
  ``u = (j + 0.5) / S``, ``v = (i + 0.5) / S``. Per texel inside a UV island: the world position
  and face normal, found by rasterising the object's triangles in UV space (barycentric
  interpolation of world vertices).
- :class:`EnvironmentAtlas`: the background (instance 0) at infinity, indexed by world direction
  (equirectangular), so windows onto the sky stay consistent too.
- :class:`AtlasSet`: all atlases of a scene; ``visible_texels`` (a texel is seen by a frame when
  it projects onto a pixel of the same instance whose depth agrees), ``project_views`` (gather
  keyframe colours into texels, weighted by |cos view angle|^p and distance, normalised by the
  best view), ``gather`` (a frame from the atlases, bilinear), push-pull hole filling (Gortler
  et al. 1996) inside islands plus a margin, with known texels kept bit-identical.
- :func:`select_keyframes`: walk the frames; frame 1 is a keyframe; add one when the share of the
  frame's visible foreground not yet textured exceeds the threshold (capped).
- :func:`run_keyframe_sequence`: the whole mode over a ``generate`` callback (diffusion inpainting
  or the NPR stylizer), so the orchestration is tested without model weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from passes.frame_passes import FramePasses
from scenes.scene_data import BLENDER_TO_OPENCV, CameraTrack, Scene, SceneObject

# ---------------------------------------------------------------------------------------------
# Rasterising
# ---------------------------------------------------------------------------------------------


def rasterise_triangles(
    points: np.ndarray,
    width: int,
    height: int,
    depths: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise triangles given in pixel coordinates (pixel centres at +0.5).

    ``points``: (T, 3, 2) x right, y down (or u, v scaled to the atlas). ``depths``: (T, 3)
    positive planar depths for a z-buffer and perspective-correct barycentrics; None for UV space
    (no depth test; the first triangle to cover a pixel keeps it).
    Returns (triangle index (H, W) int64, -1 where empty; barycentrics (H, W, 3) float64).
    """
    tri_index = np.full((height, width), -1, dtype=np.int64)
    bary = np.zeros((height, width, 3), dtype=np.float64)
    zbuf = np.full((height, width), np.inf)
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) == 0:
        return tri_index, bary
    lo = np.floor(pts.min(axis=1) - 0.5).astype(np.int64)
    hi = np.ceil(pts.max(axis=1) - 0.5).astype(np.int64)
    for t in range(len(pts)):
        x0, y0 = max(lo[t, 0], 0), max(lo[t, 1], 0)
        x1, y1 = min(hi[t, 0], width - 1), min(hi[t, 1], height - 1)
        if x1 < x0 or y1 < y0:
            continue
        (ax, ay), (bx, by), (cx, cy) = pts[t]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(area) < 1e-14:
            continue
        xs = np.arange(x0, x1 + 1) + 0.5
        ys = np.arange(y0, y1 + 1) + 0.5
        px, py = np.meshgrid(xs, ys)
        w0 = ((bx - px) * (cy - py) - (by - py) * (cx - px)) / area
        w1 = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) / area
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        if not inside.any():
            continue
        region = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        if depths is not None:
            inv = w0 / depths[t, 0] + w1 / depths[t, 1] + w2 / depths[t, 2]
            z = 1.0 / inv
            take = inside & (z < zbuf[region])
            if not take.any():
                continue
            pw = np.stack([w0 / depths[t, 0], w1 / depths[t, 1], w2 / depths[t, 2]], axis=-1) * z[..., None]
            zbuf[region] = np.where(take, z, zbuf[region])
        else:
            take = inside & (tri_index[region] < 0)
            if not take.any():
                continue
            pw = np.stack([w0, w1, w2], axis=-1)
        tri_index[region] = np.where(take, t, tri_index[region])
        bary[region] = np.where(take[..., None], pw, bary[region])
    return tri_index, bary


def _interpolate(corner_values: np.ndarray, tri_index: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Per pixel, barycentric interpolation of (T, 3, C) corner values; zeros where empty."""
    safe = np.maximum(tri_index, 0)
    values = np.einsum("hwk,hwkc->hwc", bary, corner_values[safe])
    values[tri_index < 0] = 0.0
    return values


def _face_normals(obj: SceneObject) -> np.ndarray:
    v = obj.vertices[obj.triangles]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    return n / np.where(length > 0, length, 1.0)


def _clip_near(corners_cam: np.ndarray, extra: np.ndarray, near: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Clip one triangle (3, 3 OpenCV camera coords; extra (3, C) attributes) against z >= near."""
    poly = [(corners_cam[i], extra[i]) for i in range(3)]
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(3):
        (pa, ea), (pb, eb) = poly[i], poly[(i + 1) % 3]
        ina, inb = pa[2] >= near, pb[2] >= near
        if ina:
            out.append((pa, ea))
        if ina != inb:
            s = (near - pa[2]) / (pb[2] - pa[2])
            out.append((pa + s * (pb - pa), ea + s * (eb - ea)))
    triangles = []
    for i in range(1, len(out) - 1):
        tri = [out[0], out[i], out[i + 1]]
        triangles.append((np.stack([p for p, _ in tri]), np.stack([e for _, e in tri])))
    return triangles


def render_scene_passes(scene: Scene, frame: int, width: int | None = None, height: int | None = None) -> FramePasses:
    """Reference numpy rasteriser: a static scene's exact passes for one frame (one sample per pixel centre).

    Same conventions as Blender's passes in :mod:`passes.frame_passes`; flow follows from
    projecting each pixel's world point with the neighbouring frames' cameras (the geometry is
    static, only the camera moves).
    """
    width = int(width or scene.width)
    height = int(height or scene.height)
    cam = scene.camera
    w2c = cam.world_to_camera_opencv(frame)
    k = cam.intrinsics(frame, width, height)
    corners_px, corners_z, corner_attrs, tri_meta = [], [], [], []
    for obj in scene.objects:
        normals = _face_normals(obj)
        world = obj.vertices[obj.triangles]  # (T, 3, 3)
        cam_pts = world @ w2c[:3, :3].T + w2c[:3, 3]
        for t in range(len(obj.triangles)):
            z = cam_pts[t, :, 2]
            if (z < cam.clip_start).all():
                continue
            attrs = np.concatenate([world[t], obj.uvs[t].astype(np.float64)], axis=1)  # (3, 5)
            pieces = [(cam_pts[t], attrs)] if (z >= cam.clip_start).all() else _clip_near(cam_pts[t], attrs, cam.clip_start)
            for pts, ex in pieces:
                px = pts[:, :2] / pts[:, 2:3] * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]
                corners_px.append(px)
                corners_z.append(pts[:, 2])
                corner_attrs.append(ex)
                tri_meta.append((obj.instance_id, obj.semantic_class_id, normals[t]))
    if corners_px:
        tri_index, bary = rasterise_triangles(np.stack(corners_px), width, height, np.stack(corners_z))
        attrs = _interpolate(np.stack(corner_attrs), tri_index, bary)
    else:
        tri_index = np.full((height, width), -1, dtype=np.int64)
        attrs = np.zeros((height, width, 5))
    hit = tri_index >= 0
    world_pts = attrs[..., :3]
    uv = np.zeros((height, width, 3), dtype=np.float32)
    uv[..., :2] = np.where(hit[..., None], attrs[..., 3:5], 0.0)
    uv[..., 2] = hit
    instance = np.zeros((height, width), dtype=np.uint32)
    klass = np.zeros((height, width), dtype=np.uint32)
    normal = np.zeros((height, width, 3), dtype=np.float32)
    if tri_meta:
        inst_of = np.array([m[0] for m in tri_meta], dtype=np.uint32)
        class_of = np.array([m[1] for m in tri_meta], dtype=np.uint32)
        normal_of = np.stack([m[2] for m in tri_meta])
        safe = np.maximum(tri_index, 0)
        instance = np.where(hit, inst_of[safe], 0).astype(np.uint32)
        klass = np.where(hit, class_of[safe], 0).astype(np.uint32)
        # world normal -> Blender camera space (+X right, +Y up, +Z towards the viewer)
        rot = cam.rotations[cam.index(frame)]
        n_cam = normal_of[safe] @ rot
        n_cam = np.where(hit[..., None], n_cam, 0.0)
        normal = n_cam.astype(np.float32)
    depth = np.full((height, width), np.inf, dtype=np.float32)
    cam_pts = world_pts @ w2c[:3, :3].T + w2c[:3, 3]
    depth[hit] = cam_pts[hit][:, 2]
    centres = np.stack(np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5), axis=-1)
    flows = []
    for other in (frame + 1, frame - 1):
        flow = np.zeros((height, width, 2), dtype=np.float32)
        pts = world_pts[hit]
        xy, _ = cam.project(other, pts, width, height)
        flow[hit] = xy - centres[hit]
        flows.append(flow)
    return FramePasses(frame=frame, depth=depth, normal=normal, flow_forward=flows[0], flow_backward=flows[1],
                       instance_id=instance, class_id=klass, uv=uv)


# ---------------------------------------------------------------------------------------------
# Push-pull hole filling and small morphology
# ---------------------------------------------------------------------------------------------


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2r+1)^2 square, edges not wrapped."""
    out = mask.copy()
    for _ in range(max(int(radius), 0)):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        grown[1:, 1:] |= out[:-1, :-1]
        grown[1:, :-1] |= out[:-1, 1:]
        grown[:-1, 1:] |= out[1:, :-1]
        grown[:-1, :-1] |= out[1:, 1:]
        out = grown
    return out


def push_pull_fill(colour: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill unknown texels from known ones by push-pull (Gortler et al. 1996); known texels are returned unchanged.

    Pull: weighted 2x2 averages up a pyramid (weights clamped at 1). Push: from the coarsest
    level down, ``C = w * C + (1 - w) * upsampled(C_coarser)``. ``colour`` (H, W, C), ``known`` (H, W).
    """
    if not known.any():
        return np.zeros_like(colour)
    levels_c = [np.where(known[..., None], colour, 0).astype(np.float64)]
    levels_w = [known.astype(np.float64)]
    while max(levels_w[-1].shape) > 1:
        c, w = levels_c[-1], levels_w[-1]
        h, wd = w.shape
        ph, pw = h % 2, wd % 2
        c = np.pad(c, ((0, ph), (0, pw), (0, 0)))
        w = np.pad(w, ((0, ph), (0, pw)))
        wsum = w[0::2, 0::2] + w[1::2, 0::2] + w[0::2, 1::2] + w[1::2, 1::2]
        csum = (c[0::2, 0::2] * w[0::2, 0::2, None] + c[1::2, 0::2] * w[1::2, 0::2, None]
                + c[0::2, 1::2] * w[0::2, 1::2, None] + c[1::2, 1::2] * w[1::2, 1::2, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            cn = np.where(wsum[..., None] > 0, csum / np.maximum(wsum, 1e-300)[..., None], 0.0)
        levels_c.append(cn)
        levels_w.append(np.minimum(wsum, 1.0))
    filled = levels_c[-1]
    for level in range(len(levels_c) - 2, -1, -1):
        c, w = levels_c[level], levels_w[level]
        up = np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1)[: c.shape[0], : c.shape[1]]
        filled = w[..., None] * c + (1.0 - w[..., None]) * up
    out = filled.astype(colour.dtype)
    out[known] = colour[known]
    return out


# ---------------------------------------------------------------------------------------------
# Atlases
# ---------------------------------------------------------------------------------------------


def _bilinear_grid(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sample (clamped) at continuous coords with texel centres at +0.5."""
    h, w = image.shape[:2]
    xs, ys = x - 0.5, y - 0.5
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    x0i, x1i = np.clip(x0, 0, w - 1).astype(np.intp), np.clip(x0 + 1, 0, w - 1).astype(np.intp)
    y0i, y1i = np.clip(y0, 0, h - 1).astype(np.intp), np.clip(y0 + 1, 0, h - 1).astype(np.intp)
    top = image[y0i, x0i] * (1 - fx) + image[y0i, x1i] * fx
    bottom = image[y1i, x0i] * (1 - fx) + image[y1i, x1i] * fx
    return top * (1 - fy) + bottom * fy


def _depth_slope(passes: FramePasses) -> np.ndarray:
    """Per pixel, the largest depth change to a 4-neighbour of the same instance (0 where none)."""
    d = passes.depth.astype(np.float64)
    inst = passes.instance_id
    slope = np.zeros_like(d)
    for axis in (0, 1):
        for shift in (1, -1):
            od = np.roll(d, shift, axis=axis)
            oi = np.roll(inst, shift, axis=axis)
            ok = (oi == inst) & np.isfinite(od) & np.isfinite(d)
            diff = np.abs(np.where(ok, od, 0.0) - np.where(ok, d, 0.0))
            if axis == 0:
                diff[0 if shift == 1 else -1, :] = 0.0
            else:
                diff[:, 0 if shift == 1 else -1] = 0.0
            slope = np.maximum(slope, diff)
    return slope


def _sample_view(image: np.ndarray, passes: FramePasses, xy: np.ndarray, instance: int) -> np.ndarray:
    """Colour of a view at continuous pixel positions: bilinear where the 2x2 footprint is all the
    same instance, nearest otherwise (never blend two surfaces)."""
    h, w = passes.height, passes.width
    xs, ys = xy[:, 0] - 0.5, xy[:, 1] - 0.5
    x0 = np.clip(np.floor(xs), 0, w - 1).astype(np.intp)
    y0 = np.clip(np.floor(ys), 0, h - 1).astype(np.intp)
    x1 = np.clip(x0 + 1, 0, w - 1)
    y1 = np.clip(y0 + 1, 0, h - 1)
    inst = passes.instance_id
    same = (inst[y0, x0] == instance) & (inst[y0, x1] == instance) & (inst[y1, x0] == instance) & (inst[y1, x1] == instance)
    bil = _bilinear_grid(image, xy[:, 0], xy[:, 1])
    ni = np.clip(np.floor(xy[:, 1]), 0, h - 1).astype(np.intp)
    nj = np.clip(np.floor(xy[:, 0]), 0, w - 1).astype(np.intp)
    return np.where(same[:, None], bil, image[ni, nj])


@dataclass
class ObjectAtlas:
    """One object's texture atlas (S x S), with the world position and normal of each island texel."""

    instance_id: int
    size: int
    texel_index: np.ndarray  # (N,) flat indices of texels inside UV islands
    positions: np.ndarray  # (N, 3) world
    normals: np.ndarray  # (N, 3) world, unit
    island: np.ndarray  # (S, S) bool
    colour: np.ndarray = field(init=False)  # (S, S, 3) float32, 0..1; meaningful where known
    known: np.ndarray = field(init=False)  # (S, S) bool: painted by a keyframe or by generation
    filled: np.ndarray | None = field(init=False, default=None)  # push-pull cache

    def __post_init__(self):
        self.colour = np.zeros((self.size, self.size, 3), dtype=np.float32)
        self.known = np.zeros((self.size, self.size), dtype=bool)

    @classmethod
    def from_object(cls, obj: SceneObject, size: int) -> "ObjectAtlas":
        """Rasterise the object's triangles in UV space: per island texel, world position and face normal."""
        uv_px = obj.uvs.astype(np.float64) * size  # texel centre at +0.5, like pixels
        tri_index, bary = rasterise_triangles(uv_px, size, size)
        world = obj.vertices[obj.triangles]  # (T, 3, 3)
        positions = _interpolate(world, tri_index, bary)
        normals = _face_normals(obj)
        island = tri_index >= 0
        flat = np.flatnonzero(island)
        return cls(
            instance_id=obj.instance_id, size=size, texel_index=flat,
            positions=positions.reshape(-1, 3)[flat], normals=normals[tri_index.reshape(-1)[flat]], island=island,
        )

    def texel_pixels(self, camera: CameraTrack, frame: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Island texels projected into a frame: (pixel xy (N, 2), planar depth (N,))."""
        return camera.project(frame, self.positions, width, height)

    def view_cosines(self, camera: CameraTrack, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """|cos| of the angle between each texel's normal and its ray to the camera, and the distance."""
        centre = camera.positions[camera.index(frame)]
        ray = centre[None, :] - self.positions
        dist = np.linalg.norm(ray, axis=-1)
        cos = np.abs(np.einsum("nc,nc->n", ray, self.normals)) / np.maximum(dist, 1e-12)
        return cos, dist


@dataclass
class EnvironmentAtlas:
    """The background at infinity, equirectangular (S x 2S) by world direction (Z up)."""

    size: int
    instance_id: int = 0
    colour: np.ndarray = field(init=False)
    known: np.ndarray = field(init=False)
    island: np.ndarray = field(init=False)
    filled: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self):
        self.colour = np.zeros((self.size, 2 * self.size, 3), dtype=np.float32)
        self.known = np.zeros((self.size, 2 * self.size), dtype=bool)
        self.island = np.ones((self.size, 2 * self.size), dtype=bool)

    def directions(self) -> np.ndarray:
        rows, cols = np.meshgrid(np.arange(self.size) + 0.5, np.arange(2 * self.size) + 0.5, indexing="ij")
        lon = cols / (2 * self.size) * 2 * np.pi - np.pi
        lat = np.pi / 2 - rows / self.size * np.pi
        return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1).reshape(-1, 3)

    def coordinates(self, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World directions (..., 3) -> continuous texel coords (x, y) (centres at +0.5)."""
        d = directions / np.maximum(np.linalg.norm(directions, axis=-1, keepdims=True), 1e-12)
        lon = np.arctan2(d[..., 1], d[..., 0])
        lat = np.arcsin(np.clip(d[..., 2], -1, 1))
        return (lon + np.pi) / (2 * np.pi) * 2 * self.size, (np.pi / 2 - lat) / np.pi * self.size


def pixel_directions(camera: CameraTrack, frame: int, width: int, height: int) -> np.ndarray:
    """World direction of each pixel centre's ray (H, W, 3)."""
    k = camera.intrinsics(frame, width, height)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cv = np.stack([(cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1], np.ones_like(cols)], axis=-1)
    c2w = camera.rotations[camera.index(frame)] @ BLENDER_TO_OPENCV
    return d_cv @ c2w.T


def atlas_size_for(obj: SceneObject, rho: float, *, fill: float = 1.0, min_size: int = 64, max_size: int = 2048) -> int:
    """S >= sqrt(world area x rho^2 / UV area used): enough texels for ``rho`` screen pixels per metre."""
    v = obj.vertices[obj.triangles]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=-1).sum()
    uv = obj.uvs.astype(np.float64)
    uv_area = 0.5 * np.abs((uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1])
                           - (uv[:, 1, 1] - uv[:, 0, 1]) * (uv[:, 2, 0] - uv[:, 0, 0])).sum()
    uv_area = max(float(uv_area) * fill, 1e-6)
    side = math.sqrt(float(area) * rho * rho / uv_area) if np.isfinite(rho) else min_size
    return int(min(max(math.ceil(side), min_size), max_size))


@dataclass
class ViewWeights:
    """Blend of views into texels (StableGen's convention): weight = (|cos| / best |cos|)^power x
    (nearest distance / distance)^2, views with |cos| below ``min_cos`` ignored."""

    power: float = 3.0
    min_cos: float = 0.1
    distance_power: float = 2.0


class AtlasSet:
    """All texture atlases of a scene: one per object plus the environment."""

    def __init__(self, scene: Scene, sizes: dict[int, int], env_size: int, *, width: int, height: int,
                 margin: int = 2, seen_margin: int = 1, depth_tolerance: float = 0.01):
        self.scene = scene
        self.camera = scene.camera
        self.width, self.height = width, height
        self.margin = margin
        self.seen_margin = seen_margin
        self.depth_tolerance = depth_tolerance
        self.objects: dict[int, ObjectAtlas] = {
            o.instance_id: ObjectAtlas.from_object(o, sizes[o.instance_id]) for o in scene.objects if o.instance_id in sizes
        }
        self.environment = EnvironmentAtlas(env_size)

    @classmethod
    def for_shot(cls, scene: Scene, passes: list[FramePasses], *, fill: float = 1.0, min_size: int = 64,
                 max_size: int = 2048, **kwargs) -> "AtlasSet":
        """Size each object's atlas from the finest screen density it gets over the shot:
        rho = the largest (frame's focal length in pixels / nearest depth at which the object appears in it)."""
        width, height = passes[0].width, passes[0].height
        rho_of: dict[int, float] = {}
        focal_max = 0.0
        for p in passes:
            focal_px = float(scene.camera.intrinsics(p.frame, width, height)[0, 0])
            focal_max = max(focal_max, focal_px)
            ids = p.instance_id[p.instance_id > 0]
            depths = p.depth[p.instance_id > 0]
            for inst in np.unique(ids):
                d = float(depths[ids == inst].min())
                rho_of[int(inst)] = max(rho_of.get(int(inst), 0.0), focal_px / max(d, 1e-3))
        sizes = {}
        for o in scene.objects:
            if o.instance_id in rho_of:
                sizes[o.instance_id] = atlas_size_for(o, rho_of[o.instance_id], fill=fill, min_size=min_size, max_size=max_size)
        env = int(min(max(math.ceil(math.pi * focal_max), min_size), max_size))
        return cls(scene, sizes, env, width=width, height=height, **kwargs)

    def atlases(self):
        yield from self.objects.values()
        yield self.environment

    # -- visibility ------------------------------------------------------------------------------

    def visible_texels(self, passes: FramePasses) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per atlas (instance id; 0 = environment): (flat texel indices seen by this frame,
        their pixel positions (M, 2), their view weights' raw |cos| and distance stacked (M, 2)).

        A texel is seen when it projects on screen onto a pixel of the same instance whose depth
        agrees with the texel's planar depth (within ``depth_tolerance`` x depth plus the local
        depth slope). The UV and instance passes only hold visible surfaces, so this is exact up
        to the pixel grid.
        """
        h, w = passes.height, passes.width
        slope = _depth_slope(passes)
        out = {}
        for inst, atlas in self.objects.items():
            xy, z = atlas.texel_pixels(self.camera, passes.frame, w, h)
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(xy).all(axis=1) & (z > self.camera.clip_start)
                ok &= (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            idx = np.flatnonzero(ok)
            cols = np.floor(xy[idx, 0]).astype(np.intp)
            rows = np.floor(xy[idx, 1]).astype(np.intp)
            keep = passes.instance_id[rows, cols] == inst
            dpass = passes.depth[rows, cols].astype(np.float64)
            with np.errstate(invalid="ignore"):
                keep &= np.abs(dpass - z[idx]) <= self.depth_tolerance * z[idx] + slope[rows, cols]
            idx = idx[keep]
            cos, dist = atlas.view_cosines(self.camera, passes.frame)
            out[inst] = (atlas.texel_index[idx], xy[idx], np.stack([cos[idx], dist[idx]], axis=-1))
        env = self.environment
        dirs = env.directions()
        c2w = self.camera.rotations[self.camera.index(passes.frame)] @ BLENDER_TO_OPENCV
        d_cv = dirs @ c2w  # world -> OpenCV camera (rotation only)
        k = self.camera.intrinsics(passes.frame, w, h)
        with np.errstate(invalid="ignore", divide="ignore"):
            xy = d_cv[:, :2] / d_cv[:, 2:3] * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]
            ok = (d_cv[:, 2] > 1e-6) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        idx = np.flatnonzero(ok)
        cols = np.floor(xy[idx, 0]).astype(np.intp)
        rows = np.floor(xy[idx, 1]).astype(np.intp)
        idx = idx[passes.instance_id[rows, cols] == 0]
        out[0] = (idx, xy[idx], np.stack([d_cv[idx, 2] / np.linalg.norm(d_cv[idx], axis=-1), np.ones(len(idx))], axis=-1))
        return out

    def _atlas(self, inst: int):
        return self.environment if inst == 0 else self.objects[inst]

    def seen_mask(self, inst: int) -> np.ndarray:
        """Texels counted as textured: known ones, plus texels within ``seen_margin`` of a known one
        (gaps between texel centres and pixel samples, and the texels just outside an island's
        edge that a pixel on the edge rounds to; push-pull fills them from their neighbours)."""
        atlas = self._atlas(inst)
        return dilate(atlas.known, self.seen_margin)

    # -- writing ---------------------------------------------------------------------------------

    def project_views(self, views: list[tuple[np.ndarray, FramePasses]], *, only_unknown: bool = True,
                      weights: ViewWeights = ViewWeights(), visibility: list[dict] | None = None) -> int:
        """Gather stylised views into the atlases: each texel takes the weighted mean of the views
        that see it (weights by |cos view angle|^p and distance, normalised by the best view
        before the power). With ``only_unknown`` known texels are left bit-identical.
        ``views``: (image (H, W, 3) float 0..1 or uint8, its passes). Returns texels written.
        """
        visibility = visibility or [self.visible_texels(p) for _, p in views]
        images = [img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64) for img, _ in views]
        written = 0
        for atlas in list(self.atlases()):
            inst = atlas.instance_id
            size = atlas.known.size
            per_view = []
            best_cos = np.zeros(size)
            best_dist = np.full(size, np.inf)
            for (image, (_, passes)), vis in zip(zip(images, views), visibility):
                idx, xy, cd = vis[inst]
                good = cd[:, 0] >= weights.min_cos
                idx, xy, cd = idx[good], xy[good], cd[good]
                if only_unknown:
                    fresh = ~atlas.known.reshape(-1)[idx]
                    idx, xy, cd = idx[fresh], xy[fresh], cd[fresh]
                if len(idx) == 0:
                    continue
                colour = _sample_view(image, passes, xy, inst)
                per_view.append((idx, colour, cd))
                np.maximum.at(best_cos, idx, cd[:, 0])
                np.minimum.at(best_dist, idx, cd[:, 1])
            if not per_view:
                continue
            acc = np.zeros((size, 3))
            wsum = np.zeros(size)
            for idx, colour, cd in per_view:
                wv = (cd[:, 0] / best_cos[idx]) ** weights.power * (best_dist[idx] / cd[:, 1]) ** weights.distance_power
                np.add.at(acc, idx, colour * wv[:, None])
                np.add.at(wsum, idx, wv)
            target = np.flatnonzero(wsum > 0)
            flat_colour = atlas.colour.reshape(-1, 3)
            flat_colour[target] = (acc[target] / wsum[target, None]).astype(np.float32)
            atlas.known.reshape(-1)[target] = True
            atlas.filled = None
            written += len(target)
        return written

    def write_pixels(self, image: np.ndarray, passes: FramePasses, mask: np.ndarray) -> int:
        """Write generated pixels (``mask``) back so later frames reuse them: the unknown texels they
        see take this view's colour (the keyframe gather, at any view angle), then each masked
        pixel's own texel (nearest to its UV), if still unknown, takes the pixel's colour (so every
        generated pixel is textured even where texel centres and pixel centres disagree). Known
        texels are never changed. Returns texels written."""
        vis = self.visible_texels(passes)
        restricted = {}
        for inst, (idx, xy, cd) in vis.items():
            rows = np.floor(xy[:, 1]).astype(np.intp)
            cols = np.floor(xy[:, 0]).astype(np.intp)
            inside = mask[rows, cols]
            restricted[inst] = (idx[inside], xy[inside], cd[inside])
        written = self.project_views([(image, passes)], only_unknown=True, visibility=[restricted],
                                     weights=ViewWeights(min_cos=0.0))
        colours = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
        inst = passes.instance_id
        covered = mask & (((passes.uv[..., 2] >= 1.0) & (inst > 0)) | (inst == 0))
        for i in np.unique(inst[covered]):
            i = int(i)
            if i != 0 and i not in self.objects:
                continue
            sel = covered & (inst == i)
            if i == 0:
                env = self.environment
                x, y = env.coordinates(pixel_directions(self.camera, passes.frame, passes.width, passes.height)[sel])
                rows = np.clip(np.floor(y), 0, env.size - 1).astype(np.intp)
                cols = np.clip(np.floor(x), 0, 2 * env.size - 1).astype(np.intp)
                atlas = env
            else:
                atlas = self.objects[i]
                uv = passes.uv[sel][:, :2].astype(np.float64)
                rows = np.clip(np.floor(uv[:, 1] * atlas.size), 0, atlas.size - 1).astype(np.intp)
                cols = np.clip(np.floor(uv[:, 0] * atlas.size), 0, atlas.size - 1).astype(np.intp)
            fresh = ~atlas.known[rows, cols]
            if fresh.any():
                atlas.colour[rows[fresh], cols[fresh]] = colours[sel][fresh].astype(np.float32)
                atlas.known[rows[fresh], cols[fresh]] = True
                atlas.filled = None
                written += int(fresh.sum())
        return written

    # -- reading ---------------------------------------------------------------------------------

    def filled(self, inst: int) -> np.ndarray:
        """The atlas with holes filled by push-pull inside islands plus ``margin`` texels; known texels unchanged."""
        atlas = self._atlas(inst)
        if atlas.filled is None:
            region = dilate(atlas.island, self.margin) if inst != 0 else atlas.island
            out = push_pull_fill(atlas.colour, atlas.known)
            out[~region] = 0.0
            atlas.filled = out
        return atlas.filled

    def _lookups(self, passes: FramePasses):
        """For each textured thing a frame shows: (atlas key, pixel selection, atlas x, y in texels,
        the seen flag of each selected pixel's texel). Key 0 is the background's direction atlas."""
        h, w = passes.height, passes.width
        inst = passes.instance_id
        covered = (passes.uv[..., 2] >= 1.0) & (inst > 0)
        for i in np.unique(inst[covered]):
            key = int(i)
            if key not in self.objects:
                continue
            size = self.objects[key].size
            sel = covered & (inst == i)
            uv = passes.uv[sel][:, :2].astype(np.float64)
            x, y = uv[:, 0] * size, uv[:, 1] * size
            rows = np.clip(np.floor(y), 0, size - 1).astype(np.intp)
            cols = np.clip(np.floor(x), 0, size - 1).astype(np.intp)
            yield key, sel, x, y, self.seen_mask(key)[rows, cols]
        background = inst == 0
        if background.any():
            env = self.environment
            x, y = env.coordinates(pixel_directions(self.camera, passes.frame, w, h)[background])
            rows = np.clip(np.floor(y), 0, env.size - 1).astype(np.intp)
            cols = np.clip(np.floor(x), 0, 2 * env.size - 1).astype(np.intp)
            yield 0, background, x, y, self.seen_mask(0)[rows, cols]

    def gather(self, passes: FramePasses) -> tuple[np.ndarray, np.ndarray]:
        """Produce a frame from the atlases with its own UV and instance passes (bilinear in the atlas).

        Returns (image (H, W, 3) float32 0..1, seen (H, W) bool: the pixel's texel is textured).
        """
        image = np.zeros((passes.height, passes.width, 3), dtype=np.float32)
        seen = np.zeros((passes.height, passes.width), dtype=bool)
        for key, sel, x, y, texel_seen in self._lookups(passes):
            image[sel] = _bilinear_grid(self.filled(key), x, y)
            seen[sel] = texel_seen
        return image, seen

    def unseen_share(self, passes: FramePasses) -> float:
        """Share of the frame's pixels whose surface (or background direction) is not yet textured."""
        return float((~self.gather_seen_only(passes)[1]).mean())

    def gather_seen_only(self, passes: FramePasses) -> tuple[None, np.ndarray]:
        """Like :meth:`gather` but only the seen mask (no colour lookup, no push-pull)."""
        seen = np.zeros((passes.height, passes.width), dtype=bool)
        for _, sel, _, _, texel_seen in self._lookups(passes):
            seen[sel] = texel_seen
        return None, seen

    def mark_seen(self, passes: FramePasses) -> None:
        """Mark the texels a frame sees as known without colour (keyframe selection's bookkeeping)."""
        for inst, (idx, _, cd) in self.visible_texels(passes).items():
            self._atlas(inst).known.reshape(-1)[idx[cd[:, 0] >= ViewWeights().min_cos]] = True

    def reset(self) -> None:
        for atlas in self.atlases():
            atlas.colour[:] = 0
            atlas.known[:] = False
            atlas.filled = None


# ---------------------------------------------------------------------------------------------
# Keyframe selection and the mode
# ---------------------------------------------------------------------------------------------


def significant_unseen(unseen: np.ndarray) -> np.ndarray:
    """Unseen pixels with at least 3 unseen pixels in their 3x3 neighbourhood (themselves included):
    isolated ones (grazing texels, pixel-grid rounding) are left to the atlases' push-pull fill."""
    padded = np.pad(unseen.astype(np.int32), 1)
    h, w = unseen.shape
    count = sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    return unseen & (count >= 3)


def select_keyframes(atlases: AtlasSet, passes: list[FramePasses], *, threshold: float, max_keyframes: int) -> list[int]:
    """Keyframes by coverage: the first frame, then each frame whose share of pixels showing surface
    not yet textured by an earlier keyframe exceeds ``threshold``; at most ``max_keyframes``.

    Leaves the atlases empty (it only uses their geometry). Returns frame numbers in order.
    """
    atlases.reset()
    keyframes: list[int] = []
    for p in passes:
        if len(keyframes) >= max_keyframes:
            break
        if not keyframes or atlases.unseen_share(p) > threshold:
            keyframes.append(p.frame)
            atlases.mark_seen(p)
    atlases.reset()
    return keyframes


class GenerateFn(Protocol):
    def __call__(self, frame: int, init: np.ndarray | None, generate_mask: np.ndarray | None) -> np.ndarray:
        """Stylise ``frame``: ``init`` (H, W, 3) float 0..1 is the content to keep outside
        ``generate_mask`` (H, W) bool (None: generate the whole frame). Returns (H, W, 3) uint8 or float 0..1."""


@dataclass
class KeyframeResult:
    frames: dict[int, np.ndarray]  # frame -> (H, W, 3) uint8
    keyframes: list[int]
    generated_frames: list[int]  # every frame that ran the generator (keyframes first)
    generated_pixels: dict[int, int]


def to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image[..., :3]
    return np.clip(np.rint(image[..., :3] * 255.0), 0, 255).astype(np.uint8)


def run_keyframe_sequence(
    atlases: AtlasSet,
    passes: list[FramePasses],
    generate: GenerateFn | Callable,
    *,
    threshold: float,
    max_keyframes: int,
    min_generate_pixels: int = 16,
    lookahead: int = 24,
) -> KeyframeResult:
    """Mode ``keyframes`` over a generator callback.

    1. Select keyframes by coverage. 2. Stylise them in order: the first alone; each later one
    gathers what earlier keyframes textured and generates only the rest (so keyframes agree with
    each other); each is projected into the atlases (texels not yet known). 3. Every other frame,
    in order: gather from the atlases; if more than ``min_generate_pixels`` pixels show surface no
    keyframe saw (not counting isolated ones: fewer than 3 unseen in their 3x3 neighbourhood),
    generate them by inpainting -- at the frame up to ``lookahead`` ahead that shows
    the most untextured surface first, since the same new surface keeps entering an orbit -- and
    write what was generated back into the atlases. Fewer untextured pixels than that are filled
    from the atlases' push-pull fill. Every pixel outside the generated mask is the atlas gather,
    bit for bit.
    """
    # 1. Check inputs, then choose keyframes
    if not passes:
        raise ValueError("run_keyframe_sequence got no frames")
    if not 0 < threshold < 1:
        raise ValueError(f"keyframe coverage threshold {threshold} must be in (0, 1)")
    if max_keyframes < 1:
        raise ValueError(f"max_keyframes {max_keyframes} must be at least 1")
    keyframes = select_keyframes(atlases, passes, threshold=threshold, max_keyframes=max_keyframes)
    by_frame = {p.frame: p for p in passes}
    order = [p.frame for p in passes]
    frames: dict[int, np.ndarray] = {}
    generated: list[int] = []
    generated_pixels: dict[int, int] = {}

    def produce(frame: int, force_mask: bool) -> None:
        p = by_frame[frame]
        gathered, seen = atlases.gather(p)
        mask = ~seen
        if not any(a.known.any() for a in atlases.atlases()):
            out = to_uint8(np.asarray(generate(frame, None, None)))
            mask = np.ones_like(mask)
        elif (mask.any() if force_mask else needs_generation(mask)):
            result = np.asarray(generate(frame, gathered, mask))
            out = np.where(mask[..., None], to_uint8(result), to_uint8(gathered))
        else:
            out = to_uint8(gathered)
            mask = np.zeros_like(mask)
        if mask.any():
            generated.append(frame)
            generated_pixels[frame] = int(mask.sum())
            atlases.write_pixels(out.astype(np.float64) / 255.0, p, mask)
        frames[frame] = out

    def needs_generation(unseen: np.ndarray) -> bool:
        return int(significant_unseen(unseen).sum()) > min_generate_pixels

    # 2. Keyframes first, each generating only what earlier ones did not texture
    for k in keyframes:
        produce(k, force_mask=True)
    # 3. The rest, in order
    for i, frame in enumerate(order):
        if frame in frames:
            continue
        _, seen = atlases.gather_seen_only(by_frame[frame])
        if needs_generation(~seen) and lookahead > 0:
            window = [f for f in order[i + 1 : i + 1 + lookahead] if f not in frames and f not in keyframes]
            best, best_count = None, int(significant_unseen(~seen).sum())
            for f in window:
                count = int(significant_unseen(~atlases.gather_seen_only(by_frame[f])[1]).sum())
                if count > best_count:
                    best, best_count = f, count
            if best is not None:
                produce(best, force_mask=False)
        produce(frame, force_mask=False)
    return KeyframeResult(frames=frames, keyframes=keyframes, generated_frames=generated, generated_pixels=generated_pixels)
