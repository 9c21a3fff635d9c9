"""A look: a shot's per-object texture atlases, the thing that keeps a sofa the same sofa in every shot.

Mode ``keyframes`` (and the ``baked`` stylizer) make a shot's frames in two steps:

1. **The look** (:func:`build_look`): keyframes and the frames that show surface no keyframe saw
   are stylised in order (:func:`stylize.keyframe_sequence.run_keyframe_sequence`), each written
   into per-object texture atlases; the generated pixels of each of those frames are kept
   (:class:`Generation`, the expensive part). The atlases are then finished (:func:`finish_atlases`):
   colours rounded to 16 bits, the brand colours applied to their objects' texels, the texels no
   view saw filled by push-pull from the seen ones (or with the object's flat NPR colour when it
   has none), and their counts recorded. Starting from a look (``style.look.from``), every object
   whose geometry the look holds starts from its atlas (its size, colours and seen texels), so
   only what it never saw is generated, and its seen texels stay bit-identical.
2. **The frames** (:func:`frame_from_look`): each frame is gathered from the finished atlases of
   the objects it shows with its own UV and instance passes (and the environment by direction);
   the pixels a frame generated come from its generation; brand colours are corrected pointwise.

The look's parts are files of store units (``render_farm/look_plan.py`` keys them):
``look/generation.json`` and ``look/generated/NNNN.png`` (+ ``_mask.png``) for the generation,
``look/atlases/<name>.npz`` per object (:func:`write_atlas`), ``look/look.json`` for the look
(:func:`look_record`). Atlas file format (``numpy.load``, no pickle): ``header`` (uint8 UTF-8 JSON:
format, name, instance id, class id, geometry key, size, brand, stats), ``colour`` (S, S', 3)
uint16 sRGB x 65535, the finished texture; ``known`` (S, S') uint8, the texels a view painted;
``unbranded`` (uint16, brand targets only): the texture without the brand colour.

numpy only.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from greybox.pixel_masks import dilate
from stylize.image_operations import push_pull_fill

LOOK_FOLDER = "look"
LOOK_JSON = "look/look.json"
GENERATION_JSON = "look/generation.json"
ENVIRONMENT = "~environment"  # the background's atlas (instance 0), by world direction
ENVIRONMENT_GEOMETRY = "environment"
ATLAS_FORMAT = "greybox.atlas"
LOOK_FORMAT = "greybox.look"
LOOK_SCHEMA = 1
_SCALE = 65535.0
FILL_PUSH_PULL = "push-pull (Gortler et al. 1996) from the seen texels of the same atlas, inside its UV islands and 2 texels around them"
FILL_FLAT = "flat: the object's NPR class colour (no view of the look ever saw it)"
FILL_SKY = "flat: the NPR sky colour (no view of the look ever saw the background)"


# -- names and files ------------------------------------------------------------------------------

def atlas_relpath(name: str) -> str:
    """``look/atlases/<name>.npz`` (the name made file-safe, with a short hash against collisions)."""
    if name == ENVIRONMENT:
        return "look/atlases/environment.npz"
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:80].strip(".") or "object"
    return f"look/atlases/{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}.npz"


def generated_relpaths(frame: int) -> tuple[str, str]:
    from greybox.frame_files import frame_name

    return f"look/generated/{frame_name(frame)}.png", f"look/generated/{frame_name(frame)}_mask.png"


def geometry_key(obj) -> str:
    """What an object's atlas is keyed and matched by across shots: sha256 of its stable name, class,
    world-space vertices, triangles and UVs (not its instance id, which depends on the other objects)."""
    digest = hashlib.sha256(f"{obj.name}|{int(obj.semantic_class_id)}|".encode())
    for array, dtype in ((obj.vertices, np.float64), (obj.triangles, np.int32), (obj.uvs, np.float32)):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()


def scene_surfaces(scene) -> list[dict]:
    """Every surface a look may hold, in a fixed order: each object (name, instance id, class id,
    geometry key) by instance id, then the environment."""
    out = [{"name": o.name, "instance_id": int(o.instance_id), "class_id": int(o.semantic_class_id),
            "geometry": geometry_key(o)} for o in sorted(scene.objects, key=lambda o: o.instance_id)]
    out.append({"name": ENVIRONMENT, "instance_id": 0, "class_id": 0, "geometry": ENVIRONMENT_GEOMETRY})
    return out


def quantise(colour: np.ndarray) -> np.ndarray:
    """float 0..1 -> the nearest of the 16-bit levels an atlas file stores, as float32 (exact round trip)."""
    return (np.clip(np.rint(np.asarray(colour, np.float64) * _SCALE), 0, _SCALE) / _SCALE).astype(np.float32)


# -- one atlas ------------------------------------------------------------------------------------

@dataclass
class StoredAtlas:
    """A finished atlas: ``colour`` (S, S', 3) float32 0..1 (on the 16-bit grid) is what frames
    sample; ``known`` the texels a view painted; ``unbranded`` the colour without the brand
    correction (brand targets only); ``stats``: texels, seen, never seen, and how those were filled."""

    name: str
    instance_id: int
    class_id: int
    geometry: str
    colour: np.ndarray
    known: np.ndarray
    brand: str | None = None
    unbranded: np.ndarray | None = None
    stats: dict = field(default_factory=dict)

    def header(self) -> dict:
        return {"format": ATLAS_FORMAT, "schema": LOOK_SCHEMA, "name": self.name, "instance_id": self.instance_id,
                "class_id": self.class_id, "geometry": self.geometry, "size": list(self.known.shape),
                "brand": self.brand, "stats": self.stats}


def atlas_bytes(atlas: StoredAtlas) -> bytes:
    arrays = {
        "header": np.frombuffer(json.dumps(atlas.header(), sort_keys=True).encode("utf-8"), dtype=np.uint8),
        "colour": np.rint(np.clip(atlas.colour, 0, 1).astype(np.float64) * _SCALE).astype(np.uint16),
        "known": atlas.known.astype(np.uint8),
    }
    if atlas.unbranded is not None:
        arrays["unbranded"] = np.rint(np.clip(atlas.unbranded, 0, 1).astype(np.float64) * _SCALE).astype(np.uint16)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # uncompressed zip entries with a fixed date: deterministic
    return buffer.getvalue()


def write_atlas(path: Path, atlas: StoredAtlas) -> str:
    from greybox.atomic_files import write_bytes_atomic

    return write_bytes_atomic(path, atlas_bytes(atlas))


def read_atlas(path: Path) -> StoredAtlas:
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(bytes(data["header"]).decode("utf-8"))
        if header.get("format") != ATLAS_FORMAT:
            raise ValueError(f"{path}: not a greybox atlas")
        unbranded = data["unbranded"].astype(np.float32) / np.float32(_SCALE) if "unbranded" in data else None
        return StoredAtlas(name=header["name"], instance_id=int(header["instance_id"]), class_id=int(header["class_id"]),
                           geometry=header["geometry"], colour=(data["colour"].astype(np.float64) / _SCALE).astype(np.float32),
                           known=data["known"].astype(bool), brand=header.get("brand"), unbranded=unbranded,
                           stats=header.get("stats") or {})


# -- a whole look ---------------------------------------------------------------------------------

@dataclass
class Look:
    """A look read back: its id (the store key of its ``look`` unit), its record and its atlases by name."""

    id: str
    record: dict
    atlases: dict[str, StoredAtlas]

    def by_geometry(self) -> dict[str, StoredAtlas]:
        return {a.geometry: a for a in self.atlases.values()}


def look_record(look_id: str, atlases: dict[str, StoredAtlas], files: dict[str, str], *, generation: dict,
                source: dict | None) -> dict:
    """``look/look.json``: the look's id, where it started from, and per atlas its object, geometry
    key, size, file (and its sha256), brand colour and texel counts."""
    return {
        "format": LOOK_FORMAT, "schema": LOOK_SCHEMA, "id": look_id, "from": source,
        "generation": generation,
        "atlases": {name: {"instance_id": a.instance_id, "class_id": a.class_id, "geometry": a.geometry,
                           "size": list(a.known.shape), "file": atlas_relpath(name), "sha256": files[name],
                           "brand": a.brand, **a.stats}
                    for name, a in sorted(atlases.items())},
    }


def read_look(folder: Path, expected_id: str | None = None) -> Look:
    """The look in ``folder`` (a ``look`` store unit, or a shot's folder holding ``look/``): its
    record and every atlas it lists, each checked against the sha256 the record gives."""
    from greybox.atomic_files import sha256_file

    folder = Path(folder)
    record = json.loads((folder / LOOK_JSON).read_text(encoding="utf-8"))
    if record.get("format") != LOOK_FORMAT:
        raise ValueError(f"{folder / LOOK_JSON}: not a greybox look")
    if expected_id is not None and record.get("id") != expected_id:
        raise ValueError(f"{folder / LOOK_JSON} is look {record.get('id')}, not {expected_id}")
    atlases = {}
    for name, entry in record["atlases"].items():
        path = folder / entry["file"]
        if sha256_file(path) != entry["sha256"]:
            raise ValueError(f"{path} does not match the sha256 {entry['sha256'][:16]} its look records")
        atlases[name] = read_atlas(path)
    return Look(id=record["id"], record=record, atlases=atlases)


# -- building ---------------------------------------------------------------------------------

def initial_atlases(scene, shot_passes, source: Look | None, *, max_size: int = 2048):
    """The shot's :class:`stylize.texture_atlas.AtlasSet` (an atlas for every object), with the
    atlases of ``source`` in place for every object whose geometry it holds (their sizes, colours
    and seen texels; the environment too). Returns (atlases, {instance id: the source's seen
    texels}: what this shot inherits and must keep bit-identical). A brand target's atlas starts
    from its unbranded colours (see :func:`inherited_fits`)."""
    from stylize.texture_atlas import AtlasSet

    held = source.by_geometry() if source is not None else {}
    surfaces = {s["instance_id"]: s for s in scene_surfaces(scene)}
    fixed = {i: held[s["geometry"]].known.shape[0] for i, s in surfaces.items() if i and s["geometry"] in held}
    env = held.get(ENVIRONMENT_GEOMETRY)
    atlases = AtlasSet.for_shot(scene, shot_passes, max_size=max_size, fixed_sizes=fixed, all_objects=True,
                                env_size=env.known.shape[0] if env is not None else None)
    inherited: dict[int, np.ndarray] = {}
    for inst, s in surfaces.items():
        stored = held.get(s["geometry"])
        if stored is None:
            continue
        target = atlases.environment if inst == 0 else atlases.objects[inst]
        if stored.known.shape != target.known.shape:
            continue
        # a brand target starts from its colours without the brand (corrected again, with the same fit, when finished)
        target.colour[:] = stored.unbranded if stored.brand and stored.unbranded is not None else stored.colour
        target.known[:] = stored.known
        target.filled = None
        inherited[inst] = stored.known.copy()
    return atlases, inherited


def inherited_fits(scene, source: Look | None, inherited: dict[int, np.ndarray]) -> dict:
    """{(instance id, brand colour): lightness fit} of the source look's brand targets this shot inherits:
    the same colour corrected with the same fit gives the source's texels bit for bit."""
    if source is None:
        return {}
    held = source.by_geometry()
    out = {}
    for s in scene_surfaces(scene):
        a = held.get(s["geometry"])
        if a is not None and a.brand and a.stats.get("lightness_fit") and s["instance_id"] in inherited:
            out[(s["instance_id"], a.brand)] = tuple(a.stats["lightness_fit"])
    return out


@dataclass
class Generation:
    """What the look's generation made: per frame that ran the generator, in order, its output
    (H, W, 3) uint8 and the pixels it generated; the keyframes; denoising steps per frame; and per
    frame the surfaces it shows (atlas names), which the frames are keyed by."""

    events: list[tuple[int, np.ndarray, np.ndarray]]
    keyframes: list[int]
    steps_by_frame: dict[int, int]
    shows: dict[int, list[str]]
    generate_seconds: dict[int, float] = field(default_factory=dict)

    @property
    def generated_frames(self) -> list[int]:
        return [f for f, _, _ in self.events]

    def record(self) -> dict:
        from greybox.frame_files import frame_name

        return {"keyframes": list(self.keyframes), "generated_frames": self.generated_frames,
                "generated_pixels": {frame_name(f): int(m.sum()) for f, _, m in self.events},
                "denoising_steps_by_frame": {frame_name(f): int(s) for f, s in sorted(self.steps_by_frame.items())},
                "denoising_steps": int(sum(self.steps_by_frame.values())),
                "shows": {frame_name(f): names for f, names in sorted(self.shows.items())}}


def frame_shows(scene, shot_passes) -> dict[int, list[str]]:
    """Per frame, the atlas names its gather reads: the objects its UV pass covers, and the environment where it shows background."""
    names = {int(o.instance_id): o.name for o in scene.objects}
    out = {}
    for p in shot_passes:
        covered = (p.uv[..., 2] >= 1.0) & (p.instance_id > 0)
        shown = sorted(names[int(i)] for i in np.unique(p.instance_id[covered]) if int(i) in names)
        if (p.instance_id == 0).any():
            shown.append(ENVIRONMENT)
        out[p.frame] = shown
    return out


def replay(atlases, shot_passes, events) -> None:
    """Write a generation's frames back into ``atlases`` in order, as the run that made them did
    (``AtlasSet.write_pixels`` depends only on the frame, its passes, its mask and what earlier
    writes left): the atlases end exactly as that run left them, without running a generator."""
    by_frame = {p.frame: p for p in shot_passes}
    for frame, image, mask in events:
        atlases.write_pixels(np.asarray(image).astype(np.float64) / 255.0, by_frame[frame], mask)


def finish_atlases(atlases, scene, brands, inherited: dict[int, np.ndarray], style,
                   inherited_fits: dict | None = None, shot_passes=None, events=()) -> dict[str, StoredAtlas]:
    """The look's finished atlases by name (see the module docstring): seen texels rounded to 16
    bits (inherited ones are already on that grid and stay bit-identical); each brand's objects'
    new seen texels corrected (``brands``: :class:`stylize.brand_colours.BrandColour`, the colours
    this shot's objects take) with the object's lightness fit (``inherited_fits``: {(instance id,
    brand colour): fit} of the source look, kept; otherwise fitted to what the shot's frames show of
    the object (``shot_passes``, with the generation's ``events``: each frame as :func:`frame_from_look`
    gathers it unbranded, so every frame's mean CIEDE2000 is checked on its own pixels), or without
    frames to its seen texels; recorded in its stats); the rest filled; counts recorded."""
    inherited_fits = dict(inherited_fits or {})
    if shot_passes and brands:
        inherited_fits.update(_fits_from_frames(atlases, scene, brands, inherited_fits, shot_passes, events))
    from stylize.brand_colours import apply_to_texels
    from stylize.npr_stylizer import SKY_COLOUR, class_colour_table

    table = class_colour_table(style.palette)
    brand_of = {i: b for b in brands for i in b.instance_ids}
    out: dict[str, StoredAtlas] = {}
    for s in scene_surfaces(scene):
        inst = s["instance_id"]
        atlas = atlases.environment if inst == 0 else atlases.objects.get(inst)
        if atlas is None:
            continue
        known = atlas.known.copy()
        seen = quantise(atlas.colour)
        island = atlas.island
        region = dilate(island, atlases.margin) if inst != 0 else island
        brand = brand_of.get(inst)
        unbranded = None
        fit = None
        if brand is not None:
            unbranded = _fill(seen.copy(), known, region)
            fit = inherited_fits.get((inst, brand.color))
            if fit is None and known.any():  # the object's lightness fit, from its unbranded seen texels
                from stylize.perceptual_colour import srgb_to_lab

                fit = brand.fit(srgb_to_lab(np.asarray(seen, np.float64)[known])[:, 0])
            apply_to_texels(seen, known, brand, fit)  # every seen texel is unbranded here (initial_atlases)
            seen = quantise(seen)
        if known.any():
            colour, fill = _fill(seen, known, region), FILL_PUSH_PULL
        else:
            flat = np.asarray(SKY_COLOUR, np.float32) / 255.0 if inst == 0 else table[int(s["class_id"])]
            colour = np.where(region[..., None], quantise(np.asarray(flat, np.float64))[None, None, :], 0).astype(np.float32)
            if brand is not None:
                unbranded = colour.copy()
                fit = brand.fit(srgb_to_lab_flat(colour[region]))  # flat: one lightness, moved to where sRGB holds the brand
                apply_to_texels(colour, region, brand, fit)
                colour = quantise(colour)
            fill = FILL_SKY if inst == 0 else FILL_FLAT
        texels = int(island.sum())
        seen_texels = int((known & island).sum())
        stats = {"texels": texels, "seen": seen_texels, "never_seen": texels - seen_texels, "fill": fill,
                 "inherited": int((inherited[inst] & island).sum()) if inst in inherited else 0}
        if fit is not None:
            stats["lightness_fit"] = [round(float(v), 6) for v in fit]
        out[s["name"]] = StoredAtlas(name=s["name"], instance_id=inst, class_id=int(s["class_id"]), geometry=s["geometry"],
                                     colour=colour, known=known, brand=brand.color if brand is not None else None,
                                     unbranded=unbranded, stats=stats)
    return out


def _fits_from_frames(atlases, scene, brands, inherited_fits: dict, shot_passes, events) -> dict:
    """{(instance id, brand colour): lightness fit} of each brand target with seen texels and no
    inherited fit, from its pixels in every frame of the shot gathered from its unbranded filled
    atlas (:meth:`stylize.brand_colours.BrandColour.fit_pixels`)."""
    from stylize.brand_colours import fix_fits
    from stylize.image_operations import to_uint8
    from stylize.texture_atlas import gather_textures

    textures = {}
    for brand in brands:
        for inst in brand.instance_ids:
            atlas = atlases.environment if inst == 0 else atlases.objects.get(inst)
            if atlas is None or not atlas.known.any() or (inst, brand.color) in inherited_fits:
                continue
            region = dilate(atlas.island, atlases.margin) if inst != 0 else atlas.island
            textures[inst] = _fill(quantise(atlas.colour), atlas.known.copy(), region)
    if not textures:
        return {}
    generated = {f: (image, mask) for f, image, mask in events}
    images = []
    for p in shot_passes:
        image = to_uint8(gather_textures(p, scene.camera, textures))
        if p.frame in generated:
            image = np.where(generated[p.frame][1][..., None], np.asarray(generated[p.frame][0], np.uint8), image)
        images.append(image)
    wanted = [type(b)(b.target, b.color, [i for i in b.instance_ids if i in textures]) for b in brands]
    fix_fits(images, [p.instance_id for p in shot_passes], wanted)
    return {(inst, b.color): fit for b in wanted for inst, fit in b.fits.items()}


def _fill(colour: np.ndarray, known: np.ndarray, region: np.ndarray) -> np.ndarray:
    out = push_pull_fill(colour, known) if known.any() else colour
    out[~region] = 0.0
    return quantise(out)


# -- frames from a look -------------------------------------------------------------------------

def srgb_to_lab_flat(colours: np.ndarray) -> np.ndarray:
    from stylize.perceptual_colour import srgb_to_lab

    return srgb_to_lab(np.asarray(colours, np.float64))[..., 0].ravel()


def attach_fits(brands, atlases: dict[str, StoredAtlas]) -> None:
    """Give each brand its objects' lightness fits as their atlases recorded them (frames then match the texels)."""
    by_instance = {a.instance_id: a for a in atlases.values()}
    for brand in brands:
        for inst in brand.instance_ids:
            a = by_instance.get(inst)
            if a is not None and a.brand == brand.color and a.stats.get("lightness_fit"):
                brand.fits[inst] = tuple(a.stats["lightness_fit"])


def textures_by_instance(atlases: dict[str, StoredAtlas], *, unbranded: bool = False) -> dict[int, np.ndarray]:
    """{instance id (0: environment): the texture frames sample}, optionally without the brand correction."""
    return {a.instance_id: (a.unbranded if unbranded and a.unbranded is not None else a.colour) for a in atlases.values()}


def frame_from_look(frame_passes, camera, textures: dict[int, np.ndarray], brands, generated=None,
                    unbranded_textures: dict[int, np.ndarray] | None = None):
    """One frame from a look: (H, W, 3) uint8, and the same frame without the brand colours (or
    None when no brand is given). ``generated``: (the frame's generated output uint8, its mask) when
    the frame ran the generator: those pixels come from it."""
    from stylize.brand_colours import apply_to_frame
    from stylize.image_operations import to_uint8
    from stylize.texture_atlas import gather_textures

    def compose(tex):
        image = to_uint8(gather_textures(frame_passes, camera, tex))
        if generated is not None:
            image = np.where(generated[1][..., None], np.asarray(generated[0], np.uint8), image)
        return image

    if not brands:
        return compose(textures), None
    # the correction is applied once, to the frame gathered from the unbranded textures
    before = compose(unbranded_textures if unbranded_textures is not None else textures)
    return apply_to_frame(before, frame_passes.instance_id, brands), before


# -- one object again (edits: issue 14) -----------------------------------------------------------

def regenerate_object_atlas(base: dict[str, StoredAtlas], name: str, scene, shot_passes, frames: list[int], generate,
                            *, brands=(), style) -> StoredAtlas:
    """A new atlas for object ``name`` of a finished look ``base`` (every other atlas kept as it is):
    its texels are cleared, then each of ``frames`` in order (the frames that generated it in the
    base: its generation's ``generated_frames``) gathers the frame from the base atlases and calls
    ``generate(frame, gathered float 0..1, mask)`` with the mask of that object's pixels whose texel
    is not yet repainted; what it returns is written back into that object's atlas only. Returns the
    object's finished atlas (brand colours and fill as :func:`finish_atlases`)."""
    from stylize.image_operations import to_uint8
    from stylize.texture_atlas import AtlasSet

    # 1. The base look in an AtlasSet, the object's atlas cleared
    sizes = {a.instance_id: a.known.shape[0] for a in base.values() if a.instance_id != 0}
    env = base.get(ENVIRONMENT)
    by_frame = {p.frame: p for p in shot_passes}
    atlases = AtlasSet(scene, sizes, env.known.shape[0] if env is not None else 64, width=shot_passes[0].width,
                       height=shot_passes[0].height)
    for a in base.values():
        target = atlases.environment if a.instance_id == 0 else atlases.objects[a.instance_id]
        target.colour[:] = a.colour
        target.known[:] = a.known
    wanted = base[name]
    target = atlases.environment if wanted.instance_id == 0 else atlases.objects[wanted.instance_id]
    target.known[:] = False
    # 2. Each frame that generated it, in order, repaints the object's pixels only
    for frame in frames:
        p = by_frame[frame]
        gathered, seen = atlases.gather(p)
        mask = (p.instance_id == wanted.instance_id) & ~seen
        if not mask.any():
            continue
        out = np.where(mask[..., None], to_uint8(np.asarray(generate(frame, gathered, mask))), to_uint8(gathered))
        atlases.write_pixels(out.astype(np.float64) / 255.0, p, mask)
    # 3. Finished as a look's atlases are
    finished = finish_atlases(atlases, scene, list(brands), {}, style)
    return finished[name]
