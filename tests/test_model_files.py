"""Model files as untrusted input, without Blender: confinement (``..``, absolute paths, symbolic
links, references), what each format refers to, the hashes, the file-hierarchy readers, node paths
matched to Blender's renamed objects, UV validity and the packer's shelf layout. Pure Python and
numpy, but for one test that writes .blend files with this Blender (each release's own format)."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from greybox.errors import InputError
from passes.model_files import (
    FileNode, ModelRoots, _lz4_block, map_blender_objects, model_inputs, node_paths, references, sha256_of,
    usda_prim_tree, usda_stage_metadata,
)
from procedural.model_meshes import ModelMeshes, asset_rule_kind, polygon_islands, valid_file_uvs
from procedural.primitive_meshes import _shelf_layout, pack_uvs


def _glb(path: Path, doc: dict, binary: bytes = b"") -> Path:
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)
    return path


@pytest.fixture
def project(tmp_path):
    """A template folder with models, a sibling folder outside it, and their roots."""
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "tex.png").write_bytes(b"\x89PNG outside")
    (outside / "mesh.bin").write_bytes(b"\0" * 12)
    (outside / "model.glb").write_bytes(b"glTF")
    return root, outside, ModelRoots.of(root)


def _refused(call, *words):
    with pytest.raises(InputError) as err:
        call()
    text = str(err.value)
    for word in words:
        assert word in text, text
    return text


# --------------------------------------------------------------------------------------------
# Confinement
# --------------------------------------------------------------------------------------------


def test_model_paths_outside_the_template_folder_are_refused(project, tmp_path):
    root, outside, roots = project
    _refused(lambda: model_inputs("../outside/model.glb", roots, "imports.0.file"),
             "imports.0.file = '../outside/model.glb'", "outside", "--asset-root")
    _refused(lambda: model_inputs(str(outside / "model.glb"), roots, "imports.0.file"), "outside")
    (root / "models" / "link.glb").symlink_to(outside / "model.glb")
    text = _refused(lambda: model_inputs("models/link.glb", roots, "imports.0.file"), "symbolic link", str(outside / "model.glb"))
    assert "models/link.glb" in text
    (root / "models" / "folder_link").symlink_to(outside, target_is_directory=True)
    _refused(lambda: model_inputs("models/folder_link/model.glb", roots, "imports.0.file"), "outside")
    # an --asset-root admits the same files
    with_root = ModelRoots.of(root, [outside])
    assert model_inputs("models/link.glb", with_root, "imports.0.file").path == (outside / "model.glb").resolve()
    assert list(model_inputs("../outside/model.glb", with_root, "k").files) == ["<asset-root 1>/model.glb"]


def test_missing_and_non_files_are_refused_naming_them(project):
    root, _, roots = project
    _refused(lambda: model_inputs("models/nope.glb", roots, "imports.2.file"), "imports.2.file = 'models/nope.glb'", "no such file")
    (root / "models" / "dir.glb").mkdir()
    _refused(lambda: model_inputs("models/dir.glb", roots, "imports.0.file"), "is not a file")


def test_gltf_buffers_and_images_are_confined_and_hashed(project):
    root, outside, roots = project
    models = root / "models"
    (models / "mesh.bin").write_bytes(b"\1" * 12)
    (models / "textures").mkdir()
    (models / "textures" / "wood.png").write_bytes(b"\x89PNG wood")
    good = {"asset": {"version": "2.0"}, "buffers": [{"uri": "mesh.bin", "byteLength": 12}],
            "images": [{"uri": "textures/wood%2Epng"}, {"uri": "data:image/png;base64,AAAA"}]}
    (models / "good.gltf").write_text(json.dumps(good))
    inputs = model_inputs("models/good.gltf", roots, "imports.0.file")
    assert inputs.files == {"models/good.gltf": sha256_of(models / "good.gltf"), "models/mesh.bin": sha256_of(models / "mesh.bin"),
                            "models/textures/wood.png": sha256_of(models / "textures" / "wood.png")}
    # a texture outside (relative or absolute), a buffer outside, a buffer missing: each refused, named
    for name, doc, words in (
        ("tex_up.gltf", {**good, "images": [{"uri": "../../outside/tex.png"}]}, ("image '../../outside/tex.png'", "outside")),
        ("tex_abs.gltf", {**good, "images": [{"uri": str(outside / "tex.png")}]}, ("outside",)),
        ("buf_up.gltf", {**good, "buffers": [{"uri": "..%2F..%2Foutside%2Fmesh.bin"}]}, ("buffer", "outside")),
        ("buf_missing.gltf", {**good, "buffers": [{"uri": "gone.bin"}]}, ("buffer 'gone.bin'", "missing")),
        ("buf_url.gltf", {**good, "buffers": [{"uri": "https://example.com/mesh.bin"}]}, ("URL",)),
    ):
        (models / name).write_text(json.dumps(doc))
        _refused(lambda: model_inputs(f"models/{name}", roots, "imports.1.file"), f"imports.1.file = 'models/{name}'", *words)
    # a missing texture is no error (greybox renders none): the importer leaves a placeholder
    (models / "tex_missing.gltf").write_text(json.dumps({**good, "images": [{"uri": "textures/gone.png"}]}))
    assert "models/textures/gone.png" not in model_inputs("models/tex_missing.gltf", roots, "k").files
    # the same references inside a .glb's JSON chunk
    _glb(models / "outside_tex.glb", {**good, "images": [{"uri": "../../outside/tex.png"}]})
    _refused(lambda: model_inputs("models/outside_tex.glb", roots, "k"), "outside")
    # a texture that is a symbolic link out of the folder
    (models / "textures" / "link.png").symlink_to(outside / "tex.png")
    (models / "tex_link.gltf").write_text(json.dumps({**good, "images": [{"uri": "textures/link.png"}]}))
    _refused(lambda: model_inputs("models/tex_link.gltf", roots, "k"), "symbolic link")


def test_obj_material_libraries_and_their_textures_are_confined(project):
    root, outside, roots = project
    models = root / "models"
    (models / "wall.mtl").write_text("newmtl Plaster\nKd 1 1 1\nmap_Kd -s 2 2 1 -o 0 0 0 tex/plaster.png\n")
    (models / "wall.obj").write_text("mtllib wall.mtl\no Wall\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl Plaster\nf 1 2 3\n")
    refs = references(models / "wall.mtl")
    assert [(r.kind, r.text, r.target) for r in refs] == [("image", "tex/plaster.png", models / "tex" / "plaster.png")]
    assert set(model_inputs("models/wall.obj", roots, "k").files) == {"models/wall.obj", "models/wall.mtl"}
    (models / "bad.mtl").write_text(f"newmtl X\nmap_Bump -bm 0.5 {outside / 'tex.png'}\n")
    (models / "bad.obj").write_text("mtllib bad.mtl\no W\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    _refused(lambda: model_inputs("models/bad.obj", roots, "k"), "bad.mtl refers to the image", "outside")
    (models / "nomtl.obj").write_text("mtllib missing.mtl\no W\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    _refused(lambda: model_inputs("models/nomtl.obj", roots, "k"), "material library 'missing.mtl'", "missing")


def test_usd_sublayers_references_and_payloads_are_confined(project):
    root, outside, roots = project
    models = root / "models"
    (outside / "shared.usda").write_text("#usda 1.0\n")
    (models / "part.usda").write_text("#usda 1.0\n")
    layer = """#usda 1.0
(
    subLayers = [@./part.usda@]  # a comment with @not/a/path.usda@
)
def Xform "World" (
    prepend references = @part.usda@</Thing>
    payload = @@@part.usda@@@
)
{
    asset inputs:file = @textures/gone.png@
}
"""
    (models / "stage.usda").write_text(layer)
    assert set(model_inputs("models/stage.usda", roots, "k").files) == {"models/stage.usda", "models/part.usda"}
    for arc in ("subLayers = [@../../outside/shared.usda@]", "prepend references = @../../outside/shared.usda@",
                "payload = @" + str(outside / "shared.usda") + "@", "asset inputs:file = @../../outside/tex.png@"):
        (models / "bad.usda").write_text(f"#usda 1.0\n(\n)\ndef Xform \"W\" (\n  {arc}\n)\n{{\n}}\n")
        _refused(lambda: model_inputs("models/bad.usda", roots, "k"), "outside")
    (models / "gone.usda").write_text("#usda 1.0\n(\n    subLayers = [@missing.usda@]\n)\n")
    _refused(lambda: model_inputs("models/gone.usda", roots, "k"), "layer 'missing.usda'", "missing")
    # a package: files inside it are its own; a layer inside that refers out of the package's folder is refused
    with zipfile.ZipFile(models / "pack.usdz", "w") as z:
        z.writestr("root.usda", "#usda 1.0\n(\n    subLayers = [@inner/part.usda@]\n)\n")
        z.writestr("inner/part.usda", "#usda 1.0\n")
    assert set(model_inputs("models/pack.usdz", roots, "k").files) == {"models/pack.usdz"}
    with zipfile.ZipFile(models / "leak.usdz", "w") as z:
        z.writestr("root.usda", "#usda 1.0\n(\n    subLayers = [@../../outside/shared.usda@]\n)\n")
    _refused(lambda: model_inputs("models/leak.usdz", roots, "k"), "outside")


def test_usda_metadata_and_prim_tree_are_read_from_the_text():
    text = """#usda 1.0
(
    doc = "metersPerUnit = 7 in a string"
    metersPerUnit = 0.01
    upAxis = "Y"
)
def Xform "root" (customData = { dictionary Blender = { bool generated = 1 } })
{
    def Xform "Building" {
        def Mesh "Wall" { point3f[] points = [(0, 0, 0)] }
        over "Ghost" { }
        def Xform "Door" ( kind = "component" ) { def Mesh "Leaf" { } }
    }
}
"""
    assert usda_stage_metadata(text) == {"metersPerUnit": 0.01, "upAxis": "Y", "given": {"metersPerUnit": True, "upAxis": True}}
    assert usda_stage_metadata("#usda 1.0\n")["metersPerUnit"] == 0.01  # USD's fallback: centimetres, Y up
    tree = usda_prim_tree(text)
    assert [(n.name, n.blender_generated) for n in tree] == [("root", True)]
    building = tree[0].children[0]
    assert [(c.name, c.type) for c in building.children] == [("Wall", "Mesh"), ("Door", "Xform")]
    assert [c.name for c in building.children[1].children] == ["Leaf"]


def test_lz4_blocks_decode_literals_and_overlapping_matches():
    # "abc" then a match of length 9 at offset 3 (overlapping copy), then the literal "Z"
    block = bytes([0x35]) + b"abc" + struct.pack("<H", 3) + bytes([0x10]) + b"Z"
    assert _lz4_block(block, 100) == b"abcabcabcabcZ"


# --------------------------------------------------------------------------------------------
# Node paths
# --------------------------------------------------------------------------------------------


def test_node_paths_number_repeated_sibling_names_in_file_order():
    tree = [FileNode("Room", children=[FileNode("Chair"), FileNode("Chair"), FileNode("a/b"), FileNode("Chair")])]
    paths = node_paths(tree)
    assert [paths[id(n)] for n in tree[0].children] == ["/Room/Chair", "/Room/Chair[2]", "/Room/a_b", "/Room/Chair[3]"]


def test_blender_names_map_back_to_the_files_nodes():
    """Blender renames repeats (.001 in the importer's order, which is the file's) and cuts names at 63 bytes."""
    long = "x" * 70
    tree = [FileNode("A", children=[FileNode("Chair"), FileNode("Chair")]), FileNode("B", children=[FileNode("Chair"), FileNode(long)]),
            FileNode("Chair.001")]
    objects = [("A", None), ("Chair", "A"), ("Chair.002", "A"), ("B", None), ("Chair.003", "B"), ("x" * 63, "B"),
               ("Chair.001", None)]
    mapped = map_blender_objects(objects, tree)
    paths = node_paths(tree)
    got = {name: paths[id(node)] for name, node in mapped.items()}
    assert got == {"A": "/A", "Chair": "/A/Chair", "Chair.002": "/A/Chair[2]", "B": "/B", "Chair.003": "/B/Chair",
                   "x" * 63: f"/B/{long}", "Chair.001": "/Chair.001"}


def test_merged_usd_transforms_map_to_the_mesh_prim():
    """Blender 4.2's USD importer makes one object of a transform with a single mesh, named after the mesh."""
    tree = usda_prim_tree('#usda 1.0\ndef Xform "B" { def Xform "Dup" { def Mesh "Wall" {} }\n def Xform "Wall" { def Mesh "Wall" {} }\n'
                          ' def Xform "Two" { def Mesh "P" {} def Mesh "Q" {} } }\n')
    objects = [("B", None), ("Wall", "B"), ("Wall.001", "B"), ("Two", "B"), ("P", "Two"), ("Q", "Two")]
    mapped = map_blender_objects(objects, tree, merged_xforms=True)
    paths = node_paths(tree)
    assert {n: paths[id(v)] for n, v in mapped.items()} == {
        "B": "/B", "Wall": "/B/Dup/Wall", "Wall.001": "/B/Wall/Wall", "Two": "/B/Two", "P": "/B/Two/P", "Q": "/B/Two/Q"}


# --------------------------------------------------------------------------------------------
# UVs and the packer
# --------------------------------------------------------------------------------------------


def _meshes(uv_sets: list[np.ndarray]) -> ModelMeshes:
    """Objects of unit-area triangles (one per UV triangle given)."""
    names, verts, tris, uvs = [], [], [], []
    for k, uv in enumerate(uv_sets):
        t = len(uv)
        names.append(f"o{k}")
        v = np.zeros((3 * t, 3))
        v[:, 0] = np.tile([0.0, 1.0, 0.0], t) + np.repeat(np.arange(t), 3) * 2
        v[:, 1] = np.tile([0.0, 0.0, 1.0], t)
        verts.append(v)
        tris.append(np.arange(3 * t).reshape(t, 3))
        uvs.append(np.asarray(uv, dtype=np.float32))
    counts = np.array([len(u) for u in uv_sets])
    return ModelMeshes(names=names, node_paths=names, class_ids=[1] * len(names), vertex_counts=counts * 3,
                       triangle_counts=counts, vertices=np.concatenate(verts), triangles=np.concatenate(tris).astype(np.int32),
                       polygons=np.concatenate([np.arange(c) for c in counts]), uvs=np.concatenate(uvs),
                       transforms=np.tile(np.eye(4), (len(names), 1, 1)))


def test_file_uvs_are_used_only_inside_the_unit_square_and_without_overlaps():
    quad = np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], dtype=float)  # two halves sharing an edge
    grid = []  # 8 x 8 cells, two triangles each: touching everywhere, overlapping nowhere
    for i in range(8):
        for j in range(8):
            x0, y0 = i / 8, j / 8
            grid += [[[x0, y0], [x0 + 1 / 8, y0], [x0 + 1 / 8, y0 + 1 / 8]], [[x0, y0], [x0 + 1 / 8, y0 + 1 / 8], [x0, y0 + 1 / 8]]]
    shifted = quad.copy()
    shifted[1] += [0.25, -0.25]  # the second half slides over the first: overlap
    tiled = quad * 2.0  # a tiling texture's UVs: outside [0, 1]
    stacked = np.concatenate([quad, quad])  # two islands on the same texels (mirrored or repeated parts)
    sliver = 0.25 + 0.5 * quad
    sliver[1] += [1e-5, -1e-5]  # overlapping by much less than a texel of a 2048 atlas
    collapsed = np.zeros((1, 3, 2))  # a whole triangle on one point
    missing = np.full((1, 3, 2), np.nan)
    folded = np.array([[[0, 0], [1, 0], [1, 1]], [[1, 0], [0, 0], [0.5, 0.4]]], dtype=float)  # an edge shared, folded over
    ok = valid_file_uvs(_meshes([quad, np.array(grid), shifted, tiled, stacked, sliver, collapsed, missing, folded]))
    assert ok.tolist() == [True, True, False, False, False, True, False, False, False]


def test_polygon_islands_pack_one_island_per_polygon_at_real_size():
    # a unit square (two triangles, one polygon) and a 2 x 1 rectangle standing up (one polygon)
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [3, 0, 0], [5, 0, 0], [5, 0, 1], [3, 0, 1]], dtype=float)
    triangles = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    mesh = polygon_islands(vertices, triangles, np.array([7, 7, 9, 9]))
    assert mesh.island_count == 2
    uvs = pack_uvs(mesh).astype(np.float64)
    area = lambda t: 0.5 * abs(np.cross(t[1] - t[0], t[2] - t[0]))  # noqa: E731
    areas = [area(t) for t in uvs]
    assert areas[0] == pytest.approx(areas[1]) and areas[2] == pytest.approx(areas[3])
    assert (areas[2] + areas[3]) == pytest.approx(2 * (areas[0] + areas[1]), rel=1e-6)  # one texel density
    for t in uvs:  # counter-clockwise, as the triangles are seen from outside
        assert np.cross(t[1] - t[0], t[2] - t[0]) > 0
    assert valid_file_uvs(_meshes([uvs])).all()


def _shelf_layout_loop(widths, heights, order, scale, gap):
    """The shelf layout as a plain loop over the islands (the second implementation)."""
    margin = gap / 2.0
    limit = 1.0 - margin
    x = y = margin
    row_h = 0.0
    offsets = np.zeros((len(widths), 2))
    for i in order:
        w, h = widths[i] * scale, heights[i] * scale
        if margin + w > limit:
            return None
        if x + w > limit:
            y += row_h + gap
            x, row_h = margin, 0.0
        offsets[i] = (x, y)
        x += w + gap
        row_h = max(row_h, h)
    if y + row_h > limit:
        return None
    return offsets


def test_the_row_at_a_time_shelf_layout_is_the_loop_exactly():
    rng = np.random.default_rng(7)
    for _ in range(150):
        n = int(rng.integers(1, 300))
        w, h = rng.uniform(1e-3, 1, n) ** 2, rng.uniform(1e-3, 1, n) ** 2
        order = np.lexsort((np.arange(n), -w, -h))
        for scale in (0.02, 0.2, 0.6, 1.0, float(rng.uniform(0, 2))):
            fast, loop = _shelf_layout(w, h, order, scale, 1 / 96), _shelf_layout_loop(w, h, order, scale, 1 / 96)
            assert (fast is None) == (loop is None)
            if fast is not None:
                assert np.array_equal(fast, loop)


def test_the_python_shelf_layout_of_a_few_islands_is_the_loop_exactly():
    from procedural.primitive_meshes import _small_shelf_layout

    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(1, 65))
        w, h = rng.uniform(1e-3, 1, n) ** 2, rng.uniform(1e-3, 1, n) ** 2
        order = np.lexsort((np.arange(n), -w, -h))
        fits, layout = _small_shelf_layout(w, h, order)
        for scale in (0.02, 0.2, 0.6, 1.0, float(rng.uniform(0, 2))):
            fast, loop = layout(w, h, order, scale, 1 / 96), _shelf_layout_loop(w, h, order, scale, 1 / 96)
            assert (fast is None) == (loop is None) == (not fits(scale, 1 / 96))
            if fast is not None:
                assert np.array_equal(fast, loop)


def test_objects_packed_together_get_what_each_gets_alone():
    """packed_polygon_uvs over joined arrays against pack_uvs(polygon_islands(...)) object by object."""
    from procedural.model_meshes import packed_polygon_uvs
    from procedural.primitive_meshes import _LAYOUT_CACHE

    rng = np.random.default_rng(5)
    names, verts, tris, polys = [], [], [], []
    for k in range(40):
        t = int(rng.integers(1, 30))
        names.append(f"o{k}")
        verts.append(rng.normal(size=(t + 2, 3)) * rng.uniform(0.1, 10) + rng.normal(size=3) * 100)
        tris.append(np.stack([np.zeros(t, int), np.arange(1, t + 1), np.arange(2, t + 2)], axis=1))  # a fan
        polys.append(np.sort(rng.integers(0, max(1, t // 2), t)))
    counts = np.array([len(t) for t in tris])
    meshes = ModelMeshes(names=names, node_paths=names, class_ids=[1] * 40, vertex_counts=np.array([len(v) for v in verts]),
                         triangle_counts=counts, vertices=np.concatenate(verts), triangles=np.concatenate(tris).astype(np.int32),
                         polygons=np.concatenate(polys), uvs=np.full((counts.sum(), 3, 2), np.nan, dtype=np.float32),
                         transforms=np.tile(np.eye(4), (40, 1, 1)))
    which = rng.uniform(size=40) < 0.7
    together = packed_polygon_uvs(meshes, which)
    _, t_off = meshes.offsets()
    for k in range(40):
        rows = slice(t_off[k], t_off[k] + counts[k])
        if which[k]:
            _LAYOUT_CACHE.clear()  # packed afresh, not remembered from the joined pass
            alone = pack_uvs(polygon_islands(verts[k], tris[k], polys[k]))
            assert np.array_equal(together[rows], alone), k
        else:
            assert np.isnan(together[rows]).all()


def test_assets_follow_the_rules_of_their_class():
    from scenes.semantic_palette import resolve_class

    assert asset_rule_kind(resolve_class("chair").class_id, False) == "chair"
    assert asset_rule_kind(resolve_class("sofa").class_id, False) == "sofa"
    assert asset_rule_kind(resolve_class("chest of drawers").class_id, False) == "nightstand"
    assert asset_rule_kind(resolve_class("vase").class_id, True) == "cabinet"  # against its pinned wall
    assert asset_rule_kind(resolve_class("vase").class_id, False) == "table"  # free-standing


def test_blend_libraries_and_images_are_read_from_the_files_dna(tmp_path):
    """A .blend's external paths (libraries, images) from its own DNA, in the running release's format."""
    import bpy

    lib = tmp_path / "lib.blend"
    bpy.ops.wm.read_factory_settings(use_empty=True)
    mesh = bpy.data.meshes.new("LibMesh")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    bpy.context.scene.collection.objects.link(bpy.data.objects.new("LibObj", mesh))
    bpy.ops.wm.save_as_mainfile(filepath=str(lib))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    with bpy.data.libraries.load(str(lib), link=True, relative=True) as (_, target):
        target.objects = ["LibObj"]
    bpy.context.scene.collection.objects.link(target.objects[0])
    image = bpy.data.images.new("tex", 4, 4)
    image.source = "FILE"
    image.filepath_raw = "//textures/tex.png"
    from passes.blender_compat import new_node_material

    material = new_node_material(bpy.data, "M")
    material.node_tree.nodes.new("ShaderNodeTexImage").image = image
    user = bpy.data.meshes.new("User")
    user.materials.append(material)
    bpy.context.scene.collection.objects.link(bpy.data.objects.new("User", user))
    for compress in (False, True):
        main = tmp_path / f"main-{compress}.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(main), compress=compress, relative_remap=False)
        found = sorted((r.kind, r.target) for r in references(main))
        assert found == [("image", tmp_path / "textures" / "tex.png"), ("library", lib)]
    roots = ModelRoots.of(tmp_path)
    assert set(model_inputs("main-True.blend", roots, "k").files) == {"main-True.blend", "lib.blend"}
    os.replace(lib, tmp_path / "moved.blend")
    _refused(lambda: model_inputs("main-True.blend", roots, "k"), "refers to the library", "missing")
