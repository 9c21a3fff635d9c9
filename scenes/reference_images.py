"""A template's reference images (``[[style.reference_images]]``) as untrusted files: confined, read, hashed.

An ``image`` path is relative to the template's folder (the folder of the template file; for a
bundled template, the bundled folder). It must resolve there through every symbolic link (a link
leading out of the folder is refused, as model and asset paths are), be a regular readable file,
and be an image Pillow reads, at most :data:`MAX_REFERENCE_PIXELS` pixels. Its sha256 goes into the
store keys and the manifest, so changing a reference image's bytes reruns what it touches and
nothing else, and renaming it reruns nothing.

:func:`reference_image_files` runs in the driver before anything is written (and in
``greybox validate``); it raises one :class:`greybox.errors.InputError` listing every problem
(key path, value, fix). Pure Python and Pillow.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from greybox.errors import InputError

MAX_REFERENCE_PIXELS = 64 << 20  # 8192 x 8192; Pillow's decompression-bomb limit is about 89 M


@dataclass(frozen=True)
class ReferenceFile:
    """One checked reference image: the template's ``image`` value, the resolved file, its sha256 and size."""

    image: str
    path: Path
    sha256: str
    width: int
    height: int

    def to_json(self) -> dict:
        return {"image": self.image, "path": str(self.path), "sha256": self.sha256, "size": [self.width, self.height]}


def template_folder(source: str) -> Path:
    """The folder a template's relative file paths start from: the template file's own folder (a
    bundled template's is the bundled folder)."""
    from scenes.template_loading import find_template

    return find_template(str(source)).resolve().parent


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_one(folder: Path, index: int, image: str) -> ReferenceFile:
    from PIL import Image, UnidentifiedImageError

    key = f"style.reference_images.{index}.image"

    def problem(message: str) -> InputError:
        text = f"{key} = {image!r}: {message}"
        return InputError(text, [{"file": "", "key": key, "value": image, "message": text}])

    raw = Path(image)
    candidate = raw if raw.is_absolute() else folder / raw
    real = Path(os.path.realpath(candidate))
    if real != folder and folder not in real.parents:
        via = "" if real == Path(os.path.abspath(candidate)) else f" (through a symbolic link: {candidate} -> {real})"
        raise problem(f"resolves to {real}{via}, outside the template's folder {folder}; reference images must lie "
                      "inside the template's folder (copy the image there)")
    if not real.exists():
        raise problem(f"no such file ({candidate}); paths are relative to the template's folder {folder}")
    if not real.is_file():
        raise problem(f"{real} is not a file")
    try:
        with Image.open(real) as opened:
            width, height = opened.size
            if width * height > MAX_REFERENCE_PIXELS:
                raise problem(f"is {width}x{height} pixels; reference images take at most {MAX_REFERENCE_PIXELS >> 20} M "
                              "pixels (the image encoder sees 224x224: scale it down)")
            opened.verify()
        digest = _sha256(real)
    except PermissionError:
        raise problem(f"{real} cannot be read (permission denied)") from None
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError) as err:
        raise problem(f"{real} is not an image Pillow can read ({type(err).__name__}: {str(err)[:120]}); save it as "
                      "PNG or JPEG") from None
    return ReferenceFile(image=image, path=real, sha256=digest, width=int(width), height=int(height))


def reference_image_files(template, source: str) -> list[ReferenceFile]:
    """Every ``style.reference_images`` entry of ``template`` (loaded from ``source``) checked and
    hashed, in order. Raises InputError listing every problem (exit 2)."""
    entries = template.style.reference_images
    if not entries:
        return []
    folder = template_folder(source)
    files, problems, messages = [], [], []
    for i, entry in enumerate(entries):
        try:
            files.append(_check_one(folder, i, entry.image))
        except InputError as err:
            messages.append(str(err))
            problems.extend({**p, "file": str(source)} for p in err.problems)
    if problems:
        raise InputError("\n".join(f"{source}: {m}" for m in messages), problems)
    return files
