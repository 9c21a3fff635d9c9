"""Cryptomatte layers for ``passes/NNNN.exr``: ids from the scene's stable names, per the Cryptomatte
specification (Psyop, 1.1.0; the version Nuke's, Fusion's and Blender's readers implement).

- An id is MurmurHash3_x86_32 (seed 0) of the name's UTF-8 bytes, stored as the float32 whose bits
  are the hash with the exponent clamped to [1, 254] (so no id is a denormal, an infinity or a NaN:
  the spec's ``uint32_to_float32`` conversion).
- Two layers: ``CryptoObject`` (the object's stable name, per instance id: "sofa",
  "room.wall_north") and ``CryptoMaterial`` (the object's ADE20K class name, first of its names:
  "wall", "sofa"; greybox has no materials, and the class is what its flat colours and
  segmentation follow). Each is one RGBA layer ``{type}00``: R = id of rank 0, G = its coverage,
  B = id of rank 1, A = its coverage.
- The passes are rendered at one sample with a 0.01 px filter, so every pixel sees exactly one
  surface: rank 0 is that object with coverage 1, rank 1 is always empty (id 0, coverage 0), and
  background pixels hold id 0 with coverage 0 (the spec: no object, id zero). All four channels are
  float32, as every writer's are: readers that group a layer's channels (OpenEXR's own Python
  binding among them) refuse a layer of mixed pixel types.
- Header metadata per layer, under ``cryptomatte/{key}/`` where ``key`` is the first 7 hex digits
  of the hash of the layer's name (as the spec suggests and Blender does): ``name``, ``hash``
  (``MurmurHash3_32``), ``conversion`` (``uint32_to_float32``) and ``manifest``, a JSON object
  ``{name: 8 hex digits of the float id's bits}``.

This module imports numpy and mmh3 only. It reads names from the scene object it is handed: anything
with ``objects``, each with ``name``, ``instance_id`` and ``semantic_class_id``.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from functools import cached_property

import numpy as np

OBJECT_LAYER = "CryptoObject"
CLASS_LAYER = "CryptoMaterial"
HASH_NAME = "MurmurHash3_32"
CONVERSION = "uint32_to_float32"


def name_hash(name: str) -> int:
    """MurmurHash3_x86_32 (seed 0) of ``name``'s UTF-8 bytes, as an unsigned 32-bit integer."""
    import mmh3

    return mmh3.hash(name.encode("utf-8"), 0, signed=False)


def hash_to_float_bits(hash_value: int) -> int:
    """The bits of the float id for ``hash_value``: sign and mantissa kept, exponent clamped to [1, 254]."""
    exponent = min(max((hash_value >> 23) & 0xFF, 1), 254)
    return (hash_value & 0x8000_0000) | (exponent << 23) | (hash_value & 0x007F_FFFF)


def name_id(name: str) -> np.float32:
    """The float32 id a Cryptomatte pixel holds for ``name``."""
    return np.array([hash_to_float_bits(name_hash(name))], dtype=np.uint32).view(np.float32)[0]


def layer_key(layer_name: str) -> str:
    """The 7-character metadata key of a layer: the first 7 hex digits of its name's hash."""
    return f"{name_hash(layer_name):08x}"[:7]


@dataclass(frozen=True)
class CryptomatteLayer:
    """One Cryptomatte type: its name, the id of every label (``ids[label] = float32 id``, 0 for label 0)
    and the manifest (name -> 8 hex digits)."""

    name: str
    ids: np.ndarray  # (N,) float32, indexed by the integer label of the pass (instance id or class id)
    manifest: dict[str, str]

    def channels(self, labels: np.ndarray, coverage: np.ndarray | None = None,
                 empty: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The layer's four channels for a label image (uint32 instance or class ids).

        ``coverage`` (``labels > 0`` as float32) and ``empty`` (zeros) may be given to share them
        between layers: the writer holds every channel at once, so each shared plane is memory saved.
        """
        labels = np.asarray(labels)
        if labels.size and int(labels.max()) >= len(self.ids):
            raise ValueError(f"{self.name}: label {int(labels.max())} has no name in the scene")
        if coverage is None:
            coverage = (labels > 0).astype(np.float32)
        if empty is None:
            empty = np.zeros(labels.shape, dtype=np.float32)
        return {
            f"{self.name}00.R": np.ascontiguousarray(self.ids[labels]),
            f"{self.name}00.G": coverage,
            f"{self.name}00.B": empty,
            f"{self.name}00.A": empty,
        }

    def header(self) -> dict[str, str]:
        """The layer's header attributes (``cryptomatte/{key}/name``, ``hash``, ``conversion``, ``manifest``)."""
        return dict(self._header)

    @cached_property
    def _header(self) -> dict[str, str]:  # the manifest's JSON once per layer (0.1 s at 25,000 names)
        prefix = f"cryptomatte/{layer_key(self.name)}/"
        manifest = json.dumps(self.manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return {prefix + "name": self.name, prefix + "hash": HASH_NAME, prefix + "conversion": CONVERSION,
                prefix + "manifest": manifest}


def _layer(name: str, labelled_names: dict[int, str]) -> CryptomatteLayer:
    size = max(labelled_names, default=0) + 1
    bits = np.zeros(size, dtype=np.uint32)
    manifest: dict[str, str] = {}
    for label, text in labelled_names.items():
        bits[label] = hash_to_float_bits(name_hash(text))
        manifest[text] = f"{int(bits[label]):08x}"
    return CryptomatteLayer(name=name, ids=bits.view(np.float32), manifest=manifest)


def class_name(class_id: int) -> str:
    """The name the class layer uses for an ADE20K 1-based class id: the palette entry's first name."""
    from scenes.semantic_palette import palette

    return palette()[int(class_id) - 1].name


_LAYERS_CACHE: dict[int, tuple[weakref.ref, tuple[CryptomatteLayer, CryptomatteLayer]]] = {}


def scene_layers(scene) -> tuple[CryptomatteLayer, CryptomatteLayer]:
    """The object and class layers for ``scene`` (its objects' stable names and class names).

    Cached per scene object where it can be weakly referenced (a warm worker writes every frame of
    a shot with one scene: at 25,000 objects, hashing the names and the manifests' JSON took 0.5 s a
    frame)."""
    cached = _LAYERS_CACHE.get(id(scene))
    if cached is not None and cached[0]() is scene:
        return cached[1]
    layers = _scene_layers(scene)
    try:
        ref = weakref.ref(scene)
    except TypeError:
        return layers
    for stale in [key for key, (old, _) in _LAYERS_CACHE.items() if old() is None]:
        del _LAYERS_CACHE[stale]
    _LAYERS_CACHE[id(scene)] = (ref, layers)
    return layers


def _scene_layers(scene) -> tuple[CryptomatteLayer, CryptomatteLayer]:
    objects = {int(o.instance_id): str(o.name) for o in scene.objects}
    classes = {int(o.semantic_class_id): class_name(o.semantic_class_id) for o in scene.objects}
    return _layer(OBJECT_LAYER, objects), _layer(CLASS_LAYER, classes)
