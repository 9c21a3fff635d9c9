"""A building from a floor plan: storeys, floor slabs, facades with windows and entrance doors, a
roof and the ground. Pure numpy (Blender only sees the result).

``[generator.building]`` takes ``[generator.floor_plan]`` as the ground floor:

- Storey k (0 = the ground floor) is the plan lifted by ``k * storey_height``; its walls run from
  its floor up to the next storey's floor slab (``storey_height - SLAB``), its ceilings fill the
  room's height up to that slab (so ceiling and floor together are the floor slab between two
  storeys, ``storey_height - height`` thick). The upper storeys keep the plan's rooms and the doors
  between them; only the ground floor has the plan's doors to ``"outside"`` (the entrances).
- Windows: ``facade_windows`` puts windows on every exterior wall of every storey (centres
  ``spacing`` apart, centred on each wall's usable length; the ground floor leaves out those that
  would overlap an entrance), otherwise the plan's own windows are repeated on every storey.
- The facade: a skin ``FACADE_THICKNESS`` thick over the exterior walls' outer faces, one object
  per storey running round the whole building (the walls of neighbouring rooms show no seam from
  outside), from the bottom of the storey's floor slab to the top of its walls, with every opening
  of the storey cut through; class ``building`` (ADE20K's class for a building's outside; the
  walls inside keep class ``wall``).
- The roof on the top storey's walls: ``flat`` (a slab), ``gable`` or ``hip`` (``roof_pitch``
  degrees, ridge along the longer side) with ``roof_overhang`` eaves, closed underneath by the
  attic (the roof is one solid over the building); gable and hip roofs need a rectangular
  outline. Class ``building``.
- The ground: a square ``ground_size`` across, centred under the building, its top at the bottom
  of the ground floor's slab (z = -SLAB; the entrances have a 0.1 m step; a slab
  :data:`GROUND_DEPTH` deep, so it is a closed solid), of class ``grass``, ``road, route`` or
  ``floor``. The sky is the background (``passes.seg_background``).

Stable names: the plan's, with ``storey<N>/`` in front above the ground floor (``storey1/floor:living``,
``storey1/living/sofa``), plus ``facade``, ``storey<N>/facade``, ``roof`` and ``ground``.

The outline is the chain of the plan's outer wall segments (counter-clockwise, wall centre lines);
rooms that form more than one block, or enclose a courtyard, are a problem.

Entry points: :func:`storey_plans` (one :class:`procedural.floor_plan.PlanInput` per storey and the
problems), :func:`building_outline`, :class:`Roof`, :func:`facade_mesh`, :func:`ground_mesh`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from procedural.floor_plan import (
    OPENING_GAP, OUTSIDE, OpeningInput, PlanGeometry, PlanInput, PlanNaming, WallSegment, plan_geometry,
    plan_problem,
)
from procedural.planar_geometry import Point, offset_polygon, self_crossing, signed_area, unit
from procedural.primitive_meshes import Mesh, box_between, merge, transform
from procedural.room_shell import SLAB, _FaceMesh, prism, wall_mesh

FACADE_THICKNESS = 0.03  # the facade skin over the exterior walls, metres
ROOF_THICKNESS = 0.2  # the roof slab, measured vertically on a flat roof, across the slope on a pitched one
GROUND_CLASSES = {"grass": "grass", "road": "road", "floor": "floor"}
GROUND_DEPTH = 0.5  # the ground is a slab this deep under its top face
KEY = "generator.building"


def storey_prefix(index: int) -> str:
    """``""`` for the ground floor, ``storey<N>/`` above it."""
    return "" if index == 0 else f"storey{index}/"


# --------------------------------------------------------------------------------------------
# The storeys' plans
# --------------------------------------------------------------------------------------------


def storey_plans(generator, base: PlanInput) -> tuple[list[PlanInput], list[dict]]:
    """One plan per storey (the ground floor first) and the problems of the building's keys.

    ``generator`` is the validated :class:`scenes.template_schema.GeneratorSpec` (kind
    ``building``), ``base`` the ground floor's plan input (``floor_plan_input``)."""
    spec = generator.building_spec
    problems: list[dict] = []
    minimum = base.height + 2 * SLAB
    if spec.storey_height < minimum - 1e-9:
        problems.append(plan_problem(f"{KEY}.storey_height", spec.storey_height,
                                     f"leaves no room for the floor slabs above rooms {base.height} m high; "
                                     f"allowed storey_height >= {minimum:.3g} (the plan's height plus {2 * SLAB:g})"))
    doors = [o for o in base.openings if o.kind == "door"]
    inner_doors = [o for o in doors if o.rooms[1] != OUTSIDE]
    plan_windows = [o for o in base.openings if o.kind == "window"]
    if spec.facade_windows is not None and plan_windows:
        problems.append(plan_problem(f"{KEY}.facade_windows", None,
                                     f"the plan has {len(plan_windows)} windows of its own "
                                     "([[generator.floor_plan.windows]]); give either facade_windows (windows on every "
                                     "exterior wall) or the plan's windows, not both"))
    if spec.facade_windows is None:
        ground_windows = upper_windows = plan_windows
    else:
        probe, _ = plan_geometry(dataclasses.replace(base, openings=tuple(doors)))
        ground_windows = facade_window_inputs(probe, spec.facade_windows, with_doors=True)
        upper_windows = facade_window_inputs(probe, spec.facade_windows, with_doors=False)
    plans = [dataclasses.replace(base, openings=tuple(doors) + tuple(ground_windows))]
    for k in range(1, spec.storeys):
        plans.append(dataclasses.replace(base, openings=tuple(inner_doors) + tuple(upper_windows),
                                         naming=PlanNaming(base.naming.style, prefix=storey_prefix(k))))
    return plans, problems


def facade_window_inputs(geometry: PlanGeometry, windows, *, with_doors: bool) -> list[OpeningInput]:
    """Windows along every outer wall segment of the plan: centres ``windows.spacing`` apart,
    centred on the segment's usable length (as many as fit); with ``with_doors`` those that would
    come closer than the openings' gap to a door to the outside are left out."""
    out: list[OpeningInput] = []
    count: dict[tuple[str, int], int] = {}
    width = float(windows.width)
    for k, seg in enumerate(geometry.segments):
        if seg.other is not None:
            continue
        lo, hi = seg.usable
        if hi - lo < width - 1e-9:
            continue
        n = int(math.floor((hi - lo - width) / windows.spacing + 1e-9)) + 1
        middle = (lo + hi) / 2.0
        doors = [o for o in geometry.openings if o.segment == k and o.kind == "door"] if with_doors else []
        room = geometry.rooms[seg.owner]
        edge_start = room.polygon[seg.owner_edge]
        base = math.dist(edge_start, seg.p0)  # the segment's start along its room's edge
        for j in range(n):
            centre = middle + (j - (n - 1) / 2.0) * windows.spacing
            a0, a1 = centre - width / 2.0, centre + width / 2.0
            if any(a0 < d.a1 + OPENING_GAP - 1e-9 and a1 > d.a0 - OPENING_GAP + 1e-9 for d in doors):
                continue
            slot = (seg.owner, seg.owner_edge)
            index = count.get(slot, 0)
            count[slot] = index + 1
            out.append(OpeningInput(
                kind="window", key=f"{KEY}.facade_windows", name=f"window:{seg.owner}:{seg.owner_edge}:{index}",
                rooms=(seg.owner, OUTSIDE), edge=seg.owner_edge, edge_key=None, offset=base + centre, offset_map=(0.0, 1.0),
                width=width, height=float(windows.height), sill=float(windows.sill), glass=bool(windows.glass),
            ))
    return out


# --------------------------------------------------------------------------------------------
# The outline: the outer walls' centre lines as one counter-clockwise polygon
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outline:
    """The building's outline (outer wall centre lines, counter-clockwise, no collinear vertices)
    and, per outline edge, the plan's wall segments (indices) along it."""

    polygon: tuple[Point, ...]
    edge_segments: tuple[tuple[int, ...], ...]

    def offset(self, distance: float) -> list[Point]:
        """The outline moved ``distance`` metres outwards (mitred)."""
        return offset_polygon(self.polygon, [-distance] * len(self.polygon))


def building_outline(geometry: PlanGeometry, tol: float = 1e-6) -> tuple[Outline | None, list[dict]]:
    """Chain the outer wall segments (owner room on the left) into the building's outline."""
    outer = [k for k, s in enumerate(geometry.segments) if s.other is None]
    if not outer:
        return None, [plan_problem(f"{KEY}", None, "the plan has no outer walls")]
    remaining = list(outer)
    loops: list[list[int]] = []
    while remaining:
        loop = [remaining.pop(0)]
        while True:
            end = geometry.segments[loop[-1]].p1
            nxt = next((k for k in remaining if math.dist(geometry.segments[k].p0, end) <= tol), None)
            if nxt is None:
                break
            remaining.remove(nxt)
            loop.append(nxt)
        loops.append(loop)
    closed = all(math.dist(geometry.segments[l[-1]].p1, geometry.segments[l[0]].p0) <= tol for l in loops)
    if len(loops) != 1 or not closed:
        areas = [signed_area([geometry.segments[k].p0 for k in l]) for l in loops]
        holes = sum(1 for a in areas if a < 0)
        what = (f"enclose {holes} courtyard{'s' if holes > 1 else ''}" if holes else f"form {len(loops)} separate blocks")
        return None, [plan_problem("generator.floor_plan.rooms", None,
                                   f"a building's rooms must form one block without courtyards; these {what}: join them "
                                   "with rooms (a hallway) or make separate templates")]
    # merge collinear runs into outline edges
    loop = loops[0]
    points: list[Point] = []
    groups: list[list[int]] = []
    for k in loop:
        seg = geometry.segments[k]
        if groups:
            prev = geometry.segments[groups[-1][-1]]
            d0, d1 = prev.direction, seg.direction
            if abs(d0[0] * d1[1] - d0[1] * d1[0]) < 1e-9 and d0[0] * d1[0] + d0[1] * d1[1] > 0:
                groups[-1].append(k)
                continue
        points.append(seg.p0)
        groups.append([k])
    # the loop may start in the middle of a straight run
    if len(groups) > 1:
        first, last = geometry.segments[groups[0][0]], geometry.segments[groups[-1][-1]]
        d0, d1 = last.direction, first.direction
        if abs(d0[0] * d1[1] - d0[1] * d1[0]) < 1e-9 and d0[0] * d1[0] + d0[1] * d1[1] > 0:
            groups[0] = groups[-1] + groups[0]
            points[0] = points[-1]
            groups.pop()
            points.pop()
    return Outline(tuple(points), tuple(tuple(g) for g in groups)), []


def rectangle_frame(polygon: Sequence[Point]) -> tuple[Point, Point, float, float] | None:
    """(centre, unit axis along the longer side, half length along it, half width across) of a
    rectangle; None when the polygon is not one."""
    if len(polygon) != 4:
        return None
    edges = [(polygon[(i + 1) % 4][0] - polygon[i][0], polygon[(i + 1) % 4][1] - polygon[i][1]) for i in range(4)]
    lengths = [math.hypot(*e) for e in edges]
    for i in range(4):
        a, b = edges[i], edges[(i + 1) % 4]
        if abs(a[0] * b[0] + a[1] * b[1]) > 1e-6 * lengths[i] * lengths[(i + 1) % 4]:
            return None
    longer = 0 if lengths[0] >= lengths[1] - 1e-9 else 1
    axis = unit(*edges[longer])
    centre = (sum(p[0] for p in polygon) / 4.0, sum(p[1] for p in polygon) / 4.0)
    return centre, axis, lengths[longer] / 2.0, lengths[1 - longer] / 2.0


# --------------------------------------------------------------------------------------------
# The roof
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roof:
    """The roof over the facade's outer outline ``footprint`` (counter-clockwise), standing on
    z = ``base`` (the top of the top storey's walls). ``upper(x, y)`` and ``lower(x, y)`` bound the
    solid over its footprint with eaves (the outline moved out by the overhang): the attic under a
    pitched roof is part of it, so over the building the solid runs from ``base`` up to ``upper``."""

    kind: str
    footprint: tuple[Point, ...]  # the facade's outer outline
    base: float
    pitch_deg: float
    overhang: float
    frame: tuple[Point, Point, float, float] | None = None  # gable, hip: rectangle_frame(footprint)

    @property
    def eaves(self) -> list[Point]:
        return offset_polygon(self.footprint, [-self.overhang] * len(self.footprint))

    def _local(self, x, y):
        (cx, cy), (ux, uy), b, a = self.frame
        dx, dy = np.asarray(x, dtype=np.float64) - cx, np.asarray(y, dtype=np.float64) - cy
        return dx * ux + dy * uy, -dx * uy + dy * ux, a, b

    def _rise(self, x, y):
        """Height above ``base`` of the roof's underside (0 along the facade, lower out on the eaves)."""
        along, across, a, b = self._local(x, y)
        slope = math.tan(math.radians(self.pitch_deg))
        if self.kind == "gable":
            return (a - np.abs(across)) * slope
        return np.minimum(a - np.abs(across), b - np.abs(along)) * slope

    @property
    def thickness(self) -> float:
        return ROOF_THICKNESS if self.kind == "flat" else ROOF_THICKNESS / math.cos(math.radians(self.pitch_deg))

    def lower(self, x, y) -> np.ndarray:
        if self.kind == "flat":
            return np.full(np.shape(x), self.base)
        return self.base + np.minimum(self._rise(x, y), 0.0)

    def upper(self, x, y) -> np.ndarray:
        if self.kind == "flat":
            return np.full(np.shape(x), self.base + ROOF_THICKNESS)
        return self.base + self._rise(x, y) + self.thickness

    @property
    def top(self) -> float:
        if self.kind == "flat":
            return self.base + ROOF_THICKNESS
        _, _, _, a = self.frame
        return self.base + a * math.tan(math.radians(self.pitch_deg)) + self.thickness

    def mesh(self) -> Mesh:
        if self.kind == "flat":
            return prism(self.eaves, self.base, self.base + ROOF_THICKNESS)
        return self._gable_mesh() if self.kind == "gable" else self._hip_mesh()

    def _to_world(self, local: np.ndarray) -> np.ndarray:
        """(along, across, z) -> world."""
        (cx, cy), (ux, uy), _, _ = self.frame
        x = cx + local[:, 0] * ux - local[:, 1] * uy
        y = cy + local[:, 0] * uy + local[:, 1] * ux
        return np.column_stack([x, y, local[:, 2]])

    def _solid(self, fm: _FaceMesh, faces: list[list[tuple[float, float, float]]]) -> None:
        """Add planar faces given in local coordinates, each counter-clockwise seen from outside."""
        for face in faces:
            pts = []
            for p in face:
                if not pts or math.dist(pts[-1], p) > 1e-9:
                    pts.append(p)
            if len(pts) > 1 and math.dist(pts[0], pts[-1]) <= 1e-9:
                pts.pop()
            if len(pts) < 3:
                continue
            world = self._to_world(np.array(pts, dtype=np.float64))
            normal = np.zeros(3)
            for i in range(len(world)):  # Newell's normal: outward for a counter-clockwise face
                a, b = world[i], world[(i + 1) % len(world)]
                normal += ((a[1] - b[1]) * (a[2] + b[2]), (a[2] - b[2]) * (a[0] + b[0]), (a[0] - b[0]) * (a[1] + b[1]))
            fm.polygon(world, normal)

    def _gable_mesh(self) -> Mesh:
        _, _, b, a = self.frame
        o, t = self.overhang, self.thickness
        slope = math.tan(math.radians(self.pitch_deg))
        z0 = self.base
        A, B = a + o, b + o
        ridge = z0 + a * slope
        eave = z0 - o * slope
        # the roof solid: a chevron (across, z) extruded along the ridge over [-B, B]
        chevron = [(-A, eave), (0.0, ridge), (A, eave), (A, eave + t), (0.0, ridge + t), (-A, eave + t)]
        # the attic: a triangle under the slab over the facade, [-b, b]
        attic = [(-a, z0), (a, z0), (0.0, ridge)]
        fm = _FaceMesh()
        for section, half in ((chevron, B), (attic, b)):
            faces = [[(half, y, z) for y, z in section], [(-half, y, z) for y, z in reversed(section)]]
            n = len(section)
            for i in range(n):
                (y0, z0_), (y1, z1_) = section[i], section[(i + 1) % n]
                faces.append([(-half, y0, z0_), (-half, y1, z1_), (half, y1, z1_), (half, y0, z0_)])
            self._solid(fm, faces)
        return fm.mesh()

    def _hip_mesh(self) -> Mesh:
        _, _, b, a = self.frame
        o, t = self.overhang, self.thickness
        slope = math.tan(math.radians(self.pitch_deg))
        fm = _FaceMesh()

        def hip(half_a: float, half_b: float, z_eave: float) -> list[list[tuple[float, float, float]]]:
            """The four sloped faces over [-half_b, half_b] x [-half_a, half_a] (half_a <= half_b), outward up."""
            r = half_b - half_a
            zr = z_eave + half_a * slope
            c = [(half_b, -half_a, z_eave), (half_b, half_a, z_eave), (-half_b, half_a, z_eave), (-half_b, -half_a, z_eave)]
            e, w = (r, 0.0, zr), (-r, 0.0, zr)
            return [[c[0], c[1], e], [c[1], c[2], w, e], [c[2], c[3], w], [c[3], c[0], e, w]]

        def flipped(faces):
            return [list(reversed(f)) for f in faces]

        A, B = a + o, b + o
        eave = self.base - o * slope
        upper = hip(A, B, eave + t)
        lower = flipped(hip(A, B, eave))
        corners = [(B, -A), (B, A), (-B, A), (-B, -A)]
        fascia = []
        for i in range(4):
            (x0, y0), (x1, y1) = corners[i], corners[(i + 1) % 4]
            fascia.append([(x0, y0, eave), (x1, y1, eave), (x1, y1, eave + t), (x0, y0, eave + t)])
        self._solid(fm, upper + lower + fascia)
        # the attic over the facade: the hip's underside down to the walls' tops
        attic_top = hip(a, b, self.base)
        bottom = [[(b, a, self.base), (b, -a, self.base), (-b, -a, self.base), (-b, a, self.base)]]
        self._solid(fm, attic_top + bottom)
        return fm.mesh()


def roof_for(kind: str, footprint: Sequence[Point], base: float, pitch: float, overhang: float) -> tuple[Roof | None, list[dict]]:
    """The roof over the facade's outer outline, or the problems that keep it from being built."""
    footprint = tuple(footprint)
    if kind == "flat":
        eaves = offset_polygon(footprint, [-overhang] * len(footprint))
        if signed_area(eaves) <= 0 or self_crossing(eaves) is not None:
            return None, [plan_problem(f"{KEY}.roof_overhang", overhang, "the eaves of the flat roof fold over the building's "
                                       "corners; allowed a smaller roof_overhang")]
        return Roof(kind, footprint, base, pitch, overhang), []
    frame = rectangle_frame(footprint)
    if frame is None:
        return None, [plan_problem(f"{KEY}.roof", kind, f"a {kind} roof needs a rectangular building; the ground floor's "
                                   f"outline has {len(footprint)} corners: use roof = 'flat', or make the rooms form a rectangle")]
    return Roof(kind, footprint, base, pitch, overhang, frame), []


# --------------------------------------------------------------------------------------------
# The facade and the ground
# --------------------------------------------------------------------------------------------


def facade_rings(outline: Outline, thickness: float) -> tuple[list[Point], list[Point], list[Point]]:
    """The facade skin's inner face (the walls' outer faces), centre line and outer face, as polygons."""
    inner = outline.offset(thickness / 2.0)
    middle = outline.offset(thickness / 2.0 + FACADE_THICKNESS / 2.0)
    outer = outline.offset(thickness / 2.0 + FACADE_THICKNESS)
    return inner, middle, outer


def facade_mesh(outline: Outline, geometry: PlanGeometry, floor_z: float, height: float) -> Mesh:
    """The facade skin of the storey whose floor is at ``floor_z``: per outline edge a thin wall
    (mitred at the corners) from the bottom of its floor slab (``floor_z - SLAB``) up ``height``
    metres, with every opening of the storey's outer walls along that edge cut through (their sills
    and heads moved to the skin's frame)."""
    inner, middle, outer = facade_rings(outline, geometry.thickness)
    n = len(outline.polygon)
    z_bottom = floor_z - SLAB
    lift = SLAB  # storey-local heights (from its floor) -> the skin's own (from its slab's bottom)
    meshes = []
    for i in range(n):
        j = (i + 1) % n
        seg = WallSegment(name="facade", owner="building", owner_edge=i, other=None, other_edge=None,
                          p0=middle[i], p1=middle[j], start_cap=(outer[i], middle[i], inner[i]),
                          end_cap=(outer[j], middle[j], inner[j]))
        d = seg.direction
        ops = []
        for k in outline.edge_segments[i]:
            wall = geometry.segments[k]
            for op in geometry.openings:
                if op.segment != k:
                    continue
                ends = [wall.point(op.a0), wall.point(op.a1)]
                along = sorted((p[0] - seg.p0[0]) * d[0] + (p[1] - seg.p0[1]) * d[1] for p in ends)
                ops.append(dataclasses.replace(op, a0=along[0], a1=along[1], sill=op.sill + lift, top=op.top + lift))
        meshes.append(wall_mesh(seg, ops, height, FACADE_THICKNESS))
    return transform(merge(meshes), None, (0.0, 0.0, z_bottom))


def ground_mesh(centre: Point, size: float) -> Mesh:
    """The ground: a slab ``size`` across and :data:`GROUND_DEPTH` deep centred under ``centre``,
    its top at the ground floor's slab bottom (z = -SLAB)."""
    return box_between(centre[0] - size / 2.0, centre[0] + size / 2.0, centre[1] - size / 2.0, centre[1] + size / 2.0,
                       -SLAB - GROUND_DEPTH, -SLAB)
