"""The scene as plain data: triangle meshes with semantic class, instance id, UVs, normals, where each
object came from, and a camera track with per-frame pose and intrinsics.

The scene stage records it in a shot's folder (``DIR/scene/scene.npz``, :meth:`Scene.save_npz`);
every later stage reads it back (:func:`read_scene`) and never rebuilds it. Blender is one view of
this data (``passes.blender_scene``); the keyframe projector in ``stylize`` is another. This module
imports numpy only, so every stage may read it.

Conventions
- World: Blender's, metres, Z up. Vertices are world space; ``SceneObject.transform`` is the
  object's own frame (object-to-world, 4x4), recorded for the layout and the exported files.
- ``CameraTrack.rotations[i]`` is the camera-to-world rotation in Blender's camera convention:
  the camera looks down its local -Z, local +Y is up, +X right.
- OpenCV camera (``world_to_camera_opencv``): x right, y down, z forward; pixel centres at +0.5.
- Intrinsics follow Blender's camera model (``CameraTrack.intrinsics``): focal length (or, for an
  orthographic camera, ``ortho_scale``) and shift per frame, one sensor (width, height) and sensor
  fit (``AUTO``, ``HORIZONTAL``, ``VERTICAL``), square pixels. An orthographic camera maps camera
  space to pixels without a perspective divide (:meth:`CameraTrack.projection_matrix`); its depth is
  planar too (distance from the camera's plane).

The stored format (``scene.npz``, version 2) is described in :meth:`Scene.npz_bytes`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

# Blender camera axes -> OpenCV camera axes.
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])

# Where the scene stage writes a shot's scene, relative to the shot's folder.
SCENE_FOLDER = "scene"
SCENE_NPZ = "scene/scene.npz"
LAYOUT_JSON = "scene/layout.json"
SCENE_GLB = "scene/scene.glb"
SCENE_BLEND = "scene/scene.blend"

SCENE_FORMAT = "greybox.scene"
SCENE_FORMAT_VERSION = 2  # 2: one array per quantity for all objects (1: entries per object, slow to read past ~10k objects)
SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
CAMERA_TYPES = ("perspective", "orthographic")
SOURCE_KINDS = ("generator", "explicit", "import")


# --------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSource:
    """Where an object came from.

    ``kind``: ``generator`` (a procedural generator built it: ``generator`` names which, e.g.
    ``room``), ``explicit`` (a template ``[[objects]]`` primitive) or ``import`` (a model file:
    ``file``, relative to the template's folder, and ``node_path``, the node in that file's own
    hierarchy). ``template_key`` is the template entry it comes from (``objects.3``,
    ``generator.room.furniture.2``, ``generator.room``, ``imports.0``). ``placement``: for generated
    furniture (assets included), the rule that placed it and its resolved parameters (plain JSON
    data). ``uvs``: for imported objects, where their UVs come from: ``file`` (the object's own UV
    map: islands inside [0, 1]^2, none overlapping) or ``packed`` (greybox's packer, one island per
    polygon, because the file's were missing, outside [0, 1]^2 or overlapping).
    """

    kind: str = "explicit"
    generator: str | None = None
    template_key: str | None = None
    file: str | None = None
    node_path: str | None = None
    placement: dict | None = None
    uvs: str | None = None

    def __post_init__(self):
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"object source kind {self.kind!r} is not one of {', '.join(SOURCE_KINDS)}")

    def to_json(self) -> dict:
        """Plain data; keys that do not apply to this kind are left out."""
        out: dict = {"kind": self.kind}
        for key in ("generator", "template_key", "file", "node_path", "placement", "uvs"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: dict) -> "ObjectSource":
        return cls(**{k: data.get(k) for k in ("kind", "generator", "template_key", "file", "node_path", "placement", "uvs")})


def _identity() -> np.ndarray:
    return np.eye(4)


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(T, 3) unit normals of counter-clockwise triangles, in the vertices' dtype (zero for a
    degenerate one): the flat shading the passes render. The one home of face normals."""
    v = vertices[triangles]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    return n / np.where(length > 0, length, 1.0)


@dataclass(frozen=True)
class SceneObject:
    """One mesh. ``name`` is stable ("room.wall_north", "sofa", "crate") and seeds its randomness."""

    name: str
    kind: str  # "wall", "floor", "sofa", "box", ...
    semantic_class_id: int  # ADE20K 1-based id (0 is background, never used by an object)
    instance_id: int  # 1.. in a stable order; fits Blender's 16-bit pass_index
    vertices: np.ndarray  # (V, 3) float64, world space
    triangles: np.ndarray  # (T, 3) int32, counter-clockwise seen from outside
    uvs: np.ndarray  # (T, 3, 2) float32, per corner, islands inside [0, 1]^2 that do not overlap
    source: ObjectSource = field(default_factory=ObjectSource)
    transform: np.ndarray = field(default_factory=_identity)  # (4, 4) float64, the object's frame -> world

    def __post_init__(self):
        t = np.asarray(self.transform, dtype=np.float64)
        if t.shape != (4, 4):
            raise ValueError(f"object {self.name!r}: transform must be 4x4, got {t.shape}")
        object.__setattr__(self, "transform", t)

    def geometry_hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(f"{self.name}|{self.kind}|{self.semantic_class_id}|{self.instance_id}".encode())
        for array in (self.vertices, self.triangles, self.uvs):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world bounds (min, max) of the vertices."""
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    @cached_property
    def normals(self) -> np.ndarray:
        """(T, 3) float32 unit face normals from the winding (flat shading, as the passes render it);
        0 for a degenerate triangle."""
        return face_normals(np.asarray(self.vertices, dtype=np.float64), self.triangles).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraTrack:
    """Camera pose and intrinsics per frame, from ``frame_start - 1`` to ``frame_end + 1`` (the vector
    pass needs both ends).

    Per frame: position, rotation, focal length (mm) and lens shift (Blender's ``shift_x``,
    ``shift_y``: fractions of the fitted sensor side, the width with a horizontal fit). For the whole
    track: the sensor (mm), Blender's sensor fit, the clip planes and the camera ``type``:
    ``perspective`` or ``orthographic`` (with ``ortho_scales``: metres across the fitted side, per
    frame, Blender's ``ortho_scale``).

    Points at infinity (the background, instance 0): an orthographic camera's rays are parallel,
    so the sky has no image through it. :meth:`pixel_rays` and :meth:`project_directions` then use
    its *backdrop lens*, the pinhole with the track's focal length and shift: the stylised sky turns
    with the camera and stays put while it only moves (what the consistency modes need; the passes
    hold no background geometry).

    ``focal_lengths_mm`` and ``ortho_scales`` may be given as one number (the same on every frame);
    ``shifts`` default to 0.
    """

    frames: np.ndarray  # (N,) int64, consecutive
    positions: np.ndarray  # (N, 3) float64
    rotations: np.ndarray  # (N, 3, 3) float64, camera-to-world, Blender camera axes
    focal_lengths_mm: np.ndarray  # (N,) float64
    sensor_width_mm: float = 36.0
    sensor_height_mm: float = 24.0
    sensor_fit: str = "HORIZONTAL"
    clip_start: float = 0.05
    clip_end: float = 200.0
    shifts: np.ndarray | None = None  # (N, 2) float64: shift_x, shift_y
    type: str = "perspective"
    ortho_scales: np.ndarray | None = None  # (N,) float64, orthographic only

    def __post_init__(self):
        frames = np.asarray(self.frames, dtype=np.int64)
        n = len(frames)
        if n == 0 or (n > 1 and not np.array_equal(np.diff(frames), np.ones(n - 1, dtype=np.int64))):
            raise ValueError("a camera track needs consecutive frames")
        positions = np.asarray(self.positions, dtype=np.float64)
        rotations = np.asarray(self.rotations, dtype=np.float64)
        if positions.shape != (n, 3) or rotations.shape != (n, 3, 3):
            raise ValueError(f"camera track of {n} frames: positions {positions.shape}, rotations {rotations.shape}")
        focal = np.asarray(self.focal_lengths_mm, dtype=np.float64)
        focal = np.full(n, float(focal)) if focal.ndim == 0 else focal
        shifts = np.zeros((n, 2)) if self.shifts is None else np.asarray(self.shifts, dtype=np.float64)
        if focal.shape != (n,) or shifts.shape != (n, 2):
            raise ValueError(f"camera track of {n} frames: focal lengths {focal.shape}, shifts {shifts.shape}")
        if self.sensor_fit not in SENSOR_FITS:
            raise ValueError(f"sensor_fit {self.sensor_fit!r} is not one of {', '.join(SENSOR_FITS)}")
        if self.type not in CAMERA_TYPES:
            raise ValueError(f"camera type {self.type!r} is not one of {', '.join(CAMERA_TYPES)}")
        ortho = None
        if self.type == "orthographic":
            if self.ortho_scales is None:
                raise ValueError("an orthographic camera track needs ortho_scales")
            ortho = np.asarray(self.ortho_scales, dtype=np.float64)
            ortho = np.full(n, float(ortho)) if ortho.ndim == 0 else ortho
            if ortho.shape != (n,):
                raise ValueError(f"camera track of {n} frames: ortho scales {ortho.shape}")
            if not np.all(np.isfinite(ortho) & (ortho > 0)):
                raise ValueError("an orthographic camera's ortho_scales must be positive and finite")
        for name, value in (("frames", frames), ("positions", positions), ("rotations", rotations),
                            ("focal_lengths_mm", focal), ("shifts", shifts), ("ortho_scales", ortho)):
            object.__setattr__(self, name, value)

    def index(self, frame: int) -> int:
        i = int(frame - self.frames[0])
        if not (0 <= i < len(self.frames)):
            raise KeyError(f"frame {frame} is outside the camera track {self.frames[0]}..{self.frames[-1]}")
        return i

    def camera_to_world_blender(self, frame: int) -> np.ndarray:
        """4x4 ``matrix_world`` as Blender has it."""
        i = self.index(frame)
        m = np.eye(4)
        m[:3, :3] = self.rotations[i]
        m[:3, 3] = self.positions[i]
        return m

    def world_to_camera_opencv(self, frame: int) -> np.ndarray:
        """4x4: world point -> OpenCV camera coordinates (x right, y down, z forward)."""
        i = self.index(frame)
        r = BLENDER_TO_OPENCV @ self.rotations[i].T
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = -r @ self.positions[i]
        return m

    def fitted_side(self, width: int, height: int) -> tuple[str, float]:
        """Blender's sensor fit for a ``width`` x ``height`` image: (``HORIZONTAL`` or ``VERTICAL``, the
        sensor size in mm that spans that side). ``AUTO`` fits the larger side, and it is the sensor
        width that spans it (Blender's rule, whatever the orientation)."""
        fit = self.sensor_fit
        sensor = self.sensor_height_mm if fit == "VERTICAL" else self.sensor_width_mm
        if fit == "AUTO":
            fit = "HORIZONTAL" if width >= height else "VERTICAL"
        return fit, sensor

    @property
    def orthographic(self) -> bool:
        return self.type == "orthographic"

    def _principal_point(self, i: int, width: int, height: int, side: int) -> tuple[float, float]:
        """The image centre moved by the shift (x left for +shift_x, y up for +shift_y, in units of the fitted side)."""
        return width / 2.0 - self.shifts[i, 0] * side, height / 2.0 + self.shifts[i, 1] * side

    def _pinhole(self, i: int, width: int, height: int) -> np.ndarray:
        """The pinhole K of the focal length and shift at track index ``i`` (an orthographic camera's backdrop lens)."""
        fit, sensor = self.fitted_side(width, height)
        side = width if fit == "HORIZONTAL" else height
        f = self.focal_lengths_mm[i] / sensor * side
        cx, cy = self._principal_point(i, width, height, side)
        return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])

    def background_intrinsics(self, frame: int, width: int, height: int) -> np.ndarray:
        """The pinhole K through which the background (points at infinity) is seen at ``frame``:
        :meth:`intrinsics` for a perspective camera, the backdrop lens for an orthographic one."""
        return self._pinhole(self.index(frame), width, height)

    def intrinsics(self, frame: int, width: int, height: int) -> np.ndarray:
        """3x3 K in pixels at ``frame`` for a ``width`` x ``height`` image, as Blender projects it; the
        principal point is the image centre moved by the shift (x left for +shift_x, y up for
        +shift_y, in units of the fitted side).

        Perspective: f = focal / (fitted sensor side) x (fitted image side), pixel ~ K @ (x, y, z)
        (divide by z). Orthographic: s = (fitted image side) / ortho_scale pixels per metre, and
        pixel = K @ (x, y, 1) for camera-space x, y in metres (no divide; the depth plays no part).
        Camera space is OpenCV's (x right, y down, z forward), pixel centres at +0.5."""
        i = self.index(frame)
        if not self.orthographic:
            return self._pinhole(i, width, height)
        fit, _ = self.fitted_side(width, height)
        side = width if fit == "HORIZONTAL" else height
        s = side / self.ortho_scales[i]
        cx, cy = self._principal_point(i, width, height, side)
        return np.array([[s, 0.0, cx], [0.0, s, cy], [0.0, 0.0, 1.0]])

    def projection_matrix(self, frame: int, width: int, height: int) -> np.ndarray:
        """3x4 P taking an OpenCV camera-space point (x, y, z, 1) to homogeneous pixels: pixel =
        (P X)[:2] / (P X)[2] for both types. Perspective: ``K [I | 0]``; orthographic:
        ``[[s, 0, 0, cx], [0, s, 0, cy], [0, 0, 0, 1]]`` (the last row is constant: no divide)."""
        k = self.intrinsics(frame, width, height)
        if not self.orthographic:
            return np.hstack([k, np.zeros((3, 1))])
        return np.array([[k[0, 0], 0.0, 0.0, k[0, 2]], [0.0, k[1, 1], 0.0, k[1, 2]], [0.0, 0.0, 0.0, 1.0]])

    def pixels_per_metre(self, frame: int, width: int, height: int, depth) -> np.ndarray:
        """How many pixels one metre across the view spans at planar ``depth`` (metres; any shape):
        f / depth for a perspective camera, s (whatever the depth) for an orthographic one."""
        k = self.intrinsics(frame, width, height)
        depth = np.asarray(depth, dtype=np.float64)
        if self.orthographic:
            return np.full(depth.shape, k[0, 0])
        with np.errstate(divide="ignore"):
            return k[0, 0] / depth

    def camera_points(self, frame: int, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> OpenCV camera coordinates (N, 3)."""
        w2c = self.world_to_camera_opencv(frame)
        return np.asarray(points, dtype=np.float64) @ w2c[:3, :3].T + w2c[:3, 3]

    def project(self, frame: int, points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2; x right, y down, pixel centres at +0.5) and planar depth (N,)."""
        cam = self.camera_points(frame, points)
        k = self.intrinsics(frame, width, height)
        z = cam[:, 2]
        if self.orthographic:
            return cam[:, :2] * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]], z
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam[:, :2] / z[:, None]) * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]
        return uv, z

    def unproject(self, frame: int, pixels: np.ndarray, depth: np.ndarray, width: int, height: int) -> np.ndarray:
        """Pixel coordinates (N, 2; as :meth:`project` gives them) at planar ``depth`` (N,) -> world points (N, 3)."""
        k = self.intrinsics(frame, width, height)
        pixels = np.asarray(pixels, dtype=np.float64)
        z = np.asarray(depth, dtype=np.float64)
        xy = (pixels - [k[0, 2], k[1, 2]]) / [k[0, 0], k[1, 1]]
        if not self.orthographic:
            xy = xy * z[:, None]
        cam = np.column_stack([xy, z])
        w2c = self.world_to_camera_opencv(frame)
        return (cam - w2c[:3, 3]) @ w2c[:3, :3]

    def view_vectors(self, frame: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For world points (N, 3): the vector from each point towards the camera along its ray (N, 3)
        and that ray's length (N,). Perspective: to the camera's centre and the distance to it;
        orthographic (parallel rays): the camera's backward axis times the planar depth, and the
        planar depth."""
        i = self.index(frame)
        points = np.asarray(points, dtype=np.float64)
        if self.orthographic:
            depth = self.camera_points(frame, points)[:, 2]
            return depth[:, None] * self.rotations[i][:, 2][None, :], depth  # Blender camera +Z: towards the camera
        ray = self.positions[i][None, :] - points
        return ray, np.linalg.norm(ray, axis=-1)

    # -- rays: points at infinity, seen through the rotation only ------------------------------

    def opencv_to_world_rotation(self, frame: int) -> np.ndarray:
        """3x3: a direction in OpenCV camera axes (x right, y down, z forward) -> world."""
        return self.rotations[self.index(frame)] @ BLENDER_TO_OPENCV

    def pixel_rays(self, frame: int, width: int, height: int) -> np.ndarray:
        """World direction of the ray through each pixel centre at ``frame`` (H, W, 3); not unit length
        (its OpenCV z component is 1). The inverse of :meth:`project_directions`. An orthographic
        camera's background is seen through its backdrop lens (see the class docstring)."""
        k = self.background_intrinsics(frame, width, height)
        cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        rays = np.stack([(cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1], np.ones_like(cols)], axis=-1)
        return rays @ self.opencv_to_world_rotation(frame).T

    def project_directions(self, frame: int, directions: np.ndarray, width: int, height: int,
                           *, min_forward: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """World directions (..., 3) of points at infinity -> pixel coordinates at ``frame`` (..., 2; as
        :meth:`project`) and the directions in OpenCV camera axes (..., 3; z forward). Directions whose
        forward component is not above ``min_forward`` (behind the camera) get NaN coordinates. An
        orthographic camera's background is seen through its backdrop lens (see the class docstring)."""
        d = np.asarray(directions) @ self.opencv_to_world_rotation(frame)  # world -> OpenCV camera (rotation only)
        k = self.background_intrinsics(frame, width, height)
        forward = d[..., 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = d[..., :2] / forward * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]
        return np.where(forward > min_forward, xy, np.nan), d

    def lens_json(self) -> dict:
        """What is the same on every frame, as plain data."""
        return {"type": self.type, "sensor_fit": self.sensor_fit, "sensor_width_mm": float(self.sensor_width_mm),
                "sensor_height_mm": float(self.sensor_height_mm), "clip_start": float(self.clip_start),
                "clip_end": float(self.clip_end)}


# --------------------------------------------------------------------------------------------
# The scene and its file
# --------------------------------------------------------------------------------------------


class SceneFileError(ValueError):
    """A scene.npz that cannot be read: missing entries, another format or a newer version."""


@dataclass(frozen=True)
class Scene:
    name: str
    seed: int
    objects: tuple[SceneObject, ...]
    camera: CameraTrack
    width: int
    height: int
    frame_start: int
    frame_end: int
    fps: int
    metadata: dict = field(default_factory=dict)  # resolved generator parameters (plain JSON data)

    def object_hashes(self) -> dict[str, str]:
        return {o.name: o.geometry_hash() for o in self.objects}

    def geometry_hash(self) -> str:
        digest = hashlib.sha256()
        for name, h in sorted(self.object_hashes().items()):
            digest.update(f"{name}:{h}\n".encode())
        cam = self.camera
        for array in (cam.frames, cam.positions, cam.rotations, cam.focal_lengths_mm, cam.shifts):
            digest.update(np.ascontiguousarray(array).tobytes())
        if cam.ortho_scales is not None:
            digest.update(np.ascontiguousarray(cam.ortho_scales).tobytes())
        digest.update(json.dumps(cam.lens_json(), sort_keys=True).encode())
        return digest.hexdigest()

    # -- the file: the scene travels to later stages (and other machines) as one .npz ------------

    def header(self) -> dict:
        """The scene's plain-data part, as stored in ``scene.npz``'s ``scene_json`` entry."""
        return {
            "format": SCENE_FORMAT, "version": SCENE_FORMAT_VERSION,
            "name": self.name, "seed": int(self.seed), "width": int(self.width), "height": int(self.height),
            "frame_start": int(self.frame_start), "frame_end": int(self.frame_end), "fps": int(self.fps),
            "camera": self.camera.lens_json(),
            "objects": [
                {"name": o.name, "kind": o.kind, "class_id": int(o.semantic_class_id), "instance_id": int(o.instance_id),
                 "source": o.source.to_json()}
                for o in self.objects
            ],
            "metadata": self.metadata,
        }

    def npz_bytes(self) -> bytes:
        """The bytes of ``scene.npz`` (deterministic). Entries (a plain ``numpy.load`` reads them, no pickle):

        - ``scene_json``: uint8, UTF-8 JSON of :meth:`header`: format ``greybox.scene`` and version,
          name, seed, resolution, frame range, fps, the camera's type, sensor fit, sensor size and
          clip planes, per object (in instance-id order) name, kind, class id, instance id and
          source, and the generator's resolved parameters (``metadata``);
        - ``camera_frames`` (N,) int64; ``camera_positions`` (N, 3) and ``camera_rotations``
          (N, 3, 3) float64 (camera-to-world, Blender camera axes); ``camera_focal_lengths_mm`` (N,);
          ``camera_shifts`` (N, 2); ``camera_ortho_scales`` (N,) for orthographic cameras only;
        - ``object_transforms`` (M, 4, 4) float64, object-to-world;
        - ``object_vertex_counts`` and ``object_triangle_counts`` (M,) int64, per object in the order of
          ``scene_json``'s objects; then, all objects one after the other in that order:
          ``vertices`` (sum V, 3) float64 world space, ``triangles`` (sum T, 3) int32 (indices into
          the object's own vertices), ``uvs`` (sum T, 3, 2) float32 per corner, ``normals``
          (sum T, 3) float32 unit face normals. Object i's rows start at the sum of the counts
          before it.
        """
        import io

        cam = self.camera
        objects = self.objects
        arrays: dict[str, np.ndarray] = {
            "scene_json": np.frombuffer(json.dumps(self.header(), sort_keys=True, allow_nan=False).encode("utf-8"), dtype=np.uint8),
            "camera_frames": cam.frames,
            "camera_positions": cam.positions,
            "camera_rotations": cam.rotations,
            "camera_focal_lengths_mm": cam.focal_lengths_mm,
            "camera_shifts": cam.shifts,
            "object_transforms": np.stack([o.transform for o in objects]) if objects else np.zeros((0, 4, 4)),
            "object_vertex_counts": np.array([len(o.vertices) for o in objects], dtype=np.int64),
            "object_triangle_counts": np.array([len(o.triangles) for o in objects], dtype=np.int64),
        }
        if cam.ortho_scales is not None:
            arrays["camera_ortho_scales"] = cam.ortho_scales

        def joined(name: str, dtype, shape: tuple[int, ...]) -> np.ndarray:
            parts = [np.asarray(getattr(o, name), dtype=dtype).reshape((-1,) + shape) for o in objects]
            return np.concatenate(parts) if parts else np.zeros((0,) + shape, dtype=dtype)

        arrays["vertices"] = joined("vertices", np.float64, (3,))
        arrays["triangles"] = joined("triangles", np.int32, (3,))
        arrays["uvs"] = joined("uvs", np.float32, (3, 2))
        arrays["normals"] = joined("normals", np.float32, (3,))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # uncompressed zip entries carry a fixed date: deterministic
        return buffer.getvalue()

    def save_npz(self, path: str | Path) -> str:
        """Write ``scene.npz`` atomically (see :meth:`npz_bytes`); return its sha256."""
        from greybox.atomic_files import write_bytes_atomic

        return write_bytes_atomic(path, self.npz_bytes())

    @classmethod
    def load_npz(cls, path: str | Path) -> "Scene":
        """Read a ``scene.npz`` written by :meth:`save_npz`. Raises :class:`SceneFileError` when it is
        not one, or of a newer version; OSError when it cannot be read."""
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise SceneFileError(f"{path}: not a scene file ({err})") from None
        with data:
            try:
                header = json.loads(bytes(data["scene_json"]).decode("utf-8"))
            except (KeyError, ValueError) as err:
                raise SceneFileError(f"{path}: not a greybox scene file (no readable scene_json: {err})") from None
            if header.get("format") != SCENE_FORMAT:
                raise SceneFileError(f"{path}: format {header.get('format')!r} is not {SCENE_FORMAT!r}")
            if header.get("version") != SCENE_FORMAT_VERSION:
                raise SceneFileError(
                    f"{path}: scene format version {header.get('version')!r}; this greybox reads version "
                    f"{SCENE_FORMAT_VERSION} (render the scene again with this greybox)"
                )
            try:
                lens = header["camera"]
                camera = CameraTrack(
                    frames=data["camera_frames"], positions=data["camera_positions"], rotations=data["camera_rotations"],
                    focal_lengths_mm=data["camera_focal_lengths_mm"], shifts=data["camera_shifts"],
                    sensor_width_mm=float(lens["sensor_width_mm"]), sensor_height_mm=float(lens["sensor_height_mm"]),
                    sensor_fit=lens["sensor_fit"], clip_start=float(lens["clip_start"]), clip_end=float(lens["clip_end"]),
                    type=lens["type"], ortho_scales=data["camera_ortho_scales"] if "camera_ortho_scales" in data else None,
                )
                transforms = data["object_transforms"]
                entries = header["objects"]
                v_counts, t_counts = data["object_vertex_counts"], data["object_triangle_counts"]
                vertices, triangles, uvs, normals = data["vertices"], data["triangles"], data["uvs"], data["normals"]
                if not (len(entries) == len(v_counts) == len(t_counts) == len(transforms)):
                    raise ValueError(f"{len(entries)} objects, {len(v_counts)} vertex counts, {len(transforms)} transforms")
                v_ends, t_ends = np.cumsum(v_counts), np.cumsum(t_counts)
                if (len(entries) and (v_ends[-1] != len(vertices) or t_ends[-1] != len(triangles)
                                      or len(uvs) != len(triangles) or len(normals) != len(triangles))):
                    raise ValueError("the object counts do not add up to the stored arrays")
                objects = []
                for i, entry in enumerate(entries):
                    v0, v1 = int(v_ends[i] - v_counts[i]), int(v_ends[i])
                    t0, t1 = int(t_ends[i] - t_counts[i]), int(t_ends[i])
                    obj = SceneObject(
                        name=entry["name"], kind=entry["kind"], semantic_class_id=int(entry["class_id"]),
                        instance_id=int(entry["instance_id"]), vertices=vertices[v0:v1],
                        triangles=triangles[t0:t1], uvs=uvs[t0:t1],
                        source=ObjectSource.from_json(entry["source"]), transform=transforms[i],
                    )
                    obj.__dict__["normals"] = normals[t0:t1]  # as stored (the same numbers)
                    objects.append(obj)
            except (KeyError, IndexError, TypeError, ValueError) as err:
                raise SceneFileError(f"{path}: damaged scene file ({type(err).__name__}: {err})") from None
        return cls(name=header["name"], seed=int(header["seed"]), objects=tuple(objects), camera=camera,
                   width=int(header["width"]), height=int(header["height"]), frame_start=int(header["frame_start"]),
                   frame_end=int(header["frame_end"]), fps=int(header["fps"]), metadata=header.get("metadata") or {})


def read_scene(view_dir: str | Path) -> Scene:
    """The scene the scene stage recorded in a shot's folder (``view_dir/scene/scene.npz``).

    This is how every stage after the scene stage gets the scene: it never rebuilds it. Raises
    ``InputError`` (exit 2) naming the file when it is missing or unreadable.
    """
    from greybox.errors import InputError

    path = Path(view_dir) / SCENE_NPZ
    if not path.is_file():
        raise InputError(f"{path} is missing: the scene stage writes it; render the shot's passes first (greybox passes)")
    try:
        return Scene.load_npz(path)
    except (OSError, SceneFileError) as err:
        raise InputError(f"cannot read the scene: {err}; render the shot's passes again (greybox passes --force)") from None


# --------------------------------------------------------------------------------------------
# Randomness
# --------------------------------------------------------------------------------------------


def object_rng(scene_seed: int, stable_name: str) -> np.random.Generator:
    """The one source of randomness for a generator: derived from (scene seed, the thing's stable name).

    Seed 0 is a seed. Changing one object's name or parameters moves nothing else.
    """
    return np.random.Generator(np.random.PCG64(int.from_bytes(_seed_digest(scene_seed, stable_name)[:16], "little")))


def object_seed_hex(scene_seed: int, stable_name: str) -> str:
    """The 128-bit seed :func:`object_rng` derives for (scene seed, stable name), as hex (for the records)."""
    return int.from_bytes(_seed_digest(scene_seed, stable_name)[:16], "little").to_bytes(16, "big").hex()


def _seed_digest(scene_seed: int, stable_name: str) -> bytes:
    return hashlib.sha256(f"{int(scene_seed)}/{stable_name}".encode()).digest()
