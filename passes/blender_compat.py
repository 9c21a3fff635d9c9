"""What differs between the Blender releases greybox runs on (4.2 LTS, 4.5 LTS and 5.0), in one place.

Every call site that touches an API which changed between those releases goes through a function
here; everything else in ``passes/blender_scene.py`` and ``passes/blender_render.py`` is plain
bpy that all three accept. Differences are detected by the API's presence (``hasattr``), not by
version numbers, so a patch release that back-ports an API takes the newer path. Checked against
the wheels bpy 4.2.23, 4.5.15 and 5.0.1:

| what | 4.2 | 4.5 | 5.0 |
| --- | --- | --- | --- |
| animation | ``Action.fcurves`` (no slots) | slots, layers, strips and channelbags; ``Action.fcurves`` still runs, but on an action assigned before it had a slot the object's ``action_slot`` stays empty and nothing moves | slots only (``Action.fcurves`` is gone); ``anim_utils.action_ensure_channelbag_for_slot`` |
| multilayer EXR | ``file_format = "OPEN_EXR_MULTILAYER"`` | same | ``media_type = "MULTI_LAYER_IMAGE"`` |
| EXR layout | one part, ``ViewLayer.IndexOB.X`` | one part, ``ViewLayer.IndexOB.X`` | one part per pass, ``ViewLayer.Object Index.X`` |
| a new material's ``node_tree`` | ``None`` until ``use_nodes = True`` | same | always there (``use_nodes`` is deprecated) |

Importers (model import, ``[[imports]]``): 4.2's USD importer ignores ``metersPerUnit``
(:func:`usd_import_applies_meters_per_unit`); 4.2 cannot open a .blend saved by 5.0, 4.5 can
(:func:`check_blend_readable`).

Functions that do not import bpy (:func:`installed_blender_version`, :func:`check_supported`,
:func:`canonical_channel_name`, :func:`blend_file_version`) are safe on the driver.
"""

from __future__ import annotations

import sys
from pathlib import Path

from greybox.errors import GreyboxError, InputError

# The release series greybox is tested on, (major, minor); every patch release of each is accepted.
SUPPORTED_SERIES: tuple[tuple[int, int], ...] = ((4, 2), (4, 5), (5, 0))
# pyproject.toml's requirement spells the same set; a test checks that the two agree.
BPY_REQUIREMENT = "bpy>=4.2,!=4.3.*,!=4.4.*,<5.1"


def _series_text() -> str:
    return ", ".join(f"{major}.{minor}.x" for major, minor in SUPPORTED_SERIES)


class UnsupportedBlenderError(InputError):
    """This Blender is not one greybox supports (exit 2, never retried): the fix is another Blender."""


class BlenderVersionMismatchError(GreyboxError):
    """A worker's Blender is not the one the task's store keys were made for (it must not commit)."""


def parse_version(text: str) -> tuple[int, int, int]:
    """'4.2.23', '4.2.23 LTS' or '5.0.1' -> (4, 2, 23); missing components are 0."""
    head = str(text).strip().split()[0] if str(text).strip() else ""
    parts = head.split(".")
    numbers = []
    for part in parts[:3]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        numbers.append(int(digits))
    if not numbers:
        raise ValueError(f"{text!r} is not a Blender version")
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]


def format_version(version: tuple[int, ...]) -> str:
    """(4, 2, 23) -> '4.2.23': the spelling greybox records in manifests and store keys."""
    return ".".join(str(int(v)) for v in tuple(version)[:3])


def check_supported(version: str | tuple[int, ...], where: str = "this Blender") -> str:
    """Return ``version`` as 'X.Y.Z' when it is a supported release, else raise :class:`UnsupportedBlenderError`."""
    numbers = parse_version(version) if isinstance(version, str) else tuple(int(v) for v in version)[:3]
    if tuple(numbers[:2]) not in SUPPORTED_SERIES:
        raise UnsupportedBlenderError(
            f"{where} is Blender {format_version(numbers)}; greybox runs on Blender {_series_text()} "
            f"(the LTS releases and the current one): install one of those (pip install '{BPY_REQUIREMENT}', "
            "or run blender -b -P passes/blender_entry.py with such a Blender)"
        )
    return format_version(numbers)


def installed_blender_version() -> str:
    """The Blender version of this Python's bpy, as 'X.Y.Z', without importing bpy (the driver uses it
    for store keys): the installed ``bpy`` distribution's version, or, inside Blender's own Python
    (which has no distribution), the running ``bpy.app.version``. Raises :class:`UnsupportedBlenderError`
    when there is no bpy or it is not a supported release."""
    if "bpy" in sys.modules and hasattr(sys.modules["bpy"], "app"):
        return check_supported(tuple(sys.modules["bpy"].app.version))
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("bpy")
    except PackageNotFoundError:
        raise UnsupportedBlenderError(
            "bpy is not installed in this Python: greybox keys the passes by the Blender version the workers run, "
            f"so the driver needs the same bpy wheel as the workers (pip install '{BPY_REQUIREMENT}', "
            "the same release on every node)"
        ) from None
    return check_supported(text, where="the installed bpy")


def running_blender_version() -> str:
    """The version of the Blender (bpy) this process renders with, as 'X.Y.Z'; imports bpy (workers only)."""
    import bpy

    return format_version(tuple(bpy.app.version))


def check_running_blender(expected: str | None = None) -> str:
    """The running Blender's 'X.Y.Z', after checking it is supported and, when ``expected`` is given,
    that it is the version the caller's store keys were made for (else :class:`BlenderVersionMismatchError`)."""
    running = check_supported(running_blender_version())
    if expected is not None and running != expected:
        import socket

        raise BlenderVersionMismatchError(
            f"this worker ({socket.gethostname()}) runs Blender {running}, but the job's passes are keyed for Blender "
            f"{expected} (the bpy installed where the job was started); it will not render or store them. "
            f"Install bpy=={expected} on every node, or start the job from a Python with bpy=={running}"
        )
    return running


# -- animation -----------------------------------------------------------------------------------

def action_fcurves(bpy, id_data, action_name: str, slot_name: str):
    """Assign a new action to ``id_data`` and return the collection to create its F-curves in
    (``.new(data_path, index=i)``), so the keys animate ``id_data`` on every supported release.

    5.0 and 4.4+: a slot for the ID, a layer with one keyframe strip and that strip's channelbag for
    the slot (what 5.0's ``anim_utils.action_ensure_channelbag_for_slot`` does). 4.2: the action's
    own F-curves. On 4.5 ``Action.fcurves`` exists too and runs without error, but the object's
    ``action_slot`` stays empty, so the camera would stand still (a test checks that it moves).
    """
    anim = id_data.animation_data_create()
    action = bpy.data.actions.new(action_name)
    if not hasattr(action, "slots"):  # 4.2: actions without slots
        anim.action = action
        return action.fcurves
    slot = action.slots.new(id_type=id_data.id_type, name=slot_name)
    anim.action = action
    anim.action_slot = slot
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True).fcurves


# -- materials -----------------------------------------------------------------------------------

def new_node_material(data, name: str):
    """The material ``name`` (made when missing) with a shader node tree: 5.0 gives every material
    one; 4.x only once ``use_nodes`` is set (deprecated in 5.0, so set only where needed)."""
    mat = data.materials.get(name) or data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    return mat


# -- render output -------------------------------------------------------------------------------

def set_multilayer_exr(image_settings) -> None:
    """Render output = multilayer OpenEXR (5.0: ``media_type``; 4.x: the ``OPEN_EXR_MULTILAYER`` format)."""
    if hasattr(image_settings, "media_type"):
        image_settings.media_type = "MULTI_LAYER_IMAGE"
    else:
        image_settings.file_format = "OPEN_EXR_MULTILAYER"


# Pass names in Blender's EXR that changed in 5.0, old -> 5.0 spelling.
_PASS_RENAMES = {"IndexOB": "Object Index", "IndexMA": "Material Index"}


def canonical_channel_name(name: str) -> str:
    """A channel name of Blender's multilayer EXR in 5.0's spelling: 'ViewLayer.IndexOB.X' ->
    'ViewLayer.Object Index.X'; every other name is returned unchanged."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[-2] in _PASS_RENAMES:
        parts[-2] = _PASS_RENAMES[parts[-2]]
        return ".".join(parts)
    return name


# -- importers -----------------------------------------------------------------------------------

def usd_import_applies_meters_per_unit(bpy) -> bool:
    """Whether this Blender's USD importer scales by the stage's ``metersPerUnit`` (4.5 and 5.0, the
    ``apply_unit_conversion_scale`` option, on by default). 4.2's importer ignores it: a prim 100
    units wide in a ``metersPerUnit = 0.01`` stage arrives 100 m wide, so the caller must scale."""
    return "apply_unit_conversion_scale" in bpy.ops.wm.usd_import.get_rna_type().properties.keys()


# -- .blend files --------------------------------------------------------------------------------

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


def blend_file_version(path: str | Path) -> tuple[int, int]:
    """(major, minor) of the Blender that saved a .blend, from its header (no bpy; zstd- and
    gzip-compressed files too). Raises :class:`InputError` when the file is not a .blend.

    Headers: ``BLENDER`` + pointer size (``_``/``-``) + endianness (``v``/``V``) + 3 digits
    (``402`` = 4.2) up to 4.x; 5.0's format: ``BLENDER`` + 2-digit header size + ``-`` +
    2-digit format version + ``v`` + 4 digits (``0500`` = 5.0).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err})") from None
    if head.startswith(_ZSTD_MAGIC):
        import zstandard

        with open(path, "rb") as handle:
            head = zstandard.ZstdDecompressor().stream_reader(handle).read(64)
    elif head.startswith(_GZIP_MAGIC):
        import gzip

        with gzip.open(path, "rb") as handle:
            head = handle.read(64)
    if not head.startswith(b"BLENDER"):
        raise InputError(f"{path}: not a .blend file (its header does not start with BLENDER)")
    rest = head[7:].decode("latin-1")
    if len(rest) >= 5 and rest[0] in "_-" and rest[1] in "vV" and rest[2:5].isdigit():
        digits = rest[2:5]
        return int(digits[0]), int(digits[1:])
    if len(rest) >= 10 and rest[:2].isdigit() and rest[2] == "-" and rest[5] in "vV" and rest[6:10].isdigit():
        digits = rest[6:10]
        return int(digits[:2]), int(digits[2:])
    raise InputError(f"{path}: a .blend header greybox does not know ({head[:17]!r})")


# The .blend format versions each release opens: 5.0 changed the file format; 4.5 LTS reads it,
# 4.2 LTS reports "not a blend file". Files saved by an older release open everywhere.
_READS_50_FORMAT = (4, 5)


def check_blend_readable(path: str | Path, running: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (major, minor) that saved ``path``, after checking that the running Blender (or
    ``running``) can open it; raises :class:`InputError` naming both releases and the way out."""
    saved = blend_file_version(path)
    if running is None:
        running = parse_version(running_blender_version())[:2]
    running = tuple(running)[:2]
    if saved >= (5, 0) and running < _READS_50_FORMAT:
        raise InputError(
            f"{path}: saved by Blender {saved[0]}.{saved[1]}, whose .blend format Blender "
            f"{running[0]}.{running[1]} cannot open; save it from Blender 4.5 LTS (which reads and writes the older "
            "format), or export it (glTF, USD, FBX), or render with Blender 4.5 or 5.0"
        )
    return saved


# -- process exit --------------------------------------------------------------------------------

_EXIT_GUARD_REGISTERED = False


def keep_exit_clean() -> None:
    """Make sure this process can exit after using Blender's glTF add-on (call before using it).

    bpy 4.2 shuts Blender down (``WM_exit``) when Python frees the ``bpy`` module. The glTF
    add-on's exporter modules put annotations such as ``typing.List[Keyframe]`` into ``typing``'s
    caches, which keep its classes (and through their modules, ``bpy``) alive past that point; the
    process then crashes at exit (SIGSEGV in ``bpy_class_free``, after Python is gone: exit status
    139, after every file was written). Clearing ``typing``'s caches at exit lets the module go in
    time. 5.0 exits cleanly without it (4.5 was not checked); it is harmless there, so it is not tied
    to a release. Registered once per process.
    """
    global _EXIT_GUARD_REGISTERED
    if _EXIT_GUARD_REGISTERED:
        return
    import atexit

    def _release_typing_caches() -> None:
        import gc
        import typing

        for clear in getattr(typing, "_cleanups", ()):
            clear()
        gc.collect()

    atexit.register(_release_typing_caches)
    _EXIT_GUARD_REGISTERED = True
