"""The scene template schema (``schema_version = 1``), validated with pydantic.

A template is a TOML file with these top-level tables (every key is documented on its field):

- ``schema_version``, ``name``, ``description``, ``seed``
- ``[generator]``: the procedural generator (``kind = "room"``, ``"floor_plan"``, ``"building"`` or
  ``"none"``) and its parameters
- ``[[objects]]``: explicit primitives (box, plane, cylinder) with a semantic class
- ``[[imports]]``: models from files (glTF, FBX, USD, OBJ, .blend) with class rules and an optional
  file camera; a room's furniture list takes ``{ kind = "asset", file = ... }`` pieces too
- ``[camera]``: type (perspective or orthographic), focal length or ortho scale, sensor, lens
  shift, up, and ``[camera.path]`` (static, orbit, dolly, walkthrough, tour)
- ``[render]``: resolution, frame range, fps
- ``[passes]``: which control images to write and how depth is normalised
- ``[style]``: the generative stage's settings, named as diffusers names them

Unknown keys, wrong types, NaN and infinities are refused. Lengths are metres, angles degrees,
world axes are Blender's (Z up).
"""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath
from typing import Annotated, Literal, Union, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from scenes.semantic_palette import SemanticClass, UnknownClassError, resolve_class

SCHEMA_VERSION = 1
MAX_RESOLUTION = 8192
# Limits that keep every valid template buildable and renderable (each is checked at validation):
MAX_FRAMES_PER_SHOT = 10_000  # frame_end - frame_start + 1: the camera track and the shot's depth range cover them all
MAX_FRAME_NUMBER = 1_000_000  # Blender's frame numbers stop at 1048574 (the track reaches frame_end + 1)
MAX_EXTENT = 10_000.0  # metres: the largest coordinate or length (Cycles works in float32)
MIN_CLIP_START = 1e-6  # metres: Blender's smallest clip_start
MAX_ANGLE = 36_000.0  # degrees: a hundred turns
MAX_NAME_LENGTH = 63  # characters: Blender truncates longer object names
MAX_OBJECTS = 32767  # explicit objects (Blender's pass_index is a signed 16-bit short)
MAX_FURNITURE = 128  # pieces placed by rule in one room
MAX_OPENINGS = 32  # doors, and windows, per room
MAX_PATH_POINTS = 1000  # walkthrough points
MAX_ROOMS = 256  # rooms in a floor plan
MAX_POLYGON_VERTICES = 64  # vertices of a room's polygon
MAX_PLAN_OPENINGS = 1024  # doors, and windows, in a floor plan
MAX_ROOM_NAME_LENGTH = 24  # room names go into stable names ("wall:<a>|<b>", "<room>/<piece>") of at most 63 characters
MAX_REGIONS = 32  # [[style.regions]]: one prompt each, attended to at every cross-attention layer
MAX_REFERENCE_IMAGES = 16  # [[style.reference_images]]
MAX_TARGETS = 256  # globs in one objects list, names in one classes list
MAX_PATH_LENGTH = 1024  # characters in a reference image's path
# Images a reference image may be (read with Pillow).
REFERENCE_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_STOREYS = 64  # storeys of a building
MAX_SHIFT = 2.0  # lens shift, fractions of the image width (Blender's soft range)
# The control images the passes stage writes (one folder each) and a ControlNet may be conditioned on.
ControlPass = Literal["depth", "normal", "seg", "lines"]
CONTROL_PASSES: tuple[str, ...] = get_args(ControlPass)
# The stylizers and consistency modes the stylize stage runs (stylize.stylize_stage.stylize_frames).
Stylizer = Literal["diffusion", "npr", "baked"]
STYLIZERS: tuple[str, ...] = get_args(Stylizer)
ConsistencyMode = Literal["per_frame", "flow_warp", "keyframes"]
CONSISTENCY_MODES: tuple[str, ...] = get_args(ConsistencyMode)
# Pass groups of passes/NNNN.exr (passes.exr_channels), as passes.frame_passes.EXR_GROUPS names them.
EXR_CHANNEL_GROUPS = ("depth", "normal", "flow", "instance", "class", "uv", "float_ids", "cryptomatte")
EXR_COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "zstd")  # lossless only
LOSSY_EXR_COMPRESSIONS = ("pxr24", "b44", "b44a", "dwaa", "dwab")
VIDEO_CODECS = ("h264", "prores", "png")
# What the stylize stage reads from passes/NNNN.exr, by what the template's style asks for (control
# images are drawn from the passes in memory, so they need no group): reader -> pass groups.
EXR_GROUPS_NEEDED_BY = {
    "npr": ("normal", "class", "instance"),
    "flow_warp": ("flow", "instance", "uv"),
    "keyframes": ("depth", "instance", "uv"),
    "regions": ("instance", "class"),
    "baked": ("instance", "uv"),
}
MAX_IMPORTS = 64  # [[imports]] entries
MAX_IMPORT_RULES = 256  # globs in imports.N.objects, rules in imports.N.classes
MAX_PATH_LENGTH = 1024  # characters in a model path, a glob or a node path
# Model files greybox imports through Blender's own importers, by extension.
MODEL_EXTENSIONS = (".gltf", ".glb", ".fbx", ".usd", ".usda", ".usdc", ".usdz", ".obj", ".blend")
# Metres per unit of each ``units`` value ("auto": what the file says).
UNIT_METRES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}
SCHEDULERS = (
    "UniPCMultistepScheduler",
    "DPMSolverMultistepScheduler",
    "DDIMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "DDPMScheduler",
)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


Coordinate = Annotated[float, Field(ge=-MAX_EXTENT, le=MAX_EXTENT)]
Angle = Annotated[float, Field(ge=-MAX_ANGLE, le=MAX_ANGLE)]
Vec3 = Annotated[list[Coordinate], Field(min_length=3, max_length=3)]
Rotation3 = Annotated[list[Angle], Field(min_length=3, max_length=3)]
PositiveFloat = Annotated[float, Field(gt=0, le=MAX_EXTENT)]
NonNegativeFloat = Annotated[float, Field(ge=0, le=MAX_EXTENT)]
ObjectName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[A-Za-z0-9_.\-]+$")]
Fraction = Annotated[float, Field(ge=0, le=1)]
ClassRef = Union[str, int]


def _check_class(value: ClassRef) -> ClassRef:
    try:
        resolve_class(value)
    except UnknownClassError as err:
        raise ValueError(str(err)) from None
    return value


SemanticClassRef = Annotated[ClassRef, Field(description="ADE20K class name or 0-based palette index")]


# --------------------------------------------------------------------------------------------
# Explicit primitives
# --------------------------------------------------------------------------------------------


class _PrimitiveBase(StrictModel):
    name: ObjectName
    position: Vec3 = Field(description="centre of the primitive's bounding box, metres")
    rotation: Rotation3 = Field(default_factory=lambda: [0.0, 0.0, 0.0], description="XYZ Euler, degrees")
    semantic_class: SemanticClassRef = Field(alias="class")

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("semantic_class")
    @classmethod
    def _class_ok(cls, v):
        return _check_class(v)

    @property
    def resolved_class(self) -> SemanticClass:
        return resolve_class(self.semantic_class)


class BoxPrimitive(_PrimitiveBase):
    primitive: Literal["box"]
    size: Annotated[list[PositiveFloat], Field(min_length=3, max_length=3)] = Field(description="x, y, z extents")


class PlanePrimitive(_PrimitiveBase):
    primitive: Literal["plane"]
    size: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] = Field(
        description="x, y extents; the plane lies in its local XY, normal +Z"
    )


class CylinderPrimitive(_PrimitiveBase):
    primitive: Literal["cylinder"]
    radius: PositiveFloat
    height: PositiveFloat
    segments: Annotated[int, Field(ge=3, le=256)] = 32


Primitive = Annotated[Union[BoxPrimitive, PlanePrimitive, CylinderPrimitive], Field(discriminator="primitive")]


# --------------------------------------------------------------------------------------------
# Procedural room generator
# --------------------------------------------------------------------------------------------

WallName = Literal["north", "south", "east", "west"]
EdgeIndex = Annotated[int, Field(ge=0, lt=MAX_POLYGON_VERTICES)]
FurnitureKind = Literal[
    "sofa", "armchair", "coffee_table", "table", "chair", "bed", "nightstand", "shelf",
    "bookcase", "cabinet", "desk", "lamp", "plant", "rug", "painting", "tv_stand",
    # kitchens, bathrooms, dining rooms, offices, hallways (procedural/furniture_library.py)
    "counter", "kitchen_sink", "stove", "refrigerator", "wall_cabinet", "range_hood", "dishwasher",
    "bathtub", "shower", "toilet", "washbasin", "mirror", "towel_radiator",
    "sideboard", "office_chair", "wardrobe", "chest_of_drawers", "bench", "stool",
    "asset",  # a model file placed by the rules of its class's kind (FurnitureSpec)
]
ModelPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_LENGTH)]
Units = Literal["auto", "m", "cm", "mm", "in", "ft"]
UpAxis = Literal["auto", "Y", "Z"]


def _check_model_path(path: str) -> str:
    """A model file name greybox can import: a known extension, and OBJ's missing units said elsewhere."""
    suffix = PurePosixPath(path.replace("\\", "/")).suffix.lower()
    if suffix not in MODEL_EXTENSIONS:
        raise ValueError(
            f"{path!r} is not a model greybox imports (extension {suffix or 'none'!r}); use one of "
            f"{', '.join(MODEL_EXTENSIONS)} (export other formats to glTF, FBX or USD first)"
        )
    return path


def model_suffix(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/")).suffix.lower()


def _check_obj_frame(file: str | None, units: str, up_axis: str, where: str) -> None:
    if file is not None and model_suffix(file) == ".obj":
        missing = [k for k, v in (("units", units), ("up_axis", up_axis)) if v == "auto"]
        if missing:
            raise ValueError(
                f"{where}an OBJ file carries neither units nor an up axis: give {' and '.join(missing)} "
                "(e.g. units = \"m\", up_axis = \"Y\", what the exporting tool used)"
            )


class OpeningSpec(StrictModel):
    """A door or window cut into a wall. ``offset`` is from the wall's start (west or south end)
    to the opening's centre, metres along the wall. ``glass`` (windows): a pane of class window
    in the middle of the wall's thickness (false: an open hole)."""

    wall: WallName
    offset: PositiveFloat
    width: PositiveFloat
    height: PositiveFloat
    sill: NonNegativeFloat = 0.0
    glass: bool = True


class FurnitureSpec(StrictModel):
    """One piece from the parametric library. ``name`` is its stable name (seeds its randomness);
    ``size`` overrides the drawn size; ``wall`` pins it against a wall (``[generator.room]``: a
    wall's name; a floor plan's room: the index of the polygon edge); ``position`` pins its centre
    on the floor (x, y).

    ``kind = "asset"``: a model file (``file``, relative to the template's folder, with ``units``
    and ``up_axis`` as in ``[[imports]]``) placed by the same rules, its size the model's measured
    bounds; ``class`` is required and picks the rules (a chair goes to the last table, a sofa
    against a wall); its front is the model's -Y side in Blender's axes (glTF's +Z, Blender's front
    view), its base the model's lowest point."""

    kind: FurnitureKind
    name: ObjectName | None = None
    size: Annotated[list[PositiveFloat], Field(min_length=3, max_length=3)] | None = None
    wall: WallName | EdgeIndex | None = None
    position: Annotated[list[Coordinate], Field(min_length=2, max_length=2)] | None = None
    rotation: Angle | None = Field(default=None, description="yaw, degrees")
    semantic_class: SemanticClassRef | None = Field(default=None, alias="class")
    file: ModelPath | None = Field(None, description="kind = 'asset': the model file, relative to the template's folder")
    units: Units = Field("auto", description="kind = 'asset': the model's unit (auto: what the file says)")
    up_axis: UpAxis = Field("auto", description="kind = 'asset': the model's up axis (auto: what the file says)")

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("semantic_class")
    @classmethod
    def _class_ok(cls, v):
        return v if v is None else _check_class(v)

    @field_validator("file")
    @classmethod
    def _file_ok(cls, v):
        return v if v is None else _check_model_path(v)

    @model_validator(mode="after")
    def _asset(self):
        if self.kind == "asset":
            if self.file is None:
                raise ValueError("kind 'asset' needs file = \"path/to/model.glb\" (relative to the template's folder)")
            if self.semantic_class is None:
                raise ValueError("kind 'asset' needs class = \"chair\" (an ADE20K class: it also picks the placement rules)")
            if self.size is not None:
                raise ValueError("an asset's size is its model's measured bounds: remove size (scale the model in its file)")
            _check_obj_frame(self.file, self.units, self.up_axis, "")
        elif self.file is not None or self.units != "auto" or self.up_axis != "auto":
            raise ValueError(f"file, units and up_axis belong to kind = 'asset' pieces, not to a {self.kind!r}")
        return self

    @property
    def stable_name(self) -> str:
        if self.name is None and self.kind == "asset" and self.file:
            stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", PurePosixPath(self.file.replace("\\", "/")).stem).strip("._")
            return stem[:MAX_NAME_LENGTH] or "asset"
        return self.name or self.kind


def _name_key(piece: FurnitureSpec) -> str:
    """The key a piece's stable name comes from: its name, an asset's file, or its kind."""
    return "name" if piece.name is not None else ("file" if piece.kind == "asset" else "kind")


class RoomSpec(StrictModel):
    footprint: Literal["rectangle", "l_shape"] = "rectangle"
    width: PositiveFloat = Field(5.0, description="x extent, metres")
    depth: PositiveFloat = Field(4.0, description="y extent, metres")
    height: PositiveFloat = Field(2.7, description="floor to ceiling, metres")
    wall_thickness: PositiveFloat = 0.15
    l_cut: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] | None = Field(
        None, description="l_shape: x, y size of the corner removed from the north-east"
    )
    doors: Annotated[list[OpeningSpec], Field(max_length=MAX_OPENINGS)] = Field(default_factory=list)
    windows: Annotated[list[OpeningSpec], Field(max_length=MAX_OPENINGS)] = Field(default_factory=list)
    furniture: Annotated[list[FurnitureSpec], Field(max_length=MAX_FURNITURE)] = Field(default_factory=list)
    ceiling: bool = True

    @model_validator(mode="after")
    def _l_shape(self):
        if self.footprint == "l_shape":
            if self.l_cut is None:
                raise ValueError("footprint 'l_shape' needs l_cut = [x, y], the corner to remove")
            if self.l_cut[0] >= self.width or self.l_cut[1] >= self.depth:
                raise ValueError(
                    f"l_cut {self.l_cut} must be smaller than the room ({self.width} x {self.depth})"
                )
        return self


# --------------------------------------------------------------------------------------------
# Procedural floor plan: rooms sharing walls, doors between them, windows with glass
# --------------------------------------------------------------------------------------------

RoomType = Literal["living_room", "bedroom", "kitchen", "dining_room", "bathroom", "office", "hallway"]
RoomName = Annotated[str, Field(min_length=1, max_length=MAX_ROOM_NAME_LENGTH, pattern=r"^[A-Za-z0-9_\-]+$")]
Vec2 = Annotated[list[Coordinate], Field(min_length=2, max_length=2)]


class PlanRoomSpec(StrictModel):
    """One room of a floor plan. Its ``polygon`` (counter-clockwise, metres) runs along the centre
    lines of its walls: every wall is centred on the edge it stands on, so the room's floor inside
    the walls is the polygon inset by half the wall thickness. Edge ``i`` runs from vertex ``i`` to
    vertex ``i + 1``. ``rect = [x, y, width, depth]`` is the rectangle's shorthand (edges: 0 south,
    1 east, 2 north, 3 west)."""

    name: RoomName
    type: RoomType | None = Field(None, description="what the room is for; furniture = 'auto' needs it")
    polygon: Annotated[list[Vec2], Field(min_length=3, max_length=MAX_POLYGON_VERTICES)] | None = None
    rect: Annotated[list[Annotated[float, Field(ge=-MAX_EXTENT, le=MAX_EXTENT)]], Field(min_length=4, max_length=4)] | None = None
    furniture: Literal["auto"] | Annotated[list[FurnitureSpec], Field(max_length=MAX_FURNITURE)] = Field(
        default_factory=list, description="'auto' (furnish by type and seed) or pieces as in [generator.room]")

    @model_validator(mode="after")
    def _shape(self):
        if (self.polygon is None) == (self.rect is None):
            raise ValueError("give the room either polygon = [[x, y], ...] (counter-clockwise) or rect = [x, y, width, depth]")
        if self.rect is not None and (self.rect[2] <= 0 or self.rect[3] <= 0):
            raise ValueError(f"rect {self.rect}: width and depth (the third and fourth numbers) must be positive")
        if self.furniture == "auto" and self.type is None:
            raise ValueError("furniture = 'auto' furnishes by the room's type: set type (living_room, bedroom, "
                             "kitchen, dining_room, bathroom, office or hallway)")
        return self

    @property
    def vertices(self) -> list[tuple[float, float]]:
        if self.polygon is not None:
            return [(float(x), float(y)) for x, y in self.polygon]
        x, y, w, d = (float(v) for v in self.rect)
        return [(x, y), (x + w, y), (x + w, y + d), (x, y + d)]


class PlanDoorSpec(StrictModel):
    """A door in the wall two rooms share, or in a room's outer wall (``between = [room, "outside"]``).
    It opens into the first room named. ``offset``: from the wall's start to the door's centre
    (a shared wall starts where the first room's edge reaches it; an outer wall at its edge's
    start vertex); default centred."""

    between: Annotated[list[RoomName], Field(min_length=2, max_length=2)]
    wall: EdgeIndex | None = Field(None, description="with 'outside': the room's edge index (needed when it has several outer edges)")
    offset: PositiveFloat | None = None
    width: PositiveFloat = 0.9
    height: PositiveFloat = 2.1


class PlanWindowSpec(StrictModel):
    """A window in a room's outer wall: ``wall`` is the polygon edge index, ``offset`` runs from the
    edge's start vertex to the window's centre (default centred on the wall). ``glass``: a pane of
    class window in the middle of the wall's thickness (false: an open hole)."""

    room: RoomName
    wall: EdgeIndex
    offset: PositiveFloat | None = None
    width: PositiveFloat = 1.2
    height: PositiveFloat = 1.3
    sill: NonNegativeFloat = 0.9
    glass: bool = True


class FloorPlanSpec(StrictModel):
    wall_thickness: Annotated[float, Field(gt=0, le=2.0)] = 0.15
    height: PositiveFloat = Field(2.7, description="floor to ceiling, metres")
    ceiling: bool = True
    rooms: Annotated[list[PlanRoomSpec], Field(min_length=1, max_length=MAX_ROOMS)]
    doors: Annotated[list[PlanDoorSpec], Field(max_length=MAX_PLAN_OPENINGS)] = Field(default_factory=list)
    windows: Annotated[list[PlanWindowSpec], Field(max_length=MAX_PLAN_OPENINGS)] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Procedural building: a floor plan as the ground floor, storeys above it, facades, a roof, the ground
# --------------------------------------------------------------------------------------------


class FacadeWindowsSpec(StrictModel):
    """Windows on every exterior wall of every storey: centres ``spacing`` metres apart, centred on
    each wall (as many as fit its usable length); the ground floor leaves out those that would
    overlap an entrance door."""

    spacing: PositiveFloat = Field(2.5, description="centre to centre along a wall, metres")
    width: PositiveFloat = 1.2
    height: PositiveFloat = 1.5
    sill: NonNegativeFloat = 0.9
    glass: bool = True


class BuildingSpec(StrictModel):
    """The outside of a building whose ground floor is ``[generator.floor_plan]``: ``storeys`` copies
    of the plan ``storey_height`` apart (the upper ones without doors to the outside), floor slabs
    between them, a facade over the exterior walls, a roof and the ground."""

    storeys: Annotated[int, Field(ge=1, le=MAX_STOREYS)] = 1
    storey_height: PositiveFloat = Field(3.0, description="floor to floor, metres; at least the plan's height plus 0.2 (the slabs)")
    facade_windows: FacadeWindowsSpec | None = Field(
        None, description="windows on every exterior wall; without it, the plan's own windows on every storey")
    roof: Literal["flat", "gable", "hip"] = "flat"
    roof_pitch: Annotated[float, Field(gt=0, lt=75)] = Field(35.0, description="gable and hip: the slope, degrees")
    roof_overhang: Annotated[float, Field(ge=0, le=5)] = Field(0.3, description="eaves beyond the facade, metres")
    ground: Literal["grass", "road", "floor"] = Field("grass", description="the ground plane's class")
    ground_size: Annotated[float, Field(gt=0, le=MAX_EXTENT)] = Field(
        200.0, description="the side of the square ground plane centred under the building, metres")


class GeneratorSpec(StrictModel):
    kind: Literal["room", "floor_plan", "building", "none"] = "room"
    room: RoomSpec = Field(default_factory=RoomSpec)
    floor_plan: FloorPlanSpec | None = None
    building: BuildingSpec | None = None

    @model_validator(mode="after")
    def _floor_plan(self):
        if self.kind in ("floor_plan", "building") and self.floor_plan is None:
            what = "its ground floor" if self.kind == "building" else "its rooms"
            raise ValueError(f"kind = {self.kind!r} needs a [generator.floor_plan] table with {what}")
        if self.kind not in ("floor_plan", "building") and self.floor_plan is not None:
            raise ValueError(f"[generator.floor_plan] is given but generator.kind is {self.kind!r}; set kind = 'floor_plan'")
        if self.kind != "building" and self.building is not None:
            raise ValueError(f"[generator.building] is given but generator.kind is {self.kind!r}; set kind = 'building'")
        return self

    @property
    def has_plan(self) -> bool:
        """Whether the generator builds a floor plan (``floor_plan``, or ``building`` whose ground floor it is)."""
        return self.kind in ("floor_plan", "building")

    @property
    def building_spec(self) -> "BuildingSpec":
        return self.building if self.building is not None else BuildingSpec()


# --------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------

Easing = Literal["linear", "ease_in", "ease_out", "ease_in_out"]


class StaticPath(StrictModel):
    kind: Literal["static"]
    position: Vec3
    look_at: Vec3


class OrbitPath(StrictModel):
    """Circle of ``radius`` around ``center`` at ``height`` (absolute z), from ``start_angle`` to
    ``end_angle`` degrees (0 = +x, counter-clockwise seen from above), looking at ``look_at``
    (default: the centre)."""

    kind: Literal["orbit"]
    center: Vec3
    radius: PositiveFloat
    height: Coordinate
    start_angle: Angle = 0.0
    end_angle: Angle = 360.0
    look_at: Vec3 | None = None
    easing: Easing = "linear"


class DollyPath(StrictModel):
    kind: Literal["dolly"]
    start: Vec3
    end: Vec3
    look_at: Vec3
    easing: Easing = "ease_in_out"


class WalkthroughPath(StrictModel):
    """Centripetal Catmull-Rom spline through ``points`` (at least 3), at constant speed; looks at
    ``look_at`` when given, otherwise along the path."""

    kind: Literal["walkthrough"]
    points: Annotated[list[Vec3], Field(min_length=3, max_length=MAX_PATH_POINTS)]
    look_at: Vec3 | None = None
    look_ahead: PositiveFloat = Field(0.5, description="metres ahead on the path to look at when look_at is unset")


TourRoom = Annotated[str, Field(min_length=1, max_length=MAX_ROOM_NAME_LENGTH + 12,
                                pattern=r"^(storey[0-9]+/)?[A-Za-z0-9_\-]+$")]


class TourPath(StrictModel):
    """A walkthrough planned through a floor plan: from an open spot of the first room through the
    door between each two consecutive rooms (through its centre) to an open spot of the last, at
    ``eye_height`` above the floor, at least ``clearance`` metres from walls and furniture on every
    frame, at constant speed over the frame range, looking ``look_ahead`` metres ahead along the
    path. A building's upper rooms are ``storey<N>/<room>``; a tour stays on one storey."""

    kind: Literal["tour"]
    rooms: Annotated[list[TourRoom], Field(min_length=2, max_length=MAX_ROOMS)]
    eye_height: PositiveFloat = Field(1.6, description="metres above the floor")
    clearance: Annotated[float, Field(ge=0, le=5)] = Field(0.3, description="metres from walls and furniture, every frame")
    look_ahead: PositiveFloat = Field(1.0, description="metres ahead on the path to look at")


CameraPath = Annotated[Union[StaticPath, OrbitPath, DollyPath, WalkthroughPath, TourPath], Field(discriminator="kind")]


class CameraSpec(StrictModel):
    """The camera. ``type = "orthographic"`` needs ``ortho_scale`` (metres across the image width)
    and has no perspective; ``shift_x``, ``shift_y`` move the lens (fractions of the image width,
    Blender's convention: +x right, +y up), e.g. to keep verticals vertical while framing a tall
    facade. ``up``: the world direction that is up in the image (default +Z); where the camera looks
    along it (a plan view straight down), the image keeps the roll of its nearest frame that does
    not, and a camera that always looks along it takes the world axis next in Z, Y, X as up (give
    ``up = [0, 1, 0]`` for plan views with north up). ``allow_outside``: a camera outside every room
    of an interior scene is an error unless this is true (buildings default to true)."""

    type: Literal["perspective", "orthographic"] = "perspective"
    focal_length: Annotated[float, Field(gt=1, le=1000)] = Field(24.0, description="mm")
    sensor_width: Annotated[float, Field(gt=1, le=100)] = Field(36.0, description="mm")
    ortho_scale: Annotated[float, Field(gt=0, le=MAX_EXTENT)] | None = Field(
        None, description="orthographic: metres across the image width")
    shift_x: Annotated[float, Field(ge=-MAX_SHIFT, le=MAX_SHIFT)] = Field(0.0, description="fraction of the image width, +x right")
    shift_y: Annotated[float, Field(ge=-MAX_SHIFT, le=MAX_SHIFT)] = Field(0.0, description="fraction of the image width, +y up")
    up: Vec3 | None = Field(None, description="the world direction up in the image (default [0, 0, 1])")
    allow_outside: bool | None = Field(
        None, description="allow a camera outside every room (default: true for buildings, false for rooms and plans)")
    clip_start: Annotated[float, Field(ge=MIN_CLIP_START, le=MAX_EXTENT)] = 0.05
    clip_end: PositiveFloat = 200.0
    path: CameraPath

    @field_validator("up")
    @classmethod
    def _up(cls, v):
        if v is not None and math.sqrt(sum(c * c for c in v)) < 1e-6:
            raise ValueError("up must not be the zero vector; give the world direction that is up in the image, e.g. [0, 1, 0]")
        return v

    @model_validator(mode="after")
    def _orthographic(self):
        if self.type == "orthographic" and self.ortho_scale is None:
            raise ValueError("type = 'orthographic' needs ortho_scale (the metres across the image width), e.g. ortho_scale = 12.0")
        if self.type != "orthographic" and self.ortho_scale is not None:
            raise ValueError("ortho_scale applies to orthographic cameras; set type = 'orthographic' or remove ortho_scale")
        return self


# --------------------------------------------------------------------------------------------
# Render and passes
# --------------------------------------------------------------------------------------------

ResolutionSide = Annotated[int, Field(ge=8, le=MAX_RESOLUTION, multiple_of=8)]


class RenderSpec(StrictModel):
    resolution: Annotated[list[ResolutionSide], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [512, 512], description="width, height; multiples of 8, at most 8192"
    )
    frame_start: Annotated[int, Field(ge=0, le=MAX_FRAME_NUMBER)] = 1
    frame_end: Annotated[int, Field(ge=0, le=MAX_FRAME_NUMBER)] = Field(
        24, description=f"last frame, inclusive; a shot has at most {MAX_FRAMES_PER_SHOT} frames"
    )
    fps: Annotated[int, Field(ge=1, le=240)] = 24
    video_codec: Literal["h264", "prores", "png"] = Field(
        "h264", description="h264: video.mp4 (H.264 High, 4:2:0, BT.709 limited range); prores: video.mov "
        "(ProRes 422 HQ, 10-bit 4:2:2, BT.709 limited range); png: video.mov (lossless RGB PNG frames, full range)",
    )
    video_quality: Annotated[int, Field(ge=0, le=51)] | None = Field(
        None, description="H.264 CRF (0 lossless .. 51 worst; default 18); h264 only: ProRes HQ and PNG have no quality knob",
    )

    @field_validator("frame_end")
    @classmethod
    def _range(cls, frame_end: int, info: ValidationInfo) -> int:
        frame_start = info.data.get("frame_start")
        if frame_start is None:  # frame_start itself is invalid (reported on its own)
            return frame_end
        if frame_end < frame_start:
            raise ValueError(f"frame_end {frame_end} is before frame_start {frame_start}; set frame_end >= frame_start")
        count = frame_end - frame_start + 1
        if count > MAX_FRAMES_PER_SHOT:
            raise ValueError(
                f"the shot would have {count} frames ({frame_start}-{frame_end}); a shot has at most "
                f"{MAX_FRAMES_PER_SHOT} frames: set frame_end <= {frame_start + MAX_FRAMES_PER_SHOT - 1}, "
                "or split the range into several shots (templates) and render the part you need with --frames"
            )
        return frame_end

    @field_validator("video_quality")
    @classmethod
    def _quality_for_h264(cls, v, info: ValidationInfo):
        codec = info.data.get("video_codec", "h264")
        if v is not None and codec != "h264":
            raise ValueError(
                f"is the H.264 CRF and does not apply to video_codec {codec!r} (ProRes is 422 HQ, PNG lossless); "
                "remove render.video_quality or use video_codec 'h264'"
            )
        return v

    @property
    def width(self) -> int:
        return self.resolution[0]

    @property
    def height(self) -> int:
        return self.resolution[1]

    @property
    def frames(self) -> range:
        return range(self.frame_start, self.frame_end + 1)


class PassesSpec(StrictModel):
    control: Annotated[list[ControlPass], Field(min_length=1)] = Field(
        default_factory=lambda: list(CONTROL_PASSES)
    )
    depth_normalization: Literal["shot", "frame", "fixed"] = Field(
        "shot", description="shot: one range over the whole camera path; frame: per frame; fixed: depth_range"
    )
    depth_range: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] | None = Field(
        None, description="near, far in metres, for depth_normalization = 'fixed'"
    )
    seg_background: SemanticClassRef = Field("sky", description="class painted where no object is hit")
    line_crease_angle: Annotated[float, Field(gt=0, lt=180)] = Field(30.0, description="degrees")
    line_width: Annotated[int, Field(ge=1, le=8)] = 1
    save_blend: bool = Field(False, description="also write scene/scene.blend (or --save-blend)")
    exr_channels: Annotated[
        list[Literal["depth", "normal", "flow", "instance", "class", "uv", "float_ids", "cryptomatte"]], Field(min_length=1)
    ] = Field(
        default_factory=lambda: list(EXR_CHANNEL_GROUPS),
        description="pass groups passes/NNNN.exr holds: depth, normal, flow (forward and backward), instance, class, "
        "uv, float_ids (float32 copies of the ids), cryptomatte (object and class layers); all by default. "
        "Control images do not need them; a later stage that reads one may not lose it",
    )
    exr_compression: Literal["none", "rle", "zips", "zip", "piz", "zstd"] = Field(
        "none", description="lossless EXR compression; none is fastest to write (zstd needs OpenEXR 3.4+ readers)",
    )

    @field_validator("exr_compression", mode="before")
    @classmethod
    def _lossless(cls, v):
        if isinstance(v, str) and v.lower() in LOSSY_EXR_COMPRESSIONS:
            raise ValueError(
                f"{v!r} is lossy (it would change the exact depth, flow and ids); use one of {', '.join(EXR_COMPRESSIONS)}"
            )
        return v

    @field_validator("exr_channels")
    @classmethod
    def _unique_groups(cls, v):
        dupes = sorted({g for g in v if v.count(g) > 1})
        if dupes:
            raise ValueError(f"lists {', '.join(dupes)} more than once; name each pass group once")
        return v

    @field_validator("seg_background")
    @classmethod
    def _bg(cls, v):
        return _check_class(v)

    @model_validator(mode="after")
    def _fixed(self):
        if self.depth_normalization == "fixed":
            if self.depth_range is None:
                raise ValueError("depth_normalization 'fixed' needs depth_range = [near, far]")
        if self.depth_range is not None and self.depth_range[0] >= self.depth_range[1]:
            raise ValueError(f"depth_range {self.depth_range}: near must be less than far")
        return self


# --------------------------------------------------------------------------------------------
# Style: the generative stage, with diffusers' names
# --------------------------------------------------------------------------------------------


class ControlNetSpec(StrictModel):
    pass_name: ControlPass = Field(alias="pass")
    model: Annotated[str, Field(min_length=1)] = Field(description="hub id or local folder")
    scale: Annotated[float, Field(ge=0, le=5)] = Field(1.0, description="controlnet_conditioning_scale")
    start: Fraction = Field(0.0, description="control_guidance_start")
    end: Fraction = Field(1.0, description="control_guidance_end")

    model_config = ConfigDict(populate_by_name=True)

    @model_validator(mode="after")
    def _window(self):
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be greater than start {self.start}")
        return self


class ConsistencySpec(StrictModel):
    """How frames are made consistent: ``per_frame`` (each alone), ``flow_warp`` (from the
    previous output warped by exact flow), ``keyframes`` (stylised keyframes projected into
    per-object textures)."""

    mode: ConsistencyMode = "per_frame"
    anchor_attention: bool = Field(False, description="flow_warp: also attend to the first frame")
    keyframe_coverage_threshold: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.1, description="keyframes: add a keyframe when this share of visible surface is untextured"
    )
    max_keyframes: Annotated[int, Field(ge=1, le=1000)] = 16
    min_generate_share: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.01,
        description="flow_warp and keyframes: a frame with fewer new or untextured pixels than this share of it "
        "fills them from their neighbours instead of running the generator",
    )


ObjectGlob = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH * 2)]
_GLOB_CHARACTERS = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]+")


def _check_globs(values: list[str]) -> list[str]:
    for value in values:
        if not _GLOB_CHARACTERS.fullmatch(value):
            raise ValueError(f"{value!r}: an object name or glob holds only letters, digits, '_', '.', '-' and the glob "
                             "characters * ? [ ] ! (object names are as scene/layout.json lists them)")
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"lists {', '.join(dupes)} more than once; name each glob once")
    return values


def _check_classes(values: list) -> list:
    for value in values:
        _check_class(value)
    dupes = sorted({str(v) for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"lists {', '.join(dupes)} more than once; name each class once")
    return values


# The target lists ``[[style.regions]]`` and ``[[style.reference_images]]`` share, checked as they are read.
ObjectGlobs = Annotated[list[ObjectGlob], Field(max_length=MAX_TARGETS), AfterValidator(_check_globs)]
ClassRefs = Annotated[list[SemanticClassRef], Field(max_length=MAX_TARGETS), AfterValidator(_check_classes)]


class RegionSpec(StrictModel):
    """A prompt for part of the scene: ``prompt`` conditions only the pixels of the objects named by
    ``objects`` (stable names as in ``scene/layout.json``, shell-style globs allowed: ``chair_*``)
    and of the objects of ``classes`` (ADE20K class names or palette indices), on every frame; the
    global ``style.prompt`` conditions the rest. A pixel named by several regions takes the last
    one's prompt. ``negative_prompt`` replaces ``style.negative_prompt`` inside the region (empty:
    the global one applies there too)."""

    objects: ObjectGlobs = Field(default_factory=list, description="stable object names, globs allowed (fnmatch, case-sensitive)")
    classes: ClassRefs = Field(default_factory=list, description="ADE20K class names or palette indices")
    prompt: Annotated[str, Field(min_length=1)]
    negative_prompt: str = ""

    @model_validator(mode="after")
    def _targets(self):
        if not self.objects and not self.classes:
            raise ValueError('names no objects and no classes: give objects = ["sofa"] (globs allowed), classes = ["rug"], or both')
        return self


class ReferenceImageSpec(StrictModel):
    """A reference image for the IP-Adapter (``[style.ip_adapter]``): ``image`` is a file relative to
    the template's folder (it must resolve there, through any symbolic link), ``scale`` its
    IP-Adapter scale. With ``objects`` or ``classes`` (as in ``[[style.regions]]``) it applies only
    inside those objects' masks; without them, to the whole frame."""

    image: Annotated[str, Field(min_length=1, max_length=MAX_PATH_LENGTH)]
    scale: Annotated[float, Field(gt=0, le=3)] = Field(1.0, description="IP-Adapter scale")
    objects: ObjectGlobs = Field(default_factory=list)
    classes: ClassRefs = Field(default_factory=list)

    @field_validator("image")
    @classmethod
    def _image_ok(cls, v):
        suffix = ("." + v.rsplit(".", 1)[-1].lower()) if "." in v.replace("\\", "/").rsplit("/", 1)[-1] else ""
        if suffix not in REFERENCE_IMAGE_SUFFIXES:
            raise ValueError(f"{v!r} is not an image greybox reads (extension {suffix or 'none'!r}); use one of "
                             f"{', '.join(REFERENCE_IMAGE_SUFFIXES)}")
        return v

    @property
    def masked(self) -> bool:
        return bool(self.objects or self.classes)


class IpAdapterSpec(StrictModel):
    """The IP-Adapter the reference images go through, loaded with diffusers' ``load_ip_adapter``
    (safetensors only), resolved before anything renders (exit 3 when its weights cannot be had)."""

    model: Annotated[str, Field(min_length=1)] = Field("h94/IP-Adapter", description="hub id or local folder")
    subfolder: str = Field("models", description="folder of the weight file inside model")
    weight_name: Annotated[str, Field(min_length=1)] = "ip-adapter_sd15.safetensors"
    image_encoder: str = Field(
        "", description="hub id or folder of the CLIP vision encoder (CLIPVisionModelWithProjection); "
        "empty: model's <subfolder>/image_encoder")

    @field_validator("weight_name")
    @classmethod
    def _safetensors(cls, v):
        if not v.endswith(".safetensors"):
            raise ValueError(f"{v!r} is not a .safetensors file; greybox loads safetensors weights only (pickled "
                             ".bin/.pt files can run code): name the adapter's .safetensors file")
        if "/" in v or "\\" in v:
            raise ValueError(f"{v!r} is a path; give the file name here and its folder in style.ip_adapter.subfolder")
        return v

    @field_validator("subfolder")
    @classmethod
    def _relative(cls, v):
        parts = v.replace("\\", "/").split("/")
        if v.startswith(("/", "\\")) or ".." in parts:
            raise ValueError(f"{v!r} must be a folder inside style.ip_adapter.model (no absolute path, no '..')")
        return v


class BrandColorSpec(StrictModel):
    """A colour that holds on some objects: inside their pixels the hue and chroma are the brand
    colour's and only the lightness (light, texture) varies (stylize/brand_colours.py)."""

    target: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="an object's stable name as scene/layout.json lists it (globs allowed), or a class name")
    color: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")] = Field(description="sRGB hex, e.g. '#1F4E79'")


class LookSpec(StrictModel):
    """Where a shot's look (its per-object texture atlases) starts from."""

    from_: Annotated[str, Field(max_length=4096)] = Field(
        "", alias="from",
        description="'' (a new look), a job folder (its look), a look id (`greybox inspect DIR` shows it), or "
        "'previous' (the look of the shot before this one in the same command)")

    model_config = ConfigDict(populate_by_name=True)


class StyleSpec(StrictModel):
    stylizer: Stylizer = "npr"
    prompt: str = ""
    negative_prompt: str = ""
    model: Annotated[str, Field(min_length=1)] = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    controlnets: Annotated[list[ControlNetSpec], Field(max_length=len(CONTROL_PASSES))] = Field(default_factory=list)
    scheduler: Literal[SCHEDULERS] = "UniPCMultistepScheduler"  # type: ignore[valid-type]
    num_inference_steps: Annotated[int, Field(ge=1, le=1000)] = 20
    guidance_scale: Annotated[float, Field(ge=0, le=50)] = 7.5
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = Field(None, description="noise seed (0 <= seed < 2**63); defaults to the scene seed")
    seed_mode: Literal["per_frame", "fixed"] = Field(
        "per_frame", description="per_frame: frame f's seed derives from (seed, f); fixed: every frame uses seed"
    )
    strength: Annotated[float, Field(gt=0, le=1)] = Field(0.75, description="img2img strength")
    init_image: Literal["none", "npr_draft"] = Field(
        "none", description="img2img source for per_frame mode; flow_warp and keyframes name their own"
    )
    batch_size: Annotated[int, Field(ge=1, le=64)] = 1
    consistency: ConsistencySpec = Field(default_factory=ConsistencySpec)
    palette: Annotated[
        dict[str, Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=3, max_length=3)]], Field(max_length=150)
    ] = Field(default_factory=dict, description="NPR flat colour per class name, RGB 0..255")
    light_direction: Vec3 = Field(
        default_factory=lambda: [0.4, -0.5, 0.75], description="NPR key light, world space, towards the light"
    )
    toon_levels: Annotated[int, Field(ge=2, le=16)] = 3
    regions: Annotated[list[RegionSpec], Field(max_length=MAX_REGIONS)] = Field(
        default_factory=list, description="[[style.regions]]: a prompt per object or class (diffusion)")
    reference_images: Annotated[list[ReferenceImageSpec], Field(max_length=MAX_REFERENCE_IMAGES)] = Field(
        default_factory=list, description="[[style.reference_images]]: IP-Adapter images, whole frame or masked (diffusion)")
    ip_adapter: IpAdapterSpec = Field(default_factory=IpAdapterSpec)
    brand_colors: Annotated[list[BrandColorSpec], Field(max_length=256)] = Field(default_factory=list)
    look: LookSpec = Field(default_factory=LookSpec)

    @field_validator("consistency", mode="before")
    @classmethod
    def _consistency_shorthand(cls, v):
        return {"mode": v} if isinstance(v, str) else v

    @field_validator("palette")
    @classmethod
    def _palette_classes(cls, v):
        for name in v:
            _check_class(name)
        return v

    @field_validator("light_direction")
    @classmethod
    def _light(cls, v):
        if math.sqrt(sum(c * c for c in v)) < 1e-6:
            raise ValueError("light_direction must not be the zero vector")
        return v

    @model_validator(mode="after")
    def _baked_needs_a_look(self):
        if self.stylizer == "baked" and not self.look.from_:
            raise ValueError("stylizer 'baked' renders from a look: set style.look.from to a job folder or a look id")
        return self

    @model_validator(mode="after")
    def _unique_passes(self):
        seen = [c.pass_name for c in self.controlnets]
        dupes = sorted({p for p in seen if seen.count(p) > 1})
        if dupes:
            raise ValueError(f"controlnets lists pass {', '.join(dupes)} more than once; keep one entry per pass")
        return self



# --------------------------------------------------------------------------------------------
# Models from files
# --------------------------------------------------------------------------------------------

Glob = Annotated[str, Field(min_length=1, max_length=MAX_PATH_LENGTH)]


class ClassRule(StrictModel):
    """One rule of ``imports.N.classes``: exactly one of ``object`` (a glob over node paths),
    ``material`` (a glob over the object's material names) or ``collection`` (a glob over the
    names of the collections holding it), and the ``class`` it gives. The first rule that matches wins."""

    object: Glob | None = None
    material: Glob | None = None
    collection: Glob | None = None
    semantic_class: SemanticClassRef = Field(alias="class")

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("semantic_class")
    @classmethod
    def _class_ok(cls, v):
        return _check_class(v)

    @model_validator(mode="after")
    def _one_pattern(self):
        given = [k for k in ("object", "material", "collection") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a class rule takes exactly one of object, material or collection (a glob) besides class; "
                f"got {', '.join(given) if given else 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("object", "material", "collection") if getattr(self, k) is not None)

    @property
    def pattern(self) -> str:
        return getattr(self, self.kind)


class ImportSpec(StrictModel):
    """A model file in the scene (``[[imports]]``). ``name`` is its stable name: its objects are named
    ``<name><node path>`` and their ids, seeds and store keys derive from it. ``file`` is relative to
    the template's folder (or inside a ``--asset-root``). ``position``, ``rotation`` (XYZ Euler,
    degrees) and ``scale`` apply on top of the file's own transforms, after ``units`` and
    ``up_axis`` (``auto``: what the file says; OBJ says neither). ``objects``: globs over node paths
    (default: every mesh). ``collection``: .blend only, the collection to append (default: every
    object). ``class``: the default class; ``classes``: rules, first match wins; an object's
    ``greybox_class`` custom property wins over both. ``camera``: a camera's node path in the file,
    the shot camera (then the template has no ``[camera]`` table)."""

    name: ObjectName
    file: ModelPath
    position: Vec3 = Field(default_factory=lambda: [0.0, 0.0, 0.0], description="metres")
    rotation: Rotation3 = Field(default_factory=lambda: [0.0, 0.0, 0.0], description="XYZ Euler, degrees")
    scale: Union[PositiveFloat, Annotated[list[PositiveFloat], Field(min_length=3, max_length=3)]] = 1.0
    units: Units = "auto"
    up_axis: UpAxis = "auto"
    objects: Annotated[list[Glob], Field(min_length=1, max_length=MAX_IMPORT_RULES)] | None = None
    collection: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)] | None = None
    semantic_class: SemanticClassRef | None = Field(None, alias="class")
    classes: Annotated[list[ClassRule], Field(max_length=MAX_IMPORT_RULES)] = Field(default_factory=list)
    camera: Annotated[str, Field(min_length=1, max_length=MAX_PATH_LENGTH)] | None = None

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("file")
    @classmethod
    def _file_ok(cls, v):
        return _check_model_path(v)

    @field_validator("semantic_class")
    @classmethod
    def _class_ok(cls, v):
        return v if v is None else _check_class(v)

    @model_validator(mode="after")
    def _format_keys(self):
        if self.collection is not None and model_suffix(self.file) != ".blend":
            raise ValueError(f"collection = {self.collection!r} applies to .blend files only; remove it or use objects = [...] globs")
        _check_obj_frame(self.file, self.units, self.up_axis, "")
        return self

    @property
    def scale_xyz(self) -> tuple[float, float, float]:
        s = self.scale
        return (float(s), float(s), float(s)) if isinstance(s, (int, float)) else tuple(float(v) for v in s)

# --------------------------------------------------------------------------------------------
# The template
# --------------------------------------------------------------------------------------------


class Template(StrictModel):
    schema_version: Literal[1]
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
    description: str = ""
    seed: Annotated[int, Field(ge=0, lt=2**63)]
    generator: GeneratorSpec = Field(default_factory=lambda: GeneratorSpec(kind="none"))
    objects: Annotated[list[Primitive], Field(max_length=MAX_OBJECTS)] = Field(default_factory=list)
    imports: Annotated[list[ImportSpec], Field(max_length=MAX_IMPORTS)] = Field(default_factory=list)
    camera: CameraSpec | None  # None only when an import gives the camera (imports.N.camera)
    render: RenderSpec = Field(default_factory=RenderSpec)
    passes: PassesSpec = Field(default_factory=PassesSpec)
    style: StyleSpec = Field(default_factory=StyleSpec)

    @model_validator(mode="before")
    @classmethod
    def _file_camera(cls, data):
        # A file camera stands in for the [camera] table: it is then None (absent stays "missing").
        if isinstance(data, dict) and "camera" not in data:
            imports = data.get("imports")
            if isinstance(imports, list) and any(isinstance(i, dict) and i.get("camera") is not None for i in imports):
                data = {**data, "camera": None}
        return data

    @field_validator("camera")
    @classmethod
    def _one_camera(cls, camera, info: ValidationInfo):
        with_camera = [i for i, spec in enumerate(info.data.get("imports") or []) if spec.camera is not None]
        if len(with_camera) > 1:
            raise ValueError(f"imports {', '.join(f'imports.{i}.camera' for i in with_camera)} each give a camera; "
                             "keep one (a shot has one camera)")
        if camera is not None and with_camera:
            raise ValueError(f"the template has a [camera] table and imports.{with_camera[0]}.camera gives the file's "
                             "camera; remove one of them")
        return camera

    @model_validator(mode="after")
    def _unique_names(self):
        # (key path, name) of every named thing; a furniture piece without a name is named by its kind
        # (an asset by its file's stem); imported objects are named <import name><node path>
        named = [(f"objects.{i}.name", o.name) for i, o in enumerate(self.objects)]
        if self.generator.kind == "room":
            named += [(f"generator.room.furniture.{i}.{_name_key(f)}", f.stable_name)
                      for i, f in enumerate(self.generator.room.furniture)]
        elif self.generator.has_plan:
            rooms = self.generator.floor_plan.rooms
            for i, r in enumerate(rooms):  # a piece's stable name is <room>/<piece>
                if r.furniture != "auto":
                    named += [(f"generator.floor_plan.rooms.{i}.furniture.{j}.{_name_key(f)}",
                               f"{r.name}/{f.stable_name}") for j, f in enumerate(r.furniture)]
        named += [(f"imports.{i}.name", spec.name) for i, spec in enumerate(self.imports)]
        where: dict[str, list[str]] = {}
        for key, name in named:
            where.setdefault(name, []).append(key)
        duplicates = [(key, name, keys) for name, keys in where.items() if len(keys) > 1 for key in keys]
        if duplicates:
            # One problem per duplicate at its own key path (template_loading unpacks ``duplicates``).
            raise PydanticCustomError(
                "duplicate_name",
                "object names must be unique (they seed each object's randomness): {names} repeated; give each a distinct name",
                {"names": ", ".join(sorted({n for _, n, _ in duplicates})),
                 "duplicates": [{"key": key, "name": name, "others": [k for k in keys if k != key]} for key, name, keys in duplicates]},
            )
        return self

    @property
    def style_seed(self) -> int:
        return self.seed if self.style.seed is None else self.style.seed


def exr_channel_problems(template: Template) -> list[tuple[str, object, str]]:
    """(key path, value, message) for each pass group ``passes.exr_channels`` leaves out that a later
    stage of the same template reads from ``passes/NNNN.exr`` (the NPR stylizer, or NPR drafts for
    img2img: normal, class, instance; ``flow_warp``: flow, instance, uv; ``keyframes``: depth,
    instance, uv; diffusion with ``style.regions`` or masked ``style.reference_images``: instance,
    class). Checked with the template, before anything is written."""
    style = template.style
    mode = style.consistency.mode
    readers = []
    if style.stylizer == "npr":
        readers.append(("npr", "the NPR stylizer (style.stylizer = 'npr')", "or set style.stylizer = 'diffusion'"))
    elif style.stylizer == "baked":
        readers.append(("baked", "the baked stylizer (style.stylizer = 'baked')", "or set style.stylizer = 'npr'"))
    elif style.init_image == "npr_draft" and mode == "per_frame":
        readers.append(("npr", "the NPR drafts of style.init_image = 'npr_draft'", "or set style.init_image = 'none'"))
    if mode in ("flow_warp", "keyframes") and style.stylizer != "baked":
        readers.append((mode, f"consistency mode {mode!r} (style.consistency.mode)", "or use consistency mode 'per_frame'"))
    if style.stylizer == "diffusion" and (style.regions or any(r.masked for r in style.reference_images)):
        readers.append(("regions", "the masks of style.regions and of masked style.reference_images",
                        "or remove the regions and the reference images' objects and classes"))
    kept = template.passes.exr_channels
    problems = []
    for reader, who, other_fix in readers:
        missing = [g for g in EXR_GROUPS_NEEDED_BY[reader] if g not in kept]
        if missing:
            names = ", ".join(repr(g) for g in missing)
            problems.append((
                "passes.exr_channels", list(kept),
                f"leaves out {names}, which {who} reads from passes/NNNN.exr; add {names} to passes.exr_channels {other_fix}",
            ))
    return problems

