"""Per-object texture atlases filled from stylised views through the exact geometry (mode ``keyframes``).

- :class:`ObjectAtlas`: one object's atlas. Texel (row i, col j) has its centre at
  ``u = (j + 0.5) / S``, ``v = (i + 0.5) / S``. Per texel inside a UV island: the world position
  and face normal, found by rasterising the object's triangles in UV space (barycentric
  interpolation of world vertices, :mod:`stylize.triangle_raster`).
- :class:`EnvironmentAtlas`: the background (instance 0) at infinity, indexed by world direction
  (equirectangular), so windows onto the sky stay consistent too.
- :class:`AtlasSet`: all atlases of a scene; ``visible_texels`` (a texel is seen by a frame when
  it projects onto a pixel of the same instance whose depth agrees, :mod:`passes.depth_tolerance`),
  ``project_views`` (gather views' colours into texels, weighted by |cos view angle|^p and
  distance, normalised by the best view), ``gather`` (a frame from the atlases, bilinear),
  push-pull hole filling (:func:`stylize.image_operations.push_pull_fill`) inside islands plus a
  margin, with known texels kept bit-identical.

numpy only (no bpy, cv2 or torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from greybox.pixel_masks import dilate
from passes.depth_tolerance import depth_slope, depth_tolerance
from passes.frame_passes import FramePasses
from scenes.scene_data import CameraTrack, Scene, SceneObject
from stylize.image_operations import on_screen, push_pull_fill, sample_bilinear, sample_same_surface
from scenes.scene_data import face_normals
from stylize.triangle_raster import interpolate_corners, rasterise_triangles


class SeenTexels(NamedTuple):
    """The texels of one atlas a frame sees: flat texel indices (M,), their pixel positions (M, 2),
    and the raw view terms of :class:`ViewWeights`: |cos| of the view angle (M,) and the distance
    to the camera (M,) (1 for the environment, which is at infinity)."""

    texels: np.ndarray
    pixels: np.ndarray
    cosines: np.ndarray
    distances: np.ndarray

    def select(self, keep: np.ndarray) -> "SeenTexels":
        return SeenTexels(self.texels[keep], self.pixels[keep], self.cosines[keep], self.distances[keep])


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
        positions = interpolate_corners(world, tri_index, bary)
        normals = face_normals(obj.vertices, obj.triangles)
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
        """|cos| of the angle between each texel's normal and its ray to the camera, and the distance
        along it (an orthographic camera's rays are parallel: its axis, and the planar depth)."""
        ray, dist = camera.view_vectors(frame, self.positions)
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


def atlas_lookups(frame_passes: FramePasses, camera: CameraTrack, sizes: dict[int, int], env_size: int):
    """Where each textured thing a frame shows reads its atlas: (atlas key, pixel selection (H, W)
    bool, atlas x, y in texels (texel centres at +0.5), the nearest texel's row and column), per
    object of ``sizes`` ({instance id: atlas side}) its covered pixels (through the UV pass), then
    key 0, the background, by each pixel's world direction into the ``env_size`` x 2 ``env_size``
    direction atlas."""
    h, w = frame_passes.height, frame_passes.width
    inst = frame_passes.instance_id
    covered = (frame_passes.uv[..., 2] >= 1.0) & (inst > 0)
    for i in np.unique(inst[covered]):
        key = int(i)
        if key not in sizes:
            continue
        size = sizes[key]
        sel = covered & (inst == i)
        uv = frame_passes.uv[sel][:, :2].astype(np.float64)
        x, y = uv[:, 0] * size, uv[:, 1] * size
        rows = np.clip(np.floor(y), 0, size - 1).astype(np.intp)
        cols = np.clip(np.floor(x), 0, size - 1).astype(np.intp)
        yield key, sel, x, y, rows, cols
    background = inst == 0
    if background.any():
        env = EnvironmentAtlas.__new__(EnvironmentAtlas)
        env.size = env_size
        x, y = env.coordinates(camera.pixel_rays(frame_passes.frame, w, h)[background])
        rows = np.clip(np.floor(y), 0, env_size - 1).astype(np.intp)
        cols = np.clip(np.floor(x), 0, 2 * env_size - 1).astype(np.intp)
        yield 0, background, x, y, rows, cols


def gather_textures(frame_passes: FramePasses, camera: CameraTrack, textures: dict[int, np.ndarray]) -> np.ndarray:
    """A frame from finished textures ({instance id: (S, S, 3) float32}, key 0 the (S, 2S, 3)
    environment), bilinear in the texture: what :meth:`AtlasSet.gather` does with a set's filled
    atlases. Pixels of objects without a texture stay 0. (H, W, 3) float32."""
    image = np.zeros((frame_passes.height, frame_passes.width, 3), dtype=np.float32)
    sizes = {i: t.shape[0] for i, t in textures.items() if i != 0}
    env_size = textures[0].shape[0] if 0 in textures else 1
    for key, sel, x, y, _, _ in atlas_lookups(frame_passes, camera, sizes, env_size):
        if key in textures:
            image[sel] = sample_bilinear(textures[key], x, y)
    return image


@dataclass
class ViewWeights:
    """Blend of views into texels (StableGen's convention): weight = (|cos| / best |cos|)^power x
    (nearest distance / distance)^2, views with |cos| below ``min_cos`` ignored."""

    power: float = 3.0
    min_cos: float = 0.1
    distance_power: float = 2.0


def _as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)


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
    def for_shot(cls, scene: Scene, shot_passes: list[FramePasses], *, fill: float = 1.0, min_size: int = 64,
                 max_size: int = 2048, fixed_sizes: dict[int, int] | None = None, env_size: int | None = None,
                 all_objects: bool = False, **kwargs) -> "AtlasSet":
        """Size each object's atlas from the finest screen density it gets over the shot:
        rho = the largest pixels per metre at which the object appears (the frame's focal length in
        pixels / its nearest depth; an orthographic frame's pixels per metre).
        ``fixed_sizes`` ({instance id: size}) and ``env_size`` keep the sizes a look already has;
        ``all_objects`` gives every object an atlas (``min_size`` for those the shot never shows)."""
        width, height = shot_passes[0].width, shot_passes[0].height
        rho_of: dict[int, float] = {}
        focal_max = 0.0
        for p in shot_passes:
            focal_max = max(focal_max, float(scene.camera.background_intrinsics(p.frame, width, height)[0, 0]))
            ids = p.instance_id[p.instance_id > 0]
            depths = p.depth[p.instance_id > 0]
            for inst in np.unique(ids):
                d = max(float(depths[ids == inst].min()), 1e-3)
                rho_of[int(inst)] = max(rho_of.get(int(inst), 0.0), float(scene.camera.pixels_per_metre(p.frame, width, height, d)))
        sizes = {}
        for o in scene.objects:
            if fixed_sizes and o.instance_id in fixed_sizes:
                sizes[o.instance_id] = int(fixed_sizes[o.instance_id])
            elif o.instance_id in rho_of:
                sizes[o.instance_id] = atlas_size_for(o, rho_of[o.instance_id], fill=fill, min_size=min_size, max_size=max_size)
            elif all_objects:
                sizes[o.instance_id] = min_size
        env = env_size or int(min(max(math.ceil(math.pi * focal_max), min_size), max_size))
        return cls(scene, sizes, env, width=width, height=height, **kwargs)

    def atlases(self):
        yield from self.objects.values()
        yield self.environment

    # -- visibility ------------------------------------------------------------------------------

    def visible_texels(self, frame_passes: FramePasses) -> dict[int, SeenTexels]:
        """Per atlas (instance id; 0 = environment): the texels this frame sees.

        A texel is seen when it projects on screen onto a pixel of the same instance whose depth
        agrees with the texel's planar depth (within ``depth_tolerance`` x depth plus the local
        depth slope). The UV and instance passes only hold visible surfaces, so this is exact up
        to the pixel grid.
        """
        h, w = frame_passes.height, frame_passes.width
        frame = frame_passes.frame
        slope = depth_slope(frame_passes.depth, frame_passes.instance_id)
        out = {}
        for inst, atlas in self.objects.items():
            xy, z = atlas.texel_pixels(self.camera, frame, w, h)
            with np.errstate(invalid="ignore"):
                ok = on_screen(xy[:, 0], xy[:, 1], w, h) & (z > self.camera.clip_start)
            idx = np.flatnonzero(ok)
            cols = np.floor(xy[idx, 0]).astype(np.intp)
            rows = np.floor(xy[idx, 1]).astype(np.intp)
            keep = frame_passes.instance_id[rows, cols] == inst
            dpass = frame_passes.depth[rows, cols].astype(np.float64)
            with np.errstate(invalid="ignore"):
                keep &= np.abs(dpass - z[idx]) <= depth_tolerance(z[idx], slope[rows, cols], relative=self.depth_tolerance)
            idx = idx[keep]
            cos, dist = atlas.view_cosines(self.camera, frame)
            out[inst] = SeenTexels(atlas.texel_index[idx], xy[idx], cos[idx], dist[idx])
        xy, d_cv = self.camera.project_directions(frame, self.environment.directions(), w, h, min_forward=1e-6)
        idx = np.flatnonzero(on_screen(xy[:, 0], xy[:, 1], w, h))
        cols = np.floor(xy[idx, 0]).astype(np.intp)
        rows = np.floor(xy[idx, 1]).astype(np.intp)
        idx = idx[frame_passes.instance_id[rows, cols] == 0]
        out[0] = SeenTexels(idx, xy[idx], d_cv[idx, 2] / np.linalg.norm(d_cv[idx], axis=-1), np.ones(len(idx)))
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
                      weights: ViewWeights = ViewWeights(), visibility: list[dict[int, SeenTexels]] | None = None) -> int:
        """Gather stylised views into the atlases: each texel takes the weighted mean of the views
        that see it (weights by |cos view angle|^p and distance, normalised by the best view
        before the power). With ``only_unknown`` known texels are left bit-identical.
        ``views``: (image (H, W, 3) float 0..1 or uint8, its passes). Returns texels written.
        """
        visibility = visibility or [self.visible_texels(p) for _, p in views]
        images = [_as_float(img) for img, _ in views]
        written = 0
        for atlas in list(self.atlases()):
            inst = atlas.instance_id
            size = atlas.known.size
            per_view = []
            best_cos = np.zeros(size)
            best_dist = np.full(size, np.inf)
            for (image, (_, frame_passes)), vis in zip(zip(images, views), visibility):
                seen = vis[inst]
                seen = seen.select(seen.cosines >= weights.min_cos)
                if only_unknown:
                    seen = seen.select(~atlas.known.reshape(-1)[seen.texels])
                if len(seen.texels) == 0:
                    continue
                colour = sample_same_surface(image, frame_passes.instance_id, seen.pixels, inst)
                per_view.append((seen, colour))
                np.maximum.at(best_cos, seen.texels, seen.cosines)
                np.minimum.at(best_dist, seen.texels, seen.distances)
            if not per_view:
                continue
            acc = np.zeros((size, 3))
            wsum = np.zeros(size)
            for seen, colour in per_view:
                idx = seen.texels
                wv = (seen.cosines / best_cos[idx]) ** weights.power * (best_dist[idx] / seen.distances) ** weights.distance_power
                np.add.at(acc, idx, colour * wv[:, None])
                np.add.at(wsum, idx, wv)
            target = np.flatnonzero(wsum > 0)
            flat_colour = atlas.colour.reshape(-1, 3)
            flat_colour[target] = (acc[target] / wsum[target, None]).astype(np.float32)
            atlas.known.reshape(-1)[target] = True
            atlas.filled = None
            written += len(target)
        return written

    def write_pixels(self, image: np.ndarray, frame_passes: FramePasses, mask: np.ndarray) -> int:
        """Write generated pixels (``mask``) back so later frames reuse them: the unknown texels they
        see take this view's colour (the keyframe gather, at any view angle), then each masked
        pixel's own texel (nearest to its UV), if still unknown, takes the pixel's colour (so every
        generated pixel is textured even where texel centres and pixel centres disagree). Known
        texels are never changed. Returns texels written."""
        restricted = {}
        for inst, seen in self.visible_texels(frame_passes).items():
            rows = np.floor(seen.pixels[:, 1]).astype(np.intp)
            cols = np.floor(seen.pixels[:, 0]).astype(np.intp)
            restricted[inst] = seen.select(mask[rows, cols])
        written = self.project_views([(image, frame_passes)], only_unknown=True, visibility=[restricted],
                                     weights=ViewWeights(min_cos=0.0))
        colours = _as_float(image)
        inst = frame_passes.instance_id
        covered = mask & (((frame_passes.uv[..., 2] >= 1.0) & (inst > 0)) | (inst == 0))
        for i in np.unique(inst[covered]):
            i = int(i)
            if i != 0 and i not in self.objects:
                continue
            sel = covered & (inst == i)
            if i == 0:
                env = self.environment
                rays = self.camera.pixel_rays(frame_passes.frame, frame_passes.width, frame_passes.height)
                x, y = env.coordinates(rays[sel])
                rows = np.clip(np.floor(y), 0, env.size - 1).astype(np.intp)
                cols = np.clip(np.floor(x), 0, 2 * env.size - 1).astype(np.intp)
                atlas = env
            else:
                atlas = self.objects[i]
                uv = frame_passes.uv[sel][:, :2].astype(np.float64)
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

    def _lookups(self, frame_passes: FramePasses):
        """For each textured thing a frame shows: (atlas key, pixel selection, atlas x, y in texels,
        the seen flag of each selected pixel's texel). Key 0 is the background's direction atlas."""
        sizes = {i: a.size for i, a in self.objects.items()}
        for key, sel, x, y, rows, cols in atlas_lookups(frame_passes, self.camera, sizes, self.environment.size):
            yield key, sel, x, y, self.seen_mask(key)[rows, cols]

    def gather(self, frame_passes: FramePasses) -> tuple[np.ndarray, np.ndarray]:
        """Produce a frame from the atlases with its own UV and instance passes (bilinear in the atlas).

        Returns (image (H, W, 3) float32 0..1, seen (H, W) bool: the pixel's texel is textured).
        """
        image = np.zeros((frame_passes.height, frame_passes.width, 3), dtype=np.float32)
        seen = np.zeros((frame_passes.height, frame_passes.width), dtype=bool)
        for key, sel, x, y, texel_seen in self._lookups(frame_passes):
            image[sel] = sample_bilinear(self.filled(key), x, y)
            seen[sel] = texel_seen
        return image, seen

    def seen_pixels(self, frame_passes: FramePasses) -> np.ndarray:
        """(H, W) bool: the pixels whose texel is textured (what :meth:`gather` returns as ``seen``,
        without the colour lookup or the push-pull fill)."""
        seen = np.zeros((frame_passes.height, frame_passes.width), dtype=bool)
        for _, sel, _, _, texel_seen in self._lookups(frame_passes):
            seen[sel] = texel_seen
        return seen

    def unseen_share(self, frame_passes: FramePasses) -> float:
        """Share of the frame's pixels whose surface (or background direction) is not yet textured."""
        return float((~self.seen_pixels(frame_passes)).mean())

    def mark_seen(self, frame_passes: FramePasses) -> None:
        """Mark the texels a frame sees as known without colour (keyframe selection's bookkeeping)."""
        for inst, seen in self.visible_texels(frame_passes).items():
            self._atlas(inst).known.reshape(-1)[seen.texels[seen.cosines >= ViewWeights().min_cos]] = True

    def reset(self) -> None:
        for atlas in self.atlases():
            atlas.colour[:] = 0
            atlas.known[:] = False
            atlas.filled = None
