"""Exact data passes from Cycles, headless: depth, camera-space normal, flow, instance and class ids, UV.

:class:`PassRenderer` builds the Blender scene once (:func:`passes.blender_scene.instantiate_scene`)
and configures Cycles for fast, exact data (CONDITIONING.md): CPU, 1 sample at the pixel centre
(filter width 0.01), no adaptive sampling, no denoising, no bounces, no lights, motion blur off
(it disables the vector pass), a fixed thread count, and one material override for every object:
an emission shader (not a light) whose colour is the shading normal (Geometry > Normal, what the Normal pass
holds) transformed into Blender camera space in the shader. Emission is about three times cheaper
to shade than the default BSDF, and the Combined pass then carries the camera-space normal
exactly (checked against the Normal pass rotated by the camera: equal to 1e-7). A scene of
:data:`SHARED_MESH_MIN_TRIANGLES` or more gives its joined mesh a second, unseen user so that
Cycles keeps the mesh's BVH between frames (:func:`share_joined_mesh`). Each :meth:`PassRenderer.render` writes an
uncompressed multilayer EXR to a temporary file (``/dev/shm`` when there is one), reads it back with
``OpenEXR`` and converts Blender's conventions to :class:`passes.frame_passes.FramePasses`:

- Depth: ``Z >= 1e9`` or non-finite -> ``inf``.
- Normal: Combined RGB = the camera-space normal (+X right, +Y up, +Z towards the viewer; Cycles'
  own camera space has +Z forward, so the shader flips Z); 0 on background. Flat shading gives
  unit normals at one sample (no pixel filtering), so no renormalisation is needed.
- Vector (pixels, +y up): ``XY = p(t-1) - p(t)``, ``ZW = p(t) - p(t+1)``; in image coordinates
  (y down) ``flow_forward = (-Z, +W)`` and ``flow_backward = (X, -Y)``. Where Blender's vector
  pass misses the camera's motion (orthographic cameras, a lens that changes between frames),
  the flow is the depth pass reprojected instead (:mod:`passes.reprojected_flow`).
- The ``greybox_instance`` AOV (the joined mesh's face attribute, an exact small integer in
  float32) -> ``instance_id``; ``class_id`` through an instance -> class lookup table.
- UV: (U, V, A) as Blender writes it (background 0).

Blender's own files carry render times in their headers: they are read and deleted here, never kept.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from passes.blender_compat import canonical_channel_name, check_running_blender, new_node_material, set_multilayer_exr
from passes.frame_passes import FramePasses
from scenes.scene_data import Scene

BACKGROUND_Z = 1e9  # Cycles writes about 1e10 where nothing is hit

# Multi-part EXR part names Blender 5.0 writes for one view layer called "ViewLayer".
_PART_DEPTH = "ViewLayer.Depth"
_PART_COMBINED = "ViewLayer.Combined"  # RGB = camera-space normal (the material override)
_PART_VECTOR = "ViewLayer.Vector"
_PART_INDEX = "ViewLayer.greybox_instance"  # the AOV (same name on 4.2, 4.5 and 5.0)
_PART_UV = "ViewLayer.UV"


_SCRATCH_PREFIX = "greybox-passes-"


def _scratch_dir() -> str:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return str(shm)
    return tempfile.gettempdir()


def _remove_orphaned_scratch(folder: str) -> None:
    """Delete temporary EXRs left by renderer processes that died mid-render (their pid is gone):
    in /dev/shm they would hold memory until reboot. Files of live processes are left alone."""
    for path in Path(folder).glob(f"{_SCRATCH_PREFIX}*.exr"):
        try:
            pid = int(path.name[len(_SCRATCH_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            try:
                path.unlink()
            except OSError:
                pass
        except OSError:
            pass  # alive (maybe another user's): keep


@contextlib.contextmanager
def _quiet_stdout():
    """Send file descriptor 1 to /dev/null for the duration (Blender's C code prints there)."""
    try:
        fd = sys.stdout.fileno() if hasattr(sys.stdout, "fileno") else 1
    except (OSError, ValueError):
        fd = 1
    sys.stdout.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def configure_data_render(bscene, threads: int) -> None:
    """Cycles on the CPU for exact data passes (see the module docstring)."""
    render = bscene.render
    render.engine = "CYCLES"
    cycles = bscene.cycles
    cycles.device = "CPU"
    cycles.samples = 1
    cycles.use_adaptive_sampling = False
    cycles.use_denoising = False
    cycles.filter_width = 0.01
    cycles.pixel_filter_type = "BOX"
    cycles.seed = 0
    cycles.use_animated_seed = False
    cycles.max_bounces = 0
    cycles.diffuse_bounces = 0
    cycles.glossy_bounces = 0
    cycles.transmission_bounces = 0
    cycles.volume_bounces = 0
    cycles.transparent_max_bounces = 0
    cycles.caustics_reflective = False
    cycles.caustics_refractive = False
    cycles.use_light_tree = False
    render.use_motion_blur = False
    render.threads_mode = "FIXED"
    render.threads = int(threads)
    render.use_persistent_data = True  # keep the BVH between frames: only the camera moves
    render.use_compositing = False
    render.use_sequencer = False
    render.film_transparent = True
    render.use_stamp = False
    render.use_file_extension = False
    for attr in dir(render):
        if attr.startswith("use_stamp_"):
            try:
                setattr(render, attr, False)
            except (AttributeError, TypeError):
                pass

    settings = render.image_settings
    set_multilayer_exr(settings)
    settings.color_depth = "32"
    settings.exr_codec = "NONE"

    layer = bscene.view_layers[0]
    layer.use_pass_combined = True  # written regardless; it carries the normal
    layer.use_pass_z = True
    layer.use_pass_normal = False
    layer.use_pass_vector = True
    layer.use_pass_object_index = False
    layer.use_pass_uv = True
    layer.use_pass_material_index = False
    layer.samples = 0
    import bpy

    from passes.blender_scene import INSTANCE_ATTRIBUTE

    if INSTANCE_ATTRIBUTE not in layer.aovs:
        aov = layer.aovs.add()
        aov.name = INSTANCE_ATTRIBUTE
        aov.type = "VALUE"
    layer.material_override = normal_emission_material(bpy.data)


NORMAL_MATERIAL_NAME = "greybox_camera_normal"


def normal_emission_material(data):
    """A material that emits its shading normal in Blender camera space (Combined RGB = n_cam)."""
    mat = new_node_material(data, NORMAL_MATERIAL_NAME)
    tree = mat.node_tree
    tree.nodes.clear()
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    output.target = "ALL"
    geometry = tree.nodes.new("ShaderNodeNewGeometry")
    to_camera = tree.nodes.new("ShaderNodeVectorTransform")
    to_camera.vector_type = "NORMAL"
    to_camera.convert_from = "WORLD"
    to_camera.convert_to = "CAMERA"
    flip_z = tree.nodes.new("ShaderNodeVectorMath")  # Cycles' camera space looks down +Z; Blender's down -Z
    flip_z.operation = "MULTIPLY"
    flip_z.inputs[1].default_value = (1.0, 1.0, -1.0)
    emission = tree.nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    # Not a light: with no bounces nothing samples lights, so the passes are the same bits, but an
    # emissive mesh is otherwise a mesh light whose distribution Cycles rebuilds over every
    # triangle at each frame (0.05 s a frame at a million triangles).
    mat.cycles.emission_sampling = "NONE"
    tree.links.new(geometry.outputs["Normal"], to_camera.inputs["Vector"])
    tree.links.new(to_camera.outputs["Vector"], flip_z.inputs[0])
    tree.links.new(flip_z.outputs["Vector"], emission.inputs["Color"])
    tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    from passes.blender_scene import INSTANCE_ATTRIBUTE

    instance = tree.nodes.new("ShaderNodeAttribute")  # the joined mesh's per-face instance id
    instance.attribute_type = "GEOMETRY"
    instance.attribute_name = INSTANCE_ATTRIBUTE
    aov = tree.nodes.new("ShaderNodeOutputAOV")
    aov.aov_name = INSTANCE_ATTRIBUTE
    tree.links.new(instance.outputs["Fac"], aov.inputs["Value"])
    return mat


SHARED_MESH_MIN_TRIANGLES = 100_000  # from here on the joined mesh gets a second user (below)
SHARED_MESH_NAME = "greybox_scene_bvh_user"


def share_joined_mesh(bpy, bscene) -> None:
    """Give the joined mesh a second user, an object no camera ray sees, so Cycles keeps its BVH between frames.

    With the vector pass on and the camera animated, every frame is a scene update for Cycles in
    which each object's motion (the transforms at the neighbouring frames) is synced again, and
    the object is tagged as moved. A mesh used by one object has its transform baked into its
    vertices, so Cycles rebuilds its whole BVH at each frame: 0.35 s at a million triangles on
    two threads, even re-rendering the same frame (measured: no rebuild with the vector pass off
    or the camera still). A mesh with two users is instanced instead: only the top level
    (two entries) is rebuilt. Depth, flow, ids and UV are the same bits; the normal is
    renormalised through the (identity) object transform, which moves some of its components by
    one float32 ulp. So only scenes of :data:`SHARED_MESH_MIN_TRIANGLES` or more get it (no
    bundled template comes near: their bytes stay as they were). The second user is invisible
    to camera rays, the only rays traced (no bounces, no lights).
    """
    from passes.blender_scene import JOINED_NAME

    joined = bpy.data.objects.get(JOINED_NAME)
    if joined is None:
        return
    second = bpy.data.objects.new(SHARED_MESH_NAME, joined.data)
    second.visible_camera = False
    bscene.collection.objects.link(second)


_generation = 0  # bumped by every PassRenderer: Blender holds one scene per process


class PassRenderer:
    """Renders :class:`FramePasses` for frames of one scene; build once, render many (a warm worker keeps one).

    ``threads`` is Cycles' fixed thread count. ``timings`` holds the seconds of each step of the
    last :meth:`render` call ("render", "exr_read", "convert") for the benchmark.
    Blender has one scene per process: building a second PassRenderer retires the first (its
    :meth:`render` then raises instead of touching freed Blender data).
    """

    def __init__(self, scene: Scene, threads: int = 2):
        import bpy

        from passes.blender_scene import instantiate_scene

        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        check_running_blender()  # 4.2, 4.5 or 5.0, else a clear error before any Blender data is touched
        global _generation

        self.scene = scene
        self.threads = int(threads)
        _generation += 1
        self._generation = _generation
        instantiate_scene(scene, joined=True)
        self._bscene = bpy.context.scene
        if sum(len(o.triangles) for o in scene.objects) >= SHARED_MESH_MIN_TRIANGLES:
            share_joined_mesh(bpy, self._bscene)
        configure_data_render(self._bscene, self.threads)
        self._bpy = bpy
        scratch = _scratch_dir()
        _remove_orphaned_scratch(scratch)
        self._tmp_path = os.path.join(scratch, f"{_SCRATCH_PREFIX}{os.getpid()}-{id(self):x}.exr")
        self._bscene.render.filepath = self._tmp_path
        max_id = max((o.instance_id for o in scene.objects), default=0)
        lut = np.zeros(max_id + 1, dtype=np.uint32)
        for o in scene.objects:
            lut[o.instance_id] = o.semantic_class_id
        self._class_lut = lut
        self.timings: dict[str, float] = {}

    def render(self, frame: int) -> FramePasses:
        """Render ``frame`` (inside the scene's frame range) and return its passes."""
        return self.read_rendered(self.render_to_file(frame), frame)

    def render_to_file(self, frame: int) -> str:
        """Render ``frame`` with Blender and return the path of its multilayer EXR in the scratch
        folder (a name of its own, so the next render does not overwrite it). Pass the path to
        :meth:`read_rendered`, on any thread, which reads and deletes it."""
        if self._generation != _generation:
            raise RuntimeError("this PassRenderer was retired: a newer one replaced the Blender scene in this process")
        if not (self.scene.frame_start <= frame <= self.scene.frame_end):
            raise ValueError(f"frame {frame} is outside {self.scene.frame_start}..{self.scene.frame_end}")
        t0 = time.perf_counter()
        self._bscene.frame_set(int(frame))
        with _quiet_stdout():  # Blender prints "Saved: <temp file>" on the C stdout
            self._bpy.ops.render.render(write_still=True)
        path = f"{self._tmp_path[:-4]}-{int(frame)}.exr"
        os.replace(self._tmp_path, path)
        self.timings = {"render": time.perf_counter() - t0}
        return path

    def read_rendered(self, path: str, frame: int) -> FramePasses:
        """Blender's EXR at ``path`` (from :meth:`render_to_file`) -> FramePasses; deletes the file."""
        t1 = time.perf_counter()
        try:
            parts = read_blender_exr(path)
        finally:
            discard_rendered(path)
        t2 = time.perf_counter()
        passes = convert_blender_passes(parts, frame, self._class_lut)
        _reproject_where_needed(passes, self.scene.camera, frame)
        self.timings.update({"exr_read": t2 - t1, "convert": time.perf_counter() - t2})
        return passes

    def close(self) -> None:
        try:
            os.unlink(self._tmp_path)
        except FileNotFoundError:
            pass


def _reproject_where_needed(passes: FramePasses, track, frame: int) -> None:
    """Replace the vector pass's flow by the reprojected one where Blender's is wrong
    (:mod:`passes.reprojected_flow`: orthographic cameras, a lens that changes between frames)."""
    from passes.reprojected_flow import needs_reprojection, reprojected_flow

    for other, flow in ((frame + 1, passes.flow_forward), (frame - 1, passes.flow_backward)):
        if needs_reprojection(track, frame, other):
            flow[...] = reprojected_flow(passes.depth, track, frame, other)  # into the planar buffer


def discard_rendered(path: str) -> None:
    """Delete a scratch EXR from :meth:`PassRenderer.render_to_file` that will not be read."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_blender_exr(path: str) -> dict[str, np.ndarray]:
    """Blender's multi-part multilayer EXR -> {"ViewLayer.Depth.Z": (H, W) float32, ...}, every channel of every part.

    Blender 5.0 writes one part per pass (``ViewLayer.Depth``, ``ViewLayer.Combined``, ...), each
    channel named in full (``ViewLayer.Combined.R``); 4.x one part with the same full names, but
    ``IndexOB`` for ``Object Index`` (names come back in 5.0's spelling,
    :func:`passes.blender_compat.canonical_channel_name`); row 0 is the top of the image.
    """
    import OpenEXR

    channels = {}
    with OpenEXR.File(path, separate_channels=True) as exr:
        for part in exr.parts:
            for name, channel in part.channels.items():
                channels[canonical_channel_name(name)] = channel.pixels
    return channels


def _channel(channels: dict, part: str, component: str) -> np.ndarray:
    """Take (remove) one channel from ``channels``, so its memory goes as soon as it is converted."""
    key = f"{part}.{component}"
    try:
        return channels.pop(key)
    except KeyError:
        raise RuntimeError(f"Blender's EXR has no channel {key!r}; it has {sorted(channels)}") from None


def convert_blender_passes(channels: dict[str, np.ndarray], frame: int, class_lut: np.ndarray) -> FramePasses:
    """Blender's pass channels -> :class:`FramePasses` in greybox's conventions (see the module docstring).

    ``class_lut[instance_id]`` is the class id of each instance (0 for 0). Consumes ``channels``
    (each channel is removed once converted, to keep the peak memory down at high resolutions).
    """
    z = _channel(channels, _PART_DEPTH, "Z")
    index = _channel(channels, _PART_INDEX, "X")
    instance_id = index.astype(np.uint32)  # exact small integers in float32
    background = instance_id == 0
    np.logical_or(background, ~(z < BACKGROUND_Z), out=background)  # also catches NaN

    depth = z.astype(np.float32, copy=True)
    depth[background] = np.inf

    # The vector fields are stored planar, (C, H, W), and handed out as (H, W, C) views: filling
    # them and writing them back out channel by channel (our EXR) then needs no interleaving.
    h, w = z.shape
    normal_planar = np.empty((3, h, w), dtype=np.float32)
    for c, name in enumerate("RGB"):
        np.copyto(normal_planar[c], _channel(channels, _PART_COMBINED, name))
    normal_planar[:, background] = 0.0
    normal = np.moveaxis(normal_planar, 0, -1)

    flow_planar = np.empty((4, h, w), dtype=np.float32)
    np.negative(_channel(channels, _PART_VECTOR, "Z"), out=flow_planar[0])
    np.copyto(flow_planar[1], _channel(channels, _PART_VECTOR, "W"))
    np.copyto(flow_planar[2], _channel(channels, _PART_VECTOR, "X"))
    np.negative(_channel(channels, _PART_VECTOR, "Y"), out=flow_planar[3])
    flow_planar[:, background] = 0.0
    flow_forward = np.moveaxis(flow_planar[0:2], 0, -1)
    flow_backward = np.moveaxis(flow_planar[2:4], 0, -1)

    if int(instance_id.max(initial=0)) >= len(class_lut):
        raise RuntimeError(f"object index {int(instance_id.max())} has no scene object")
    instance_id[background] = 0
    class_id = class_lut[instance_id]

    uv_planar = np.empty((3, h, w), dtype=np.float32)
    for c, name in enumerate("UVA"):
        np.copyto(uv_planar[c], _channel(channels, _PART_UV, name))
    uv = np.moveaxis(uv_planar, 0, -1)

    return FramePasses(
        frame=int(frame), depth=depth, normal=normal, flow_forward=flow_forward, flow_backward=flow_backward,
        instance_id=instance_id, class_id=class_id, uv=uv,
    )
