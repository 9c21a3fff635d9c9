"""A template's model files as untrusted input: where they may be, what they refer to, what they hold.

Pure Python (no bpy, no numpy): the driver, the build check and the importer all use it, and every
check here runs before Blender opens a file.

- :class:`ModelRoots`: the folders a template's models may come from (the template's own folder
  and every ``--asset-root``); :meth:`ModelRoots.confine` resolves a path, through symbolic links,
  and refuses one that lands outside them.
- :func:`model_inputs`: a model file and every file it refers to (glTF buffers and images, an
  OBJ's ``.mtl`` files and their textures, USD sublayers, references, payloads and asset paths,
  a .blend's libraries, images, fonts, caches and volumes, an FBX's textures), each checked to be
  a readable file inside the roots, with the sha256 of each (they go into the scene stage's store
  key and the manifest). Referenced textures may be missing (greybox renders no textures; the
  importers then leave a placeholder); every other missing reference is refused.
- Readers of what Blender's importers do not keep: an FBX's node names and parents
  (:func:`fbx_model_tree`) and unit and axis settings, a USD text layer's ``metersPerUnit``,
  ``upAxis`` and prim tree (:func:`usda_stage_metadata`, :func:`usda_prim_tree`).

A problem is an :class:`InputError` whose message starts with the template key
(``imports.0.file = 'models/house.glb': ...``) and names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from greybox.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".tga", ".bmp", ".hdr", ".tx", ".tex",
                            ".webp", ".ktx", ".ktx2", ".dds", ".ptx", ".psd", ".gif", ".jp2", ".j2k", ".cin", ".dpx"})
USD_SUFFIXES = frozenset({".usd", ".usda", ".usdc", ".usdz"})
# Extensions of files a USD asset path can name (layers, textures, MaterialX, volumes, caches).
_USD_ASSET_SUFFIXES = USD_SUFFIXES | IMAGE_SUFFIXES | {".mtlx", ".vdb", ".abc", ".obj", ".gltf", ".glb", ".fbx", ".osl", ".oso", ".sdf"}
MAX_REFERENCED_FILES = 10_000  # files one model may pull in
_HASH_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _problem(key: str, value, message: str) -> InputError:
    shown = repr(value) if not isinstance(value, str) or len(value) <= 200 else repr(value[:197] + "...")
    text = f"{key} = {shown}: {message}"
    return InputError(text, [{"file": "", "key": key, "value": value, "message": text}])  # the whole line


# --------------------------------------------------------------------------------------------
# Roots
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRoots:
    """Where a template's model files may be: its own folder and the ``--asset-root`` folders.

    ``template_dir`` and ``asset_roots`` are made absolute and resolved (symbolic links followed)
    once; a file is inside when its resolved path is inside one of them.
    """

    template_dir: Path
    asset_roots: tuple[Path, ...] = ()

    @classmethod
    def of(cls, template_dir: str | os.PathLike, asset_roots=()) -> "ModelRoots":
        return cls(Path(os.path.realpath(template_dir)), tuple(Path(os.path.realpath(r)) for r in asset_roots))

    @property
    def folders(self) -> tuple[Path, ...]:
        return (self.template_dir, *self.asset_roots)

    def inside(self, real: Path) -> bool:
        return any(real == root or root in real.parents for root in self.folders)

    def label(self, real: Path) -> str:
        """How a file is named in store keys and the manifest: its path relative to the template's
        folder (POSIX), or ``<asset-root N>/relative`` (N counts from 1, as the roots were given)."""
        for i, root in enumerate(self.folders):
            if real == root or root in real.parents:
                rel = real.relative_to(root).as_posix()
                return rel if i == 0 else f"<asset-root {i}>/{rel}"
        return real.as_posix()

    def describe(self) -> str:
        extra = "".join(f", {r}" for r in self.asset_roots)
        return f"the template's folder {self.template_dir}{extra}"

    def confine(self, path: Path, key: str, value, what: str = "the file") -> Path:
        """``path`` resolved through every symbolic link, when that lands inside the roots; else an
        InputError naming ``key``, ``value`` and where it leads."""
        real = Path(os.path.realpath(path))
        if not self.inside(real):
            via = "" if real == Path(os.path.abspath(path)) else f" (through a symbolic link: {path} -> {real})"
            raise _problem(key, value, f"{what} resolves to {real}{via}, outside {self.describe()}; models and "
                                       "everything they refer to must lie inside the template's folder or a folder "
                                       "given with --asset-root DIR")
        return real

    def model_path(self, file: str, key: str) -> Path:
        """The template's ``file`` value (relative to the template's folder) as a confined, existing file."""
        raw = Path(file)
        candidate = raw if raw.is_absolute() else self.template_dir / raw
        real = self.confine(candidate, key, file)
        if not real.exists():
            raise _problem(key, file, f"no such file ({candidate}); paths are relative to the template's folder "
                                      f"{self.template_dir}")
        if not real.is_file():
            raise _problem(key, file, f"{real} is not a file")
        if not os.access(real, os.R_OK):
            raise _problem(key, file, f"{real} cannot be read (permission denied)")
        return real


# --------------------------------------------------------------------------------------------
# References by format
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A file one model file names: ``target`` as the importer will look for it, ``kind`` (buffer,
    image, material library, layer, library, ...), ``text`` as written in the file."""

    source: Path
    target: Path
    kind: str
    text: str
    optional: bool = False  # a missing one is no error (textures)
    alternatives: tuple[Path, ...] = ()  # where else the importer looks when target is missing


class ModelFormatError(ValueError):
    """A file whose structure greybox cannot read (the importer is then asked, for its own message)."""


class ReferenceRefused(ValueError):
    """A reference greybox never follows (a URL, a resolver scheme): always refused."""


def _read_head(path: Path, size: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def _image_reference(source: Path, target: Path, text: str) -> Reference:
    # Blender's image loader also tries the file's name in the referring file's folder
    return Reference(source, target, "image", text, optional=True, alternatives=(source.parent / target.name,))


def _gltf_uri_path(source: Path, uri: str) -> Path:
    # the importer's own rule (io_scene_gltf2 io/com/path.py uri_to_path): backslashes, percent-decoding, normpath
    return Path(os.path.join(os.path.dirname(source), os.path.normpath(unquote(uri.replace("\\", "/")))))


def gltf_json(path: Path) -> dict:
    """The JSON of a .gltf or .glb file."""
    data = path.read_bytes()
    if data[:4] == b"glTF":
        if len(data) < 20:
            raise ModelFormatError("a .glb shorter than its header")
        version, length = struct.unpack_from("<II", data, 4)
        chunk_length, chunk_type = struct.unpack_from("<II", data, 12)
        if version != 2 or chunk_type != 0x4E4F534A or 20 + chunk_length > len(data):
            raise ModelFormatError(f"a .glb of version {version}, or without its JSON chunk (glTF 2.0 is read)")
        text = data[20:20 + chunk_length]
    else:
        text = data
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ModelFormatError(f"not glTF JSON ({str(err)[:120]})") from None
    if not isinstance(doc, dict):
        raise ModelFormatError("not glTF JSON (the top level is not an object)")
    return doc


def _gltf_references(path: Path) -> list[Reference]:
    doc = gltf_json(path)
    refs = []
    for kind, entries in (("buffer", doc.get("buffers")), ("image", doc.get("images"))):
        for entry in entries if isinstance(entries, list) else []:
            uri = entry.get("uri") if isinstance(entry, dict) else None
            if not isinstance(uri, str) or uri.startswith("data:"):
                continue
            if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", uri):
                raise ReferenceRefused(f"the {kind} {uri!r} is a URL; greybox reads local files only")
            target = _gltf_uri_path(path, uri)
            refs.append(_image_reference(path, target, uri) if kind == "image" else Reference(path, target, kind, uri))
    return refs


def _obj_references(path: Path) -> list[Reference]:
    refs = []
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.startswith(b"mtllib"):
                continue
            rest = raw[6:].strip().decode("utf-8", errors="replace")
            if not rest or not raw[6:7].isspace():
                continue
            whole = path.parent / rest
            names = [rest] if whole.exists() or " " not in rest else rest.split()
            refs.extend(Reference(path, path.parent / n, "material library", n) for n in names)
    return refs


_MTL_MAPS = ("map_", "bump", "disp", "decal", "refl", "norm")
_MTL_OPTION_ARGS = {"-blendu": 1, "-blendv": 1, "-cc": 1, "-clamp": 1, "-imfchan": 1, "-type": 1, "-texres": 1,
                    "-bm": 1, "-boost": 1, "-mm": 2, "-o": 3, "-s": 3, "-t": 3}


def _mtl_references(path: Path) -> list[Reference]:
    refs = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.strip().split()
        if not words or not words[0].lower().startswith(_MTL_MAPS):
            continue
        i = 1
        while i < len(words) and words[i].startswith("-") and words[i] in _MTL_OPTION_ARGS:
            n = _MTL_OPTION_ARGS[words[i]]
            i += 1
            taken = 0
            while i < len(words) and taken < n and re.match(r"^[-+]?[0-9.]+$|^(on|off)$|^[rgbmlz]$", words[i]):
                i += 1
                taken += 1
        name = " ".join(words[i:])
        if name:
            refs.append(_image_reference(path, path.parent / name.replace("\\", "/"), name))
    return refs


_USDA_ASSET = re.compile(r"@@@(.*?)@@@|@([^@\n]*)@", re.S)


def _usd_asset_target(layer_dir: Path, text: str) -> Path | None:
    text = text.strip()
    if not text:
        return None  # an internal reference (@@</Prim>)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", text) and not re.match(r"^[A-Za-z]:[\\/]", text):
        raise ReferenceRefused(f"the asset path @{text}@ uses a resolver scheme; greybox reads local files only")
    text = re.sub(r"\[.*\]$", "", text)  # package-relative part: the package itself is the file read
    return Path(os.path.normpath(os.path.join(layer_dir, text.replace("\\", "/"))))


def _usd_reference(source: Path, target: Path, text: str) -> Reference:
    if target.suffix.lower() in USD_SUFFIXES:
        return Reference(source, target, "layer", text)
    return _image_reference(source, target, text) if target.suffix.lower() in IMAGE_SUFFIXES else Reference(
        source, target, "asset", text)


def _usda_references(source: Path, text: str, layer_dir: Path) -> list[Reference]:
    refs = []
    for match in _USDA_ASSET.finditer(_strip_usda_comments(text)):
        value = match.group(1) if match.group(1) is not None else match.group(2)
        target = _usd_asset_target(layer_dir, value)
        if target is not None:
            refs.append(_usd_reference(source, target, value))
    return refs


def _strip_usda_comments(text: str) -> str:
    """The text with ``#`` comments blanked (outside strings and asset paths), lengths kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            j = text.find(quote, i + len(quote))
            while j != -1 and len(quote) == 1 and text[j - 1] == "\\":
                j = text.find(quote, j + 1)
            j = n if j == -1 else j + len(quote)
            out.append(text[i:j])
            i = j
        elif c == "@":
            j = text.find("@@@", i + 3) + 3 if text.startswith("@@@", i) else text.find("@", i + 1) + 1
            j = n if j <= i else j
            out.append(text[i:j])
            i = j
        elif c == "#" and not text.startswith("#usda", i):
            j = text.find("\n", i)
            j = n if j == -1 else j
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _lz4_block(src: bytes, limit: int) -> bytes:
    """Decompress one raw LZ4 block (the format USD's TfFastCompression wraps)."""
    out = bytearray()
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        literal = token >> 4
        if literal == 15:
            while True:
                b = src[i]
                i += 1
                literal += b
                if b != 255:
                    break
        out += src[i:i + literal]
        i += literal
        if i >= n:
            break
        offset = src[i] | (src[i + 1] << 8)
        i += 2
        length = token & 15
        if length == 15:
            while True:
                b = src[i]
                i += 1
                length += b
                if b != 255:
                    break
        length += 4
        start = len(out) - offset
        if offset <= 0 or start < 0:
            raise ModelFormatError("a damaged LZ4 block")
        if offset >= length:
            out += out[start:start + length]
        else:
            for k in range(length):
                out.append(out[start + k])
        if len(out) > limit:
            raise ModelFormatError("an LZ4 block larger than it says")
    return bytes(out)


def _usd_decompress(data: bytes, size: int) -> bytes:
    chunks = data[0]
    if chunks == 0:
        return _lz4_block(data[1:], size)
    out, i = bytearray(), 1
    for _ in range(chunks):
        (length,) = struct.unpack_from("<i", data, i)
        i += 4
        out += _lz4_block(data[i:i + length], size)
        i += length
    return bytes(out)


def usdc_tokens(data: bytes) -> list[str]:
    """Every token of a binary USD (crate) layer: asset paths, sublayers, references and names are among them."""
    if data[:8] != b"PXR-USDC" or len(data) < 24:
        raise ModelFormatError("not a binary USD layer")
    version = tuple(data[8:11])
    (toc,) = struct.unpack_from("<q", data, 16)
    (count,) = struct.unpack_from("<Q", data, toc)
    sections = {}
    for k in range(min(count, 64)):
        name, start, size = struct.unpack_from("<16sqq", data, toc + 8 + 32 * k)
        sections[name.rstrip(b"\0").decode("ascii", "replace")] = (start, size)
    if "TOKENS" not in sections:
        raise ModelFormatError("a binary USD layer without a token table")
    start, _ = sections["TOKENS"]
    (num,) = struct.unpack_from("<Q", data, start)
    if version >= (0, 4, 0):
        raw_size, packed_size = struct.unpack_from("<QQ", data, start + 8)
        raw = _usd_decompress(data[start + 24:start + 24 + packed_size], raw_size)
    else:
        (raw_size,) = struct.unpack_from("<Q", data, start + 8)
        raw = data[start + 16:start + 16 + raw_size]
    tokens = raw.split(b"\0")
    return [t.decode("utf-8", errors="replace") for t in tokens[:num]]


def _usdc_references(source: Path, data: bytes, layer_dir: Path) -> list[Reference]:
    refs = []
    for token in usdc_tokens(data):
        clean = re.sub(r"\[.*\]$", "", token.strip())
        if not clean or " " in clean or "\n" in clean:
            continue
        if PurePosixPath(clean.replace("\\", "/")).suffix.lower() not in _USD_ASSET_SUFFIXES:
            continue
        target = _usd_asset_target(layer_dir, token)
        if target is not None:
            refs.append(_usd_reference(source, target, token))
    return refs


def usd_layer_kind(data: bytes) -> str:
    """``text`` (usda), ``binary`` (usdc) or ``package`` (usdz) by the bytes, as USD decides."""
    if data[:8] == b"PXR-USDC":
        return "binary"
    if data[:4] == b"PK\x03\x04":
        return "package"
    if data.lstrip()[:5] == b"#usda":
        return "text"
    raise ModelFormatError("neither a USD text layer (#usda), a binary one (PXR-USDC) nor a .usdz package")


def _usd_references(path: Path) -> list[Reference]:
    data = path.read_bytes()
    kind = usd_layer_kind(data)
    if kind == "text":
        return _usda_references(path, data.decode("utf-8", errors="replace"), path.parent)
    if kind == "binary":
        return _usdc_references(path, data, path.parent)
    refs = []
    try:
        with zipfile.ZipFile(path) as package:
            entries = {info.filename for info in package.infolist()}
            for name in sorted(entries):
                suffix = PurePosixPath(name).suffix.lower()
                if suffix not in (".usda", ".usdc", ".usd"):
                    continue
                inner = package.read(name)
                inner_dir = PurePosixPath(name).parent
                fake_dir = Path("/__usdz__") / inner_dir
                found = (_usda_references(path, inner.decode("utf-8", errors="replace"), fake_dir)
                         if usd_layer_kind(inner) == "text" else _usdc_references(path, inner, fake_dir))
                for ref in found:
                    try:
                        inside = ref.target.relative_to("/__usdz__").as_posix()
                    except ValueError:
                        inside = None
                    if inside is not None and inside in entries:
                        continue  # a file inside the package
                    rel = os.path.relpath(ref.target, "/__usdz__")
                    target = Path(os.path.normpath(path.parent / rel))
                    refs.append(Reference(path, target, ref.kind, ref.text, ref.optional, (path.parent / target.name,) if ref.optional else ()))
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelFormatError(f"a damaged .usdz package ({err})") from None
    return refs


# -- FBX (binary) ----------------------------------------------------------------------------

_FBX_MAGIC = b"Kaydara FBX Binary  \x00"


@dataclass
class FbxNode:
    name: str
    props: list
    children: list["FbxNode"] = field(default_factory=list)

    def child(self, name: str) -> "FbxNode | None":
        return next((c for c in self.children if c.name == name), None)


def read_fbx(path: Path) -> list[FbxNode]:
    """The node tree of a binary FBX file (array properties are skipped, not decoded)."""
    data = path.read_bytes()
    if not data.startswith(_FBX_MAGIC):
        raise ModelFormatError("not a binary FBX file (Blender's importer reads binary FBX only; export FBX as binary)")
    (version,) = struct.unpack_from("<I", data, 23)
    wide = version >= 7500
    head = struct.Struct("<QQQB" if wide else "<IIIB")

    def node_at(offset: int) -> tuple[FbxNode | None, int]:
        end, nprops, _, name_len = head.unpack_from(data, offset)
        if end == 0:
            return None, offset + head.size
        if end > len(data) or end <= offset:
            raise ModelFormatError("a damaged FBX node record")
        i = offset + head.size
        name = data[i:i + name_len].decode("utf-8", errors="replace")
        i += name_len
        props = []
        for _ in range(nprops):
            code = data[i:i + 1]
            i += 1
            if code in (b"S", b"R"):
                (length,) = struct.unpack_from("<I", data, i)
                value = data[i + 4:i + 4 + length]
                props.append(value if code == b"R" else value.decode("utf-8", errors="surrogateescape"))
                i += 4 + length
            elif code in (b"f", b"d", b"l", b"i", b"b"):
                _, _, compressed = struct.unpack_from("<III", data, i)
                props.append(None)
                i += 12 + compressed
            else:
                fmt = {b"Y": "<h", b"C": "<?", b"I": "<i", b"F": "<f", b"D": "<d", b"L": "<q"}.get(code)
                if fmt is None:
                    raise ModelFormatError(f"an FBX property of unknown type {code!r}")
                props.append(struct.unpack_from(fmt, data, i)[0])
                i += struct.calcsize(fmt)
        node = FbxNode(name, props)
        while i < end:
            child, i = node_at(i)
            if child is None:
                break
            node.children.append(child)
        return node, end

    nodes, i = [], 27
    try:
        while i < len(data) - head.size:
            node, i = node_at(i)
            if node is None:
                break
            nodes.append(node)
    except (struct.error, IndexError) as err:
        raise ModelFormatError(f"a damaged FBX file ({err})") from None
    return nodes


def _fbx_name(value) -> str:
    text = value if isinstance(value, str) else ""
    return text.split("\x00\x01")[0]


def fbx_properties(nodes: list[FbxNode], section: str = "GlobalSettings") -> dict:
    """``Properties70`` of a top-level FBX node, {name: first value}."""
    top = next((n for n in nodes if n.name == section), None)
    props = top.child("Properties70") if top is not None else None
    return {p.props[0]: (p.props[4] if len(p.props) > 4 else None) for p in (props.children if props else [])
            if p.name == "P" and p.props}


@dataclass
class FileNode:
    """A node of a model file's own hierarchy: its name there, its children in file order and its
    type (``Mesh``, ``Null``, ``Camera``, ``Xform``, ...)."""

    name: str
    type: str = ""
    children: list["FileNode"] = field(default_factory=list)
    blender_generated: bool = False  # USD: the root prim Blender's exporter wrote (its importer skips it)


def fbx_model_tree(nodes: list[FbxNode]) -> list[FileNode]:
    """The FBX file's Model hierarchy (roots in file order), from ``Objects`` and ``Connections``."""
    objects = next((n for n in nodes if n.name == "Objects"), None)
    connections = next((n for n in nodes if n.name == "Connections"), None)
    models: dict[int, FileNode] = {}
    order: list[int] = []
    for entry in objects.children if objects else []:
        if entry.name == "Model" and len(entry.props) >= 3 and isinstance(entry.props[0], int):
            models[entry.props[0]] = FileNode(_fbx_name(entry.props[1]), str(entry.props[2]))
            order.append(entry.props[0])
    parent: dict[int, int] = {}
    for c in connections.children if connections else []:
        if c.name == "C" and len(c.props) >= 3 and c.props[0] == "OO" and c.props[1] in models and c.props[2] in models:
            parent.setdefault(c.props[1], c.props[2])
    roots = []
    for uid in order:
        (models[parent[uid]].children if uid in parent else roots).append(models[uid])
    return roots


def _fbx_references(path: Path) -> list[Reference]:
    try:
        nodes = read_fbx(path)
    except ModelFormatError:
        return []  # the importer says what is wrong with it
    objects = next((n for n in nodes if n.name == "Objects"), None)
    refs = []
    for entry in objects.children if objects else []:
        if entry.name not in ("Texture", "Video"):
            continue
        content = entry.child("Content")
        if content is not None and content.props and isinstance(content.props[0], bytes) and content.props[0]:
            continue  # embedded image data
        strings = {c.name: c.props[0] for c in entry.children if c.props and isinstance(c.props[0], str)}
        # the importer's order (io_scene_fbx import_fbx.blen_read_texture_image): RelativeFilename, joined to
        # the file's folder after its leading separators are stripped, then FileName, then Filename
        relative = strings.get("RelativeFilename", "")
        if relative:
            text = relative
            target = path.parent / relative.replace("\\", "/").lstrip("/")
        else:
            text = strings.get("FileName") or strings.get("Filename") or ""
            if not text:
                continue
            target = Path(text.replace("\\", "/"))
            target = target if target.is_absolute() else path.parent / target
        refs.append(_image_reference(path, Path(os.path.normpath(target)), text))
    return refs


# -- .blend ----------------------------------------------------------------------------------

_BLEND_ID_FILEPATHS = ("Library", "Image", "bSound", "MovieClip", "VFont", "CacheFile", "Volume")


def _blend_bytes(path: Path) -> bytes:
    head = _read_head(path, 4)
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard

        with open(path, "rb") as handle:
            return zstandard.ZstdDecompressor().stream_reader(handle).read()
    if head[:2] == b"\x1f\x8b":
        import gzip

        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()


def read_blend_filepaths(path: Path) -> list[tuple[str, str, bool]]:
    """(datablock type, stored path, packed) of every external file a .blend names: libraries,
    images, sounds, movie clips, fonts, cache files and volumes (from the file's own DNA)."""
    data = _blend_bytes(path)
    if not data.startswith(b"BLENDER"):
        raise ModelFormatError("not a .blend file (its header does not start with BLENDER)")
    if data[7:8] in (b"_", b"-"):  # 4.x and older: BLENDER + pointer size + endianness + 3 digits
        pointer = 8 if data[7:8] == b"-" else 4
        little = data[8:9] == b"v"
        offset = 12
        fmt = ("<" if little else ">") + ("4siQii" if pointer == 8 else "4siIii")
        order = ("code", "len", "old", "sdna", "nr")
    elif data[7:9].isdigit() and data[9:10] == b"-":  # 5.0: BLENDER + header size + - + format + v + version
        header_size = int(data[7:9])
        pointer, little, offset = 8, data[12:13] == b"v", header_size
        fmt = "<4siQqq"
        order = ("code", "sdna", "old", "len", "nr")
    else:
        raise ModelFormatError(f"a .blend header greybox does not know ({data[:17]!r})")
    bhead = struct.Struct(fmt)
    end = "<" if little else ">"
    blocks = []
    dna = None
    while offset + bhead.size <= len(data):
        values = dict(zip(order, bhead.unpack_from(data, offset)))
        offset += bhead.size
        if values["code"] == b"ENDB":
            break
        if values["len"] < 0 or offset + values["len"] > len(data):
            raise ModelFormatError("a damaged .blend block")
        if values["code"] == b"DNA1":
            dna = data[offset:offset + values["len"]]
        else:
            blocks.append((values["sdna"], offset, values["len"], values["nr"]))
        offset += values["len"]
    if dna is None:
        raise ModelFormatError("a .blend without its DNA")
    structs, sizes = _blend_dna(dna, end, pointer)
    wanted = {i: info for i, info in enumerate(structs) if info[0] in _BLEND_ID_FILEPATHS}
    out = []
    for sdna, start, length, _ in blocks:
        if sdna not in wanted:
            continue
        name, fields = wanted[sdna]
        # the path field is stored under its old DNA name ("name[1024]") in many releases
        path_field = "filepath" if "filepath" in fields else ("name" if fields.get("name", (0, 0))[1] >= 256 else None)
        if path_field is None:
            continue
        f_off, f_size = fields[path_field]
        raw = data[start + f_off:start + f_off + f_size].split(b"\0")[0]
        text = raw.decode("utf-8", errors="surrogateescape")
        packed = False
        for pf in ("packedfile", "packedfiles"):
            if pf in fields:
                p_off, p_size = fields[pf]
                packed = packed or any(data[start + p_off:start + p_off + min(p_size, pointer)])
        if text:
            out.append((name, text, packed))
    return out


def _blend_dna(dna: bytes, end: str, pointer: int):
    """Struct layouts of a .blend's DNA: [(struct name, {field: (offset, size)})], and type sizes."""
    def align(i: int) -> int:
        return (i + 3) & ~3

    if dna[:4] != b"SDNA":
        raise ModelFormatError("a damaged .blend DNA")
    i = 4
    sections = {}
    for tag in (b"NAME", b"TYPE"):
        if dna[i:i + 4] != tag:
            raise ModelFormatError("a damaged .blend DNA")
        (count,) = struct.unpack_from(end + "i", dna, i + 4)
        i += 8
        items = []
        for _ in range(count):
            j = dna.index(b"\0", i)
            items.append(dna[i:j].decode("latin-1"))
            i = j + 1
        sections[tag] = items
        i = align(i)
    names, types = sections[b"NAME"], sections[b"TYPE"]
    if dna[i:i + 4] != b"TLEN":
        raise ModelFormatError("a damaged .blend DNA")
    i += 4
    lengths = struct.unpack_from(end + f"{len(types)}h", dna, i)
    i = align(i + 2 * len(types))
    if dna[i:i + 4] != b"STRC":
        raise ModelFormatError("a damaged .blend DNA")
    (count,) = struct.unpack_from(end + "i", dna, i + 4)
    i += 8
    structs = []
    for _ in range(count):
        type_index, nfields = struct.unpack_from(end + "hh", dna, i)
        i += 4
        fields, off = {}, 0
        for _ in range(nfields):
            f_type, f_name = struct.unpack_from(end + "hh", dna, i)
            i += 4
            raw = names[f_name]
            is_pointer = raw.startswith("*") or raw.startswith("(*")
            count_items = 1
            for dim in re.findall(r"\[(\d+)\]", raw):
                count_items *= int(dim)
            size = (pointer if is_pointer else lengths[f_type]) * count_items
            base = re.sub(r"\[.*", "", raw).lstrip("*").replace("(", "").replace(")", "")
            fields[base] = (off, size)
            off += size
        structs.append((types[type_index], fields))
    return structs, lengths


def _blend_references(path: Path) -> list[Reference]:
    refs = []
    for kind, text, packed in read_blend_filepaths(path):
        if packed or (kind == "VFont" and text == "<builtin>"):
            continue
        rel = text[2:] if text.startswith("//") else text
        target = Path(os.path.normpath(path.parent / rel.replace("\\", "/")))
        if kind == "Library":
            refs.append(Reference(path, target, "library", text))
        elif kind == "Image":
            refs.append(_image_reference(path, target, text))
        else:
            refs.append(Reference(path, target, {"bSound": "sound", "MovieClip": "movie clip", "VFont": "font",
                                                 "CacheFile": "cache file", "Volume": "volume"}[kind], text,
                                  optional=kind in ("bSound", "MovieClip")))
    return refs


def references(path: Path) -> list[Reference]:
    """The files ``path`` (a model file or a file it refers to) names, as its importer resolves them."""
    suffix = path.suffix.lower()
    if suffix in (".gltf", ".glb"):
        return _gltf_references(path)
    if suffix == ".obj":
        return _obj_references(path)
    if suffix == ".mtl":
        return _mtl_references(path)
    if suffix in USD_SUFFIXES:
        return _usd_references(path)
    if suffix == ".fbx":
        return _fbx_references(path)
    if suffix == ".blend":
        return _blend_references(path)
    return []


# --------------------------------------------------------------------------------------------
# A model and everything it refers to
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInputs:
    """A checked model file: its resolved ``path`` and every file it reads, {label: sha256} in the
    order found (the model first)."""

    path: Path
    files: dict[str, str]


def model_inputs(file: str, roots: ModelRoots, key: str) -> ModelInputs:
    """Check ``file`` (a template's ``file`` value, at template key ``key``) and every file it refers
    to, recursively: each must resolve, through symbolic links, inside ``roots``, exist (textures may
    be missing) and be readable. Returns the sha256 of each file read. Raises InputError (naming
    ``key``, the file and the reference) on the first problem."""
    path = roots.model_path(file, key)
    files: dict[str, str] = {}
    seen: set[Path] = set()
    queue = [path]
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        try:
            files[roots.label(current)] = sha256_of(current)
        except OSError as err:
            raise _problem(key, file, f"{current} cannot be read ({err.strerror or err})") from None
        if len(seen) > MAX_REFERENCED_FILES:
            raise _problem(key, file, f"refers to more than {MAX_REFERENCED_FILES} files")
        try:
            found = references(current)
        except ReferenceRefused as err:
            raise _problem(key, file, f"{current.name} {err}") from None
        except ModelFormatError as err:
            if current == path:
                continue  # the importer is asked next, and says what it finds wrong
            raise _problem(key, file, f"{current} (referred to by the model) cannot be read: {err}") from None
        except OSError as err:
            raise _problem(key, file, f"{current} cannot be read ({err.strerror or err})") from None
        for ref in found:
            what = f"{ref.source.name} refers to the {ref.kind} {ref.text!r}, which"
            candidates = [ref.target, *ref.alternatives]
            for candidate in candidates:
                if os.path.lexists(candidate) or candidate == ref.target:
                    roots.confine(candidate, key, file, what)
                for variant in _case_variants(candidate):
                    roots.confine(variant, key, file, what)
            existing = next((c for c in candidates if c.is_file()), None)
            if existing is None:
                if ref.optional:
                    continue
                raise _problem(key, file, f"{what} is missing ({ref.target})")
            real = roots.confine(existing, key, file, what)
            if not os.access(real, os.R_OK):
                raise _problem(key, file, f"{what} cannot be read ({real}: permission denied)")
            if ref.kind in ("layer", "library", "material library", "buffer") or real.suffix.lower() in USD_SUFFIXES:
                queue.append(real)
            else:
                try:
                    files[roots.label(real)] = sha256_of(real)
                except OSError as err:
                    raise _problem(key, file, f"{what} cannot be read ({err.strerror or err})") from None
                seen.add(real)
    return ModelInputs(path, files)


def _case_variants(path: Path) -> list[Path]:
    """Files in ``path``'s folder whose names match it ignoring case (Blender's image loader takes those too)."""
    parent = path.parent
    try:
        if not parent.is_dir():
            return []
        lower = path.name.lower()
        return [parent / name for name in os.listdir(parent) if name.lower() == lower and name != path.name]
    except OSError:
        return []


# --------------------------------------------------------------------------------------------
# USD text layers: what 4.2's importer does not apply, and the prim tree
# --------------------------------------------------------------------------------------------


def usda_stage_metadata(text: str) -> dict:
    """``metersPerUnit`` and ``upAxis`` from a USD text layer's header (USD's defaults when absent: 0.01, Y)."""
    body = _strip_usda_comments(text)
    start = body.find("(")
    head = body[start:_matching(body, start) + 1] if start != -1 and not body[:start].strip().replace("#usda 1.0", "") else ""
    bare = re.sub(r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"', lambda m: '"' + " " * (len(m.group()) - 2) + '"'
                  if not re.fullmatch(r'"[YZyz]"', m.group()) else m.group(), head, flags=re.S)  # string contents blanked
    meters = re.search(r"\bmetersPerUnit\s*=\s*([-+0-9.eE]+)", bare)
    up = re.search(r"\bupAxis\s*=\s*\"([YZyz])\"", bare)
    return {"metersPerUnit": float(meters.group(1)) if meters else 0.01, "upAxis": up.group(1).upper() if up else "Y",
            "given": {"metersPerUnit": meters is not None, "upAxis": up is not None}}


def _matching(text: str, start: int) -> int:
    """Index of the bracket closing the one at ``start`` (strings and asset paths skipped)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    i = start
    while i < len(text):
        c = text[i]
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            j = text.find(quote, i + len(quote))
            while j != -1 and len(quote) == 1 and text[j - 1] == "\\":
                j = text.find(quote, j + 1)
            i = len(text) if j == -1 else j + len(quote)
            continue
        if c == "@":
            j = text.find("@@@", i + 3) + 3 if text.startswith("@@@", i) else text.find("@", i + 1) + 1
            i = len(text) if j <= i else j
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return i
        i += 1
    return len(text) - 1


_PRIM = re.compile(r"\b(def|over|class)\s+(?:([A-Za-z_][A-Za-z0-9_]*)\s+)?\"([^\"]*)\"")


def usda_prim_tree(text: str) -> list[FileNode]:
    """The prims a USD text layer defines (``def``), nested as written; variants and composition
    arcs are not followed."""
    body = _strip_usda_comments(text)

    def parse(start: int, stop: int) -> list[FileNode]:
        nodes = []
        i = start
        while i < stop:
            match = _PRIM.search(body, i, stop)
            if match is None:
                break
            j = match.end()
            while j < stop and body[j].isspace():
                j += 1
            if j < stop and body[j] == "(":
                j = _matching(body, j) + 1
                while j < stop and body[j].isspace():
                    j += 1
            if j >= stop or body[j] != "{":
                i = match.end()
                continue
            close = _matching(body, j)
            if match.group(1) == "def":
                meta = body[match.end():j]
                generated = re.search(r"dictionary\s+Blender\s*=\s*\{[^}]*\bgenerated\s*=\s*(1|true)", meta) is not None
                nodes.append(FileNode(match.group(3), match.group(2) or "", parse(j + 1, close), generated))
            i = close + 1
        return nodes

    header_end = 0
    start = body.find("(")
    if start != -1 and body[:start].strip() in ("#usda 1.0", ""):
        header_end = _matching(body, start) + 1
    return parse(header_end, len(body))


# --------------------------------------------------------------------------------------------
# Node paths: the file's own hierarchy, matched to the objects Blender's importer made
# --------------------------------------------------------------------------------------------

BLENDER_NAME_BYTES = 63  # Blender cuts longer names
_RENAMED = re.compile(r"^(.*)\.(\d{3,})$")


def blender_name(name: str) -> str:
    """``name`` as Blender stores it: at most 63 bytes of UTF-8, cut at a character boundary."""
    raw = name.encode("utf-8")
    return name if len(raw) <= BLENDER_NAME_BYTES else raw[:BLENDER_NAME_BYTES].decode("utf-8", errors="ignore")


def path_segment(name: str) -> str:
    """A name as one segment of a node path ('/' inside a name becomes '_')."""
    return name.replace("/", "_") or "_"


def node_paths(roots: list[FileNode]) -> dict[int, str]:
    """{id(node): node path} for every node: ``/`` + the names from the root, each sibling of a
    repeated name after the first getting ``[2]``, ``[3]``, ... in file order."""
    out: dict[int, str] = {}

    def walk(nodes: list[FileNode], prefix: str) -> None:
        seen: dict[str, int] = {}
        for node in nodes:
            segment = path_segment(node.name)
            seen[segment] = seen.get(segment, 0) + 1
            if seen[segment] > 1:
                segment = f"{segment}[{seen[segment]}]"
            path = f"{prefix}/{segment}"
            out[id(node)] = path
            walk(node.children, path)

    walk(roots, "")
    return out


def split_renamed(name: str) -> tuple[str, int]:
    """('Chair', 1) for Blender's 'Chair.001', (name, 0) for a name without such a suffix."""
    match = _RENAMED.match(name)
    return (match.group(1), int(match.group(2))) if match else (name, 0)


def map_blender_objects(objects: list[tuple[str, str | None]], roots: list[FileNode], *,
                        merged_xforms: bool = False) -> dict[str, FileNode]:
    """Which file node each Blender object (name, parent name) stands for, by names and parents.

    Blender keeps the file's hierarchy but renames: a name already taken gets ``.001``, ``.002``
    in the order the importer made the objects (the file's order), and long names are cut at
    63 bytes. Under each parent, an object takes the first unmatched node of its exact name, else
    of its name without the suffix; siblings are matched in suffix order. ``merged_xforms``
    (Blender 4.2's USD importer): a transform prim with a single geometry child is one object
    named after the child."""
    children: dict[str | None, list[str]] = {}
    names = {name for name, _ in objects}
    for name, parent in objects:
        children.setdefault(parent if parent in names else None, []).append(name)
    mapped: dict[str, FileNode] = {}

    def candidates(nodes: list[FileNode]) -> list[FileNode]:
        out = []
        for node in nodes:
            if node.blender_generated:
                out.extend(candidates(node.children))
            elif (merged_xforms and node.type == "Xform" and len(node.children) == 1
                  and node.children[0].type not in ("Xform", "Scope", "")):
                out.append(node.children[0])
            else:
                out.append(node)
        return out

    def visit(parent: str | None, nodes: list[FileNode] | None) -> None:
        pool = candidates(nodes) if nodes is not None else []
        taken: set[int] = set()
        for name in sorted(children.get(parent, []), key=lambda n: (split_renamed(n)[0], split_renamed(n)[1], n)):
            node = next((c for c in pool if id(c) not in taken and blender_name(c.name) == name), None)
            if node is None:
                base, _ = split_renamed(name)
                node = next((c for c in pool if id(c) not in taken and blender_name(c.name) == base), None)
            if node is not None:
                taken.add(id(node))
                mapped[name] = node
            visit(name, node.children if node is not None else None)

    visit(None, roots)
    return mapped
