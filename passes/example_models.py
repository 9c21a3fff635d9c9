"""An example project with models greybox builds itself, through Blender's own glTF exporter:
``models/bookshelf.glb`` (a shelf unit with books, imported with ``[[imports]]`` and class rules),
``assets/armchair.glb`` (placed as furniture by the armchair's rules at its real size) and
``living_with_models.toml`` (the room generator, both models, a slow orbit).

    python -m passes.example_models DIR      # then: greybox render DIR/living_with_models.toml --out OUT

Needs bpy; replaces Blender's current data. Every file goes into ``DIR`` (made if missing); a file
already there is refused rather than overwritten.
"""

from __future__ import annotations

import sys
from pathlib import Path

TEMPLATE_NAME = "living_with_models.toml"
BOOKSHELF = "models/bookshelf.glb"
ARMCHAIR = "assets/armchair.glb"

TEMPLATE = f"""schema_version = 1
name = "living_with_models"
description = "The room generator with a bookshelf imported from a glTF file and an armchair asset placed as furniture."
seed = 4

[generator]
kind = "room"

[generator.room]
width = 5.0
depth = 4.0
height = 2.6
doors = [{{ wall = "south", offset = 1.0, width = 0.9, height = 2.1 }}]
windows = [{{ wall = "east", offset = 2.0, width = 1.4, height = 1.2, sill = 0.9 }}]
furniture = [
  {{ kind = "rug", size = [2.0, 1.4, 0.01] }},
  {{ kind = "coffee_table" }},
  {{ kind = "asset", file = "{ARMCHAIR}", class = "armchair" }},
]

[[imports]]
name = "bookshelf"
file = "{BOOKSHELF}"
position = [2.0, 3.55, 0.0]          # against the north wall (the room spans 0..5 x 0..4)
class = "shelf"                      # the default for its objects
classes = [{{ object = "/Bookshelf/Book*", class = "book" }}]

[camera]
focal_length = 20.0

[camera.path]
kind = "orbit"
center = [2.5, 2.0, 0.6]
radius = 1.0
height = 1.6

[render]
resolution = [512, 512]
frame_start = 1
frame_end = 24
fps = 24

[passes]
control = ["depth", "normal", "seg", "lines"]

[style]
stylizer = "npr"
"""


def _box(bpy, name: str, lo, hi, parent=None):
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    vertices = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0), (x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)]
    faces = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices, [], faces)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    if parent is not None:
        obj.parent = parent
    return obj


def build_bookshelf(bpy) -> None:
    """A shelf unit 1.2 wide, 0.35 deep, 1.8 tall (sides, back, four boards) with six books, in an
    empty scene: the empty ``Bookshelf`` holds ``Frame_*`` and ``Book_*`` (node paths
    ``/Bookshelf/Frame_Left``, ``/Bookshelf/Book_1``, ...)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    root = bpy.data.objects.new("Bookshelf", None)
    bpy.context.scene.collection.objects.link(root)
    _box(bpy, "Frame_Left", (-0.6, -0.175, 0.0), (-0.58, 0.175, 1.8), root)
    _box(bpy, "Frame_Right", (0.58, -0.175, 0.0), (0.6, 0.175, 1.8), root)
    _box(bpy, "Frame_Back", (-0.58, 0.155, 0.0), (0.58, 0.175, 1.8), root)
    for k, z in enumerate((0.0, 0.6, 1.2, 1.78)):
        _box(bpy, f"Frame_Board_{k}", (-0.58, -0.175, z), (0.58, 0.155, z + 0.02), root)
    for k in range(6):
        x0 = -0.5 + 0.1 * k
        _box(bpy, f"Book_{k + 1}", (x0, -0.1, 0.62), (x0 + 0.06, 0.12, 0.62 + 0.2 + 0.02 * (k % 3)), root)


def build_armchair(bpy) -> None:
    """An armchair 0.8 wide, 0.8 deep, 0.85 tall, its seat open to the front (-y, Blender's front view)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    root = bpy.data.objects.new("Armchair", None)
    bpy.context.scene.collection.objects.link(root)
    _box(bpy, "Seat", (-0.3, -0.4, 0.2), (0.3, 0.3, 0.42), root)
    _box(bpy, "Back", (-0.3, 0.3, 0.2), (0.3, 0.4, 0.85), root)
    _box(bpy, "Arm_Left", (-0.4, -0.4, 0.0), (-0.3, 0.4, 0.62), root)
    _box(bpy, "Arm_Right", (0.3, -0.4, 0.0), (0.4, 0.4, 0.62), root)
    _box(bpy, "Base", (-0.3, -0.38, 0.0), (0.3, 0.38, 0.2), root)


def write_example_project(folder: str | Path) -> Path:
    """Write the example (see the module docstring) into ``folder``; the template's path."""
    import bpy

    from passes.blender_compat import keep_exit_clean
    from passes.blender_render import _quiet_stdout

    # 1. Check inputs: nothing there is overwritten
    folder = Path(folder)
    targets = [folder / BOOKSHELF, folder / ARMCHAIR, folder / TEMPLATE_NAME]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise FileExistsError(f"already there (remove them or choose another folder): {', '.join(existing)}")

    # 2. The models, through Blender's glTF exporter
    keep_exit_clean()  # bpy 4.2 crashes at exit after the glTF add-on otherwise
    for build, target in ((build_bookshelf, targets[0]), (build_armchair, targets[1])):
        target.parent.mkdir(parents=True, exist_ok=True)
        with _quiet_stdout():
            build(bpy)
            bpy.ops.export_scene.gltf(filepath=str(target), export_format="GLB", export_yup=True)

    # 3. The template
    targets[2].write_text(TEMPLATE, encoding="utf-8")
    return targets[2]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m passes.example_models DIR", file=sys.stderr)
        return 2
    try:
        path = write_example_project(argv[0])
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} and its models; render it with: greybox render {path} --out OUT")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
