"""The scene as plain data: triangle meshes with semantic class, instance id and UVs, and a camera track.

Blender is one view of this data (``procedural.blender_scene``); the keyframe projector in
``stylize`` is another. This module imports numpy only, so every stage may read it.

Conventions
- World: Blender's, metres, Z up.
- ``CameraTrack.rotations[i]`` is the camera-to-world rotation in Blender's camera convention:
  the camera looks down its local -Z, local +Y is up, +X right.
- OpenCV camera (``world_to_camera_opencv``): x right, y down, z forward.
- Intrinsics: horizontal sensor fit, principal point at the image centre, square pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Blender camera axes -> OpenCV camera axes.
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class SceneObject:
    """One mesh. ``name`` is stable ("room.wall_north", "sofa", "objects.box1") and seeds its randomness."""

    name: str
    kind: str  # "wall", "floor", "sofa", "box", ...
    semantic_class_id: int  # ADE20K 1-based id (0 is background, never used by an object)
    instance_id: int  # 1.. in a stable order; fits Blender's 16-bit pass_index
    vertices: np.ndarray  # (V, 3) float64, world space
    triangles: np.ndarray  # (T, 3) int32, counter-clockwise seen from outside
    uvs: np.ndarray  # (T, 3, 2) float32, per corner, islands inside [0, 1]^2 that do not overlap

    def geometry_hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(f"{self.name}|{self.kind}|{self.semantic_class_id}|{self.instance_id}".encode())
        for array in (self.vertices, self.triangles, self.uvs):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


@dataclass(frozen=True)
class CameraTrack:
    """Camera pose per frame, from ``frame_start - 1`` to ``frame_end + 1`` (the vector pass needs both ends)."""

    frames: np.ndarray  # (N,) int64, consecutive
    positions: np.ndarray  # (N, 3) float64
    rotations: np.ndarray  # (N, 3, 3) float64, camera-to-world, Blender camera axes
    focal_length_mm: float
    sensor_width_mm: float
    clip_start: float
    clip_end: float

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

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """3x3 K in pixels (horizontal sensor fit, principal point at the centre)."""
        f = self.focal_length_mm / self.sensor_width_mm * width
        return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])

    def project(self, frame: int, points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2; x right, y down, pixel centres at +0.5) and planar depth (N,)."""
        w2c = self.world_to_camera_opencv(frame)
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        k = self.intrinsics(width, height)
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam[:, :2] / z[:, None]) * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]
        return uv, z

    # -- rays: points at infinity, seen through the rotation only ------------------------------

    def opencv_to_world_rotation(self, frame: int) -> np.ndarray:
        """3x3: a direction in OpenCV camera axes (x right, y down, z forward) -> world."""
        return self.rotations[self.index(frame)] @ BLENDER_TO_OPENCV

    def pixel_rays(self, frame: int, width: int, height: int) -> np.ndarray:
        """World direction of the ray through each pixel centre (H, W, 3); not unit length (its
        OpenCV z component is 1). The inverse of :meth:`project_directions`."""
        k = self.intrinsics(width, height)
        cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        rays = np.stack([(cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1], np.ones_like(cols)], axis=-1)
        return rays @ self.opencv_to_world_rotation(frame).T

    def project_directions(self, frame: int, directions: np.ndarray, width: int, height: int,
                           *, min_forward: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """World directions (..., 3) of points at infinity -> pixel coordinates (..., 2; as :meth:`project`)
        and the directions in OpenCV camera axes (..., 3; z forward). Directions whose forward
        component is not above ``min_forward`` (behind the camera) get NaN coordinates."""
        d = np.asarray(directions) @ self.opencv_to_world_rotation(frame)  # world -> OpenCV camera (rotation only)
        k = self.intrinsics(width, height)
        forward = d[..., 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = d[..., :2] / forward * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]
        return np.where(forward > min_forward, xy, np.nan), d


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
    metadata: dict = field(default_factory=dict)  # resolved generator parameters, per-object seeds

    def object_hashes(self) -> dict[str, str]:
        return {o.name: o.geometry_hash() for o in self.objects}

    def geometry_hash(self) -> str:
        digest = hashlib.sha256()
        for name, h in sorted(self.object_hashes().items()):
            digest.update(f"{name}:{h}\n".encode())
        for array in (self.camera.frames, self.camera.positions, self.camera.rotations):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    # -- files: the scene travels to downstream stages (and other machines) as one .npz -------

    def save_npz(self, path: str | Path) -> None:
        """Write the scene geometry and camera (read back by :meth:`load_npz`); deterministic bytes."""
        import io

        from greybox.atomic_files import write_bytes_atomic

        arrays: dict[str, np.ndarray] = {
            "camera_frames": self.camera.frames,
            "camera_positions": self.camera.positions,
            "camera_rotations": self.camera.rotations,
            "camera_lens": np.array(
                [self.camera.focal_length_mm, self.camera.sensor_width_mm, self.camera.clip_start, self.camera.clip_end]
            ),
            "scene_ints": np.array([self.seed, self.width, self.height, self.frame_start, self.frame_end, self.fps], dtype=np.int64),
            "object_names": np.array([o.name for o in self.objects]),
            "object_kinds": np.array([o.kind for o in self.objects]),
            "object_ids": np.array([[o.semantic_class_id, o.instance_id] for o in self.objects], dtype=np.int64).reshape(-1, 2),
        }
        for i, o in enumerate(self.objects):
            arrays[f"o{i}_vertices"] = o.vertices
            arrays[f"o{i}_triangles"] = o.triangles
            arrays[f"o{i}_uvs"] = o.uvs
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # uncompressed zip entries carry a fixed date: deterministic
        write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load_npz(cls, path: str | Path, name: str = "") -> "Scene":
        with np.load(path) as data:
            lens = data["camera_lens"]
            seed, width, height, start, end, fps = (int(v) for v in data["scene_ints"])
            camera = CameraTrack(
                frames=data["camera_frames"], positions=data["camera_positions"], rotations=data["camera_rotations"],
                focal_length_mm=float(lens[0]), sensor_width_mm=float(lens[1]), clip_start=float(lens[2]), clip_end=float(lens[3]),
            )
            objects = tuple(
                SceneObject(
                    name=str(n), kind=str(k), semantic_class_id=int(ids[0]), instance_id=int(ids[1]),
                    vertices=data[f"o{i}_vertices"], triangles=data[f"o{i}_triangles"], uvs=data[f"o{i}_uvs"],
                )
                for i, (n, k, ids) in enumerate(zip(data["object_names"], data["object_kinds"], data["object_ids"]))
            )
        return cls(name=name, seed=seed, objects=objects, camera=camera, width=width, height=height,
                   frame_start=start, frame_end=end, fps=fps)


def object_rng(scene_seed: int, stable_name: str) -> np.random.Generator:
    """The one source of randomness for a generator: derived from (scene seed, the thing's stable name).

    Seed 0 is a seed. Changing one object's name or parameters moves nothing else.
    """
    digest = hashlib.sha256(f"{int(scene_seed)}/{stable_name}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))
