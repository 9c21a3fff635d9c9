"""Reference numpy rasteriser: a static scene's exact passes for one frame, one sample per pixel centre.

An implementation of the passes independent of Blender (``passes.blender_render``): the
consistency tests and benchmarks build their sequences with it, and
``tests/test_consistency_scenes.py`` checks it against Blender's passes of the same scene. Same
conventions as :mod:`passes.frame_passes`: depth, camera-space normal, flow both ways (each pixel's
world point projected with the neighbouring frames' cameras: the geometry is static, only the
camera moves), instance and class ids, UV with coverage. Triangles are clipped against the near
plane here (Sutherland-Hodgman on each triangle) and rasterised with
:func:`stylize.triangle_raster.rasterise_triangles` (z-buffer, perspective-correct barycentrics).
"""

from __future__ import annotations

import numpy as np

from passes.frame_passes import FramePasses
from scenes.scene_data import Scene
from scenes.scene_data import face_normals
from stylize.triangle_raster import interpolate_corners, rasterise_triangles


def clip_triangle_near(corners_cam: np.ndarray, extra: np.ndarray, near: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Clip one triangle (3, 3 OpenCV camera coords; extra (3, C) attributes) against z >= near;
    returns the triangles (corners, attributes) of the clipped polygon, a fan."""
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
    """The exact passes of ``frame`` (see the module docstring); ``width`` / ``height`` default to the scene's."""
    width = int(width or scene.width)
    height = int(height or scene.height)
    cam = scene.camera
    w2c = cam.world_to_camera_opencv(frame)
    k = cam.intrinsics(frame, width, height)
    corners_px, corners_z, corner_attrs, tri_meta = [], [], [], []
    for obj in scene.objects:
        normals = face_normals(obj.vertices, obj.triangles)
        world = obj.vertices[obj.triangles]  # (T, 3, 3)
        cam_pts = world @ w2c[:3, :3].T + w2c[:3, 3]
        for t in range(len(obj.triangles)):
            z = cam_pts[t, :, 2]
            if (z < cam.clip_start).all():
                continue
            attrs = np.concatenate([world[t], obj.uvs[t].astype(np.float64)], axis=1)  # (3, 5)
            pieces = [(cam_pts[t], attrs)] if (z >= cam.clip_start).all() else clip_triangle_near(cam_pts[t], attrs, cam.clip_start)
            for pts, ex in pieces:
                px = pts[:, :2] / pts[:, 2:3] * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]
                corners_px.append(px)
                corners_z.append(pts[:, 2])
                corner_attrs.append(ex)
                tri_meta.append((obj.instance_id, obj.semantic_class_id, normals[t]))
    if corners_px:
        tri_index, bary = rasterise_triangles(np.stack(corners_px), width, height, np.stack(corners_z))
        attrs = interpolate_corners(np.stack(corner_attrs), tri_index, bary)
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
