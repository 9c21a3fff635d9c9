"""Resolve the base model and each ControlNet to local folders before anything is rendered.

A model named in ``[style]`` (``model``, ``controlnets[].model``) or on the command line
(``--model``, ``--controlnet PASS=ID_OR_DIR``) is either a local diffusers folder or a hub id:

1. an existing local folder wins over a hub id of the same spelling;
2. otherwise the hub id goes through huggingface_hub's cache: with ``HF_HUB_OFFLINE=1`` only the
   cache is read (``local_files_only``); otherwise the cache is tried first, then a download
   of the safetensors files (no ``.bin``, no ``.ckpt``, no fp16/EMA duplicates).

Only safetensors weights are accepted (a folder that has only ``.bin``/``.ckpt`` files is refused)
and remote code is never trusted. When weights cannot be had, ``WeightsUnavailableError`` (exit 3)
names the model and the ways out. The result, ``ResolvedModels``, records what the manifest
needs: each model's id, local path, and the hub revision (snapshot hash) or, for a local folder,
the sha256 of each safetensors file.

Model families: the base model's ``model_index.json`` ``_class_name`` tells SD1.5-style from SDXL;
a ControlNet's ``config.json`` ``_class_name`` tells ``ControlNetModel`` from ``ControlNetUnionModel``.

A style with reference images also resolves its IP-Adapter (``style.ip_adapter``,
:func:`resolve_ip_adapter`): the same local-folder-or-hub rule, fetching only the adapter's
``<subfolder>/<weight_name>`` (a ``.safetensors`` file) and its ``<subfolder>/image_encoder`` (or
the CLIP vision encoder ``style.ip_adapter.image_encoder`` names, safetensors only); missing ones
are a ``WeightsUnavailableError`` (exit 3) naming them and the ways out, before anything renders.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from greybox.atomic_files import sha256_file
from greybox.errors import InputError, WeightsUnavailableError
from scenes.template_schema import CONTROL_PASSES

DEFAULT_CONTROLNET_SCALE = 1.0
DEFAULT_CONTROLNET_WINDOW = (0.0, 1.0)

# SDXL ControlNet-union control modes (CONDITIONING.md): 0 openpose, 1 depth, 2 thick lines,
# 3 thin lines (canny/lineart/MLSD), 4 normal, 5 segment.
UNION_CONTROL_MODES = {"depth": 1, "lines": 3, "normal": 4, "seg": 5}

_UNSAFE_WEIGHT_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
# What a download fetches: configs, tokenizer files and full-precision safetensors weights.
_ALLOW_PATTERNS = ["*.json", "*.txt", "*.safetensors"]
_IGNORE_PATTERNS = ["safety_checker/*", "feature_extractor/*", "image_encoder/*", "*.fp16.*", "*non_ema*", "*.ema.*", "*_promax*", "*.bin", "*.ckpt", "*.pt", "*.pth", "*.onnx*", "*.msgpack", "*.h5"]

ModelFamily = Literal["sd15", "sdxl"]


@dataclass(frozen=True)
class ResolvedModel:
    """One model resolved to a local folder.

    ``model_id`` is the spelling the user gave; ``source`` is ``local_folder`` or ``hub_cache``;
    ``revision`` is the hub snapshot hash (hub cache only); ``file_sha256`` maps each safetensors
    file (relative path) to its sha256 (local folders only); ``class_name`` is the diffusers class
    from ``model_index.json`` / ``config.json``.
    """

    role: str
    model_id: str
    local_path: Path
    source: Literal["local_folder", "hub_cache"]
    class_name: str
    revision: str | None = None
    file_sha256: dict[str, str] = field(default_factory=dict)

    def manifest_entry(self) -> dict:
        entry = {
            "role": self.role,
            "id": self.model_id,
            "path": str(self.local_path),
            "source": self.source,
            "class_name": self.class_name,
        }
        if self.revision is not None:
            entry["revision"] = self.revision
        if self.file_sha256:
            entry["file_sha256"] = dict(sorted(self.file_sha256.items()))
        return entry


@dataclass(frozen=True)
class ResolvedControlNet:
    """A ControlNet for one control pass, with its ``controlnet_conditioning_scale`` and guidance window."""

    pass_name: str
    model: ResolvedModel
    scale: float
    start: float
    end: float

    @property
    def is_union(self) -> bool:
        return self.model.class_name == "ControlNetUnionModel"

    def manifest_entry(self) -> dict:
        return {"pass": self.pass_name, "scale": self.scale, "start": self.start, "end": self.end, **self.model.manifest_entry()}


@dataclass(frozen=True)
class ResolvedModels:
    """The base model and the ControlNets of a diffusion job, all resolved to local folders.

    ``family`` is ``sd15`` (SD1.x/2.x pipelines) or ``sdxl``. ``union`` is True when the
    ControlNets are one SDXL ``ControlNetUnionModel`` fed one control image per pass;
    ``union_window`` is then the single guidance window it runs with. ``warnings`` holds notes for
    the user and the manifest (for instance, per-pass windows merged for the union model).
    """

    base: ResolvedModel
    family: ModelFamily
    controlnets: tuple[ResolvedControlNet, ...]
    union: bool = False
    union_window: tuple[float, float] | None = None
    warnings: tuple[str, ...] = ()
    ip_adapter: "ResolvedIpAdapter | None" = None

    @property
    def pass_names(self) -> list[str]:
        return [c.pass_name for c in self.controlnets]

    @property
    def union_control_modes(self) -> list[int]:
        return [UNION_CONTROL_MODES[c.pass_name] for c in self.controlnets]

    def manifest(self) -> dict:
        """What the output manifest records about the models (deterministic, JSON-ready)."""
        record = {
            "family": self.family,
            "base": self.base.manifest_entry(),
            "controlnets": [c.manifest_entry() for c in self.controlnets],
            "union": self.union,
            "warnings": list(self.warnings),
        }
        if self.union:
            record["union_window"] = list(self.union_window)
            record["union_control_modes"] = self.union_control_modes
        if self.ip_adapter is not None:
            record["ip_adapter"] = self.ip_adapter.manifest_entry()
        return record


@dataclass(frozen=True)
class ResolvedIpAdapter:
    """The IP-Adapter of ``style.ip_adapter`` resolved to local files: ``folder`` is what
    ``load_ip_adapter`` is given (with ``subfolder`` and ``weight_name``), ``weight_path`` the
    safetensors file, ``image_encoder`` the CLIP vision encoder's folder (the adapter's own
    ``<subfolder>/image_encoder`` unless ``style.ip_adapter.image_encoder`` names another).
    ``file_sha256``: relative path -> sha256 of the weight files (local folders), ``revision``:
    the hub snapshot (hub ids)."""

    model_id: str
    folder: Path
    subfolder: str
    weight_name: str
    weight_path: Path
    image_encoder: Path
    image_encoder_id: str
    source: Literal["local_folder", "hub_cache"]
    revision: str | None = None
    image_encoder_revision: str | None = None
    file_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def own_image_encoder(self) -> bool:
        """Whether the encoder is the adapter's own ``<subfolder>/image_encoder`` (load_ip_adapter loads it)."""
        return not self.image_encoder_id

    def manifest_entry(self) -> dict:
        entry = {"role": "ip_adapter", "id": self.model_id, "path": str(self.folder), "source": self.source,
                 "subfolder": self.subfolder, "weight_name": self.weight_name,
                 "image_encoder": {"id": self.image_encoder_id or f"{self.model_id} ({Path(self.subfolder, 'image_encoder').as_posix()})",
                                   "path": str(self.image_encoder)}}
        if self.revision is not None:
            entry["revision"] = self.revision
        if self.image_encoder_revision is not None:
            entry["image_encoder"]["revision"] = self.image_encoder_revision
        if self.file_sha256:
            entry["file_sha256"] = dict(sorted(self.file_sha256.items()))
        return entry


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


DIFFUSION_LIBRARIES = ("torch", "diffusers", "transformers", "safetensors", "accelerate", "huggingface_hub")


def check_diffusion_installed() -> None:
    """Raise ``InputError`` (exit 2) naming the fix when the libraries of the diffusion stylizer are not
    installed (a farm node set up for the passes and the NPR stylizer only: ``pip install greybox``)."""
    import importlib.util

    missing = [name for name in DIFFUSION_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"style.stylizer = 'diffusion' needs {', '.join(missing)}, which this Python does not have; "
            "install the diffusion extra (pip install 'greybox[diffusion]') or use --stylizer npr"
        )


def resolve_models(
    style,
    *,
    model_override: str | None = None,
    controlnet_overrides: dict[str, str] | None = None,
) -> ResolvedModels:
    """Resolve ``style.model`` (or ``model_override``) and the ControlNets to local folders.

    ``controlnet_overrides`` maps a pass (depth, normal, seg, lines) to a hub id or folder, as
    ``--controlnet PASS=ID_OR_DIR`` gives them; when given, that list replaces the template's
    ControlNets, each keeping the template's scale and window for its pass, or the defaults
    (1.0, 0..1). Raises ``InputError`` for a bad pass name or an empty ControlNet list, and
    ``WeightsUnavailableError`` when any model's weights cannot be had.
    """
    # 1. Check inputs: the libraries, then which ControlNets, with which scale and window.
    check_diffusion_installed()
    specs = _controlnet_specs(style, controlnet_overrides)
    if not specs:
        raise InputError(
            "style.controlnets is empty: the diffusion stylizer needs at least one ControlNet; "
            'add [[style.controlnets]] with pass = "depth" and model = HUB_ID_OR_DIR, pass '
            "--controlnet depth=HUB_ID_OR_DIR, or use --stylizer npr"
        )
    base_id = model_override or style.model

    # 2. Resolve the base model and detect its family.
    base = _resolve_one(base_id, role="base", option_hint="--model DIR", weights_kind="pipeline")
    family = _family_of(base)

    # 3. Resolve the ControlNets (one folder may serve several passes: the union model).
    resolved_cache: dict[str, ResolvedModel] = {}
    controlnets = []
    for pass_name, model_id, scale, start, end in specs:
        if model_id not in resolved_cache:
            resolved_cache[model_id] = _resolve_one(
                model_id, role=f"controlnet:{pass_name}", option_hint=f"--controlnet {pass_name}=DIR", weights_kind="controlnet"
            )
        controlnets.append(ResolvedControlNet(pass_name, resolved_cache[model_id], scale, start, end))

    # 4. Check the combination, and merge the windows for the union model.
    resolved = _combine(base, family, tuple(controlnets))

    # 5. The IP-Adapter, when reference images need it.
    if style.reference_images:
        if family != "sd15" or resolved.union:
            raise InputError(
                f"style.reference_images go through an SD1.x IP-Adapter; {base.model_id!r} is {base.class_name}. "
                "Use an SD1.5-family base model, or remove the reference images (--set 'style.reference_images=[]')"
            )
        from dataclasses import replace

        resolved = replace(resolved, ip_adapter=resolve_ip_adapter(style.ip_adapter))
    return resolved


def _controlnet_specs(style, overrides: dict[str, str] | None) -> list[tuple[str, str, float, float, float]]:
    template = {c.pass_name: c for c in style.controlnets}
    if not overrides:
        return [(c.pass_name, c.model, float(c.scale), float(c.start), float(c.end)) for c in style.controlnets]
    specs = []
    for pass_name, model_id in overrides.items():
        if pass_name not in CONTROL_PASSES:
            raise InputError(
                f"--controlnet {pass_name}={model_id}: unknown pass {pass_name!r}; use one of {', '.join(CONTROL_PASSES)}"
            )
        if not model_id:
            raise InputError(f"--controlnet {pass_name}=: give a hub id or a local folder after '='")
        if pass_name in template:
            c = template[pass_name]
            specs.append((pass_name, model_id, float(c.scale), float(c.start), float(c.end)))
        else:
            specs.append((pass_name, model_id, DEFAULT_CONTROLNET_SCALE, *DEFAULT_CONTROLNET_WINDOW))
    return specs


def _combine(base: ResolvedModel, family: ModelFamily, controlnets: tuple[ResolvedControlNet, ...]) -> ResolvedModels:
    unions = [c for c in controlnets if c.is_union]
    if not unions:
        return ResolvedModels(base=base, family=family, controlnets=controlnets)
    if family != "sdxl":
        raise InputError(
            f"ControlNet {unions[0].model.model_id!r} (pass {unions[0].pass_name}) is a ControlNetUnionModel, which "
            f"needs an SDXL base model, but {base.model_id!r} is {base.class_name}; use an SDXL model or a ControlNet per pass"
        )
    union_paths = {c.model.local_path for c in controlnets}
    if len(unions) != len(controlnets) or len(union_paths) != 1:
        raise InputError(
            "the SDXL union ControlNet serves every pass with one network: name the same union model for each pass "
            f"(got {', '.join(f'{c.pass_name}={c.model.model_id}' for c in controlnets)})"
        )
    for c in controlnets:
        if c.pass_name not in UNION_CONTROL_MODES:
            raise InputError(f"pass {c.pass_name!r} has no ControlNet-union control mode (known: {', '.join(UNION_CONTROL_MODES)})")
    start = min(c.start for c in controlnets)
    end = max(c.end for c in controlnets)
    warnings = []
    if len({(c.start, c.end) for c in controlnets}) > 1:
        windows = ", ".join(f"{c.pass_name} {c.start:g}..{c.end:g}" for c in controlnets)
        warnings.append(
            f"the SDXL union ControlNet takes one guidance window; per-pass windows ({windows}) were merged to the "
            f"widest, {start:g}..{end:g}"
        )
    return ResolvedModels(
        base=base, family=family, controlnets=controlnets, union=True, union_window=(start, end), warnings=tuple(warnings)
    )


# --------------------------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------------------------


def _resolve_one(model_id: str, *, role: str, option_hint: str, weights_kind: str) -> ResolvedModel:
    """Resolve one spelling to a folder: an existing local folder, else the hub cache (or a download)."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        path = local.resolve()
        _check_safetensors_only(path, model_id, role, option_hint, weights_kind)
        return ResolvedModel(
            role=role,
            model_id=model_id,
            local_path=path,
            source="local_folder",
            class_name=_class_name(path, weights_kind, model_id, role, option_hint),
            file_sha256=_safetensors_hashes(path),
        )
    if local.exists():
        raise _unavailable(
            model_id, role, option_hint,
            f"{model_id} is a file, not a diffusers folder (single-file checkpoints are not loaded; convert it to a "
            "diffusers folder with safetensors weights)",
        )
    looks_like_path = model_id.startswith((".", "/", "~")) or model_id.endswith("/") or model_id.count("/") > 1 or "\\" in model_id
    if looks_like_path or not _HUB_ID.match(model_id):
        raise _unavailable(model_id, role, option_hint, f"no folder {model_id} exists, and it is not a hub id (namespace/name)")

    path, revision = _snapshot(model_id, role, option_hint, lambda p: _check_safetensors_only(p, model_id, role, option_hint, weights_kind))
    return ResolvedModel(
        role=role,
        model_id=model_id,
        local_path=path,
        source="hub_cache",
        class_name=_class_name(path, weights_kind, model_id, role, option_hint),
        revision=revision,
    )


def _hub_cache_dir() -> str | None:
    # huggingface_hub reads these at import; read them now so a changed environment is honoured.
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _snapshot(model_id: str, role: str, option_hint: str, check, *, allow_patterns=None, ignore_patterns=None,
              unavailable=None) -> tuple[Path, str]:
    """The hub snapshot folder of ``model_id`` and its revision: from the cache, else (online) downloaded.
    ``check(path)`` raises WeightsUnavailableError when the snapshot lacks safetensors weights.
    ``allow_patterns`` / ``ignore_patterns``: what a download fetches (default: a diffusers folder's
    configs and full-precision safetensors); ``unavailable(reason)``: the error to raise."""
    from huggingface_hub import snapshot_download

    unavailable = unavailable or (lambda reason: _unavailable(model_id, role, option_hint, reason))
    kwargs = dict(repo_id=model_id, cache_dir=_hub_cache_dir(), allow_patterns=allow_patterns or _ALLOW_PATTERNS,
                  ignore_patterns=_IGNORE_PATTERNS if ignore_patterns is None else ignore_patterns)
    try:
        path = Path(snapshot_download(local_files_only=True, **kwargs))
        check(path)
        return path, path.name
    except WeightsUnavailableError:  # in the cache, but without safetensors weights (or incomplete)
        if _offline():
            raise
    except Exception as cache_error:  # not in the cache (LocalEntryNotFoundError and kin)
        if _offline():
            raise unavailable(f"HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache ({_short(cache_error)})") from None
    try:
        path = Path(snapshot_download(**kwargs))
    except Exception as download_error:  # network, gated, missing repository
        raise unavailable(f"downloading it failed: {_short(download_error)}") from None
    check(path)
    return path, path.name


def _short(error: Exception) -> str:
    text = " ".join(str(error).split())
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _unavailable(model_id: str, role: str, option_hint: str, reason: str) -> WeightsUnavailableError:
    what = "base model (style.model)" if role == "base" else f"ControlNet for pass {role.split(':', 1)[1]} (style.controlnets)"
    return WeightsUnavailableError(
        f"model weights unavailable: {what} {model_id!r}: {reason}.\n"
        "Ways out:\n"
        f"  - use a local diffusers folder with safetensors weights: {option_hint}\n"
        f"  - download it first where there is network: `huggingface-cli download {model_id}` (or `hf download "
        f"{model_id}`), then run with the same HF_HOME (HF_HUB_OFFLINE=1 works with a filled cache)\n"
        "  - draft without weights: --stylizer npr"
    )


def _weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _check_safetensors_only(path: Path, model_id: str, role: str, option_hint: str, weights_kind: str) -> None:
    """Every component folder that holds weights must hold safetensors weights."""
    files = _weight_files(path)
    if weights_kind == "pipeline":
        index = path / "model_index.json"
        if not index.is_file():
            raise _unavailable(model_id, role, option_hint, f"{path} has no model_index.json (not a diffusers pipeline folder)")
        components = [name for name, value in json.loads(index.read_text()).items() if not name.startswith("_") and isinstance(value, list) and value[0]]
        folders = [path / name for name in components if (path / name / "config.json").is_file()]
        # greybox loads neither the safety checker nor an image encoder: their weights are not needed.
        skipped = ("tokenizer", "tokenizer_2", "scheduler", "feature_extractor", "safety_checker", "image_encoder")
        folders = [f for f in folders if f.name not in skipped]
    else:
        folders = [path]
    for folder in folders:
        own = [p for p in files if p.parent == folder]
        has_safetensors = any(p.name.endswith(".safetensors") or p.name.endswith(".safetensors.index.json") for p in own)
        unsafe = [p.name for p in own if p.name.endswith(_UNSAFE_WEIGHT_SUFFIXES)]
        if not has_safetensors:
            found = f" (found only {', '.join(unsafe)})" if unsafe else ""
            raise _unavailable(
                model_id, role, option_hint,
                f"{folder} has no .safetensors weights{found}; only safetensors are loaded (pickled .bin/.ckpt files can run code)",
            )


def _class_name(path: Path, weights_kind: str, model_id: str, role: str, option_hint: str) -> str:
    config = path / ("model_index.json" if weights_kind == "pipeline" else "config.json")
    if not config.is_file():
        raise _unavailable(model_id, role, option_hint, f"{path} has no {config.name}")
    name = json.loads(config.read_text()).get("_class_name", "")
    if weights_kind == "controlnet" and name not in ("ControlNetModel", "ControlNetUnionModel"):
        raise InputError(
            f"{role.split(':', 1)[1]} ControlNet {model_id!r} is a {name or 'model without _class_name'}, not a "
            "ControlNetModel or ControlNetUnionModel; name a diffusers ControlNet"
        )
    return name


def _family_of(base: ResolvedModel) -> ModelFamily:
    name = base.class_name
    if "XL" in name:
        return "sdxl"
    if name.startswith("StableDiffusion") or name.startswith("LatentConsistency"):
        return "sd15"
    raise InputError(
        f"style.model {base.model_id!r} is a {name or 'pipeline without _class_name'}; greybox stylises with Stable "
        "Diffusion 1.x/2.x or SDXL pipelines (model_index.json _class_name StableDiffusionPipeline or StableDiffusionXLPipeline)"
    )


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _hash_cached(file: Path) -> str:
    """sha256 of ``file`` (cached per process by path, size and mtime)."""
    stat = file.stat()
    key = (str(file), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(file)
    return _HASH_CACHE[key]


def _safetensors_hashes(path: Path) -> dict[str, str]:
    """sha256 of each safetensors file under ``path`` (cached per process by path, size and mtime)."""
    return {file.relative_to(path).as_posix(): _hash_cached(file)
            for file in _weight_files(path) if file.name.endswith(".safetensors")}


# --------------------------------------------------------------------------------------------
# The IP-Adapter of the reference images
# --------------------------------------------------------------------------------------------


def _ip_unavailable(spec, reason: str, *, encoder: bool = False) -> WeightsUnavailableError:
    weight = Path(spec.subfolder, spec.weight_name).as_posix()
    encoder_files = Path(spec.subfolder, "image_encoder").as_posix()
    what = (f"CLIP image encoder (style.ip_adapter.image_encoder) {spec.image_encoder!r}" if encoder and spec.image_encoder
            else f"IP-Adapter (style.ip_adapter) {spec.model!r} {weight}" + ("" if spec.image_encoder else f" with {encoder_files}/"))
    if spec.image_encoder:
        download = f"`hf download {spec.model} {weight}` and `hf download {spec.image_encoder}`"
    else:
        download = (f"`hf download {spec.model} {weight} {encoder_files}/config.json {encoder_files}/model.safetensors`")
    return WeightsUnavailableError(
        f"model weights unavailable: {what}: {reason}.\n"
        "Ways out:\n"
        f"  - use a local folder holding {weight}" + ("" if spec.image_encoder else f" and {encoder_files}/")
        + ": --set style.ip_adapter.model=DIR (and style.ip_adapter.image_encoder=DIR for another CLIP vision encoder)\n"
        f"  - download it first where there is network: {download}, then run with the same HF_HOME "
        "(HF_HUB_OFFLINE=1 works with a filled cache)\n"
        "  - render without the reference images: --set 'style.reference_images=[]'\n"
        "  - draft without weights: --stylizer npr"
    )


def _check_image_encoder(folder: Path, fail) -> None:
    config = folder / "config.json"
    if not config.is_file():
        raise fail(f"{folder} has no config.json (not a CLIP vision encoder folder)")
    try:
        arch = json.loads(config.read_text()).get("architectures") or []
    except ValueError as err:
        raise fail(f"{config} is not JSON ({err})") from None
    if arch and "CLIPVisionModelWithProjection" not in arch:
        raise fail(f"{folder} holds a {', '.join(arch)}, not a CLIPVisionModelWithProjection")
    own = [p for p in _weight_files(folder) if p.parent == folder]
    if not any(p.name.endswith((".safetensors", ".safetensors.index.json")) for p in own):
        unsafe = [p.name for p in own if p.name.endswith(_UNSAFE_WEIGHT_SUFFIXES)]
        found = f" (found only {', '.join(unsafe)})" if unsafe else ""
        raise fail(f"{folder} has no .safetensors weights{found}; only safetensors are loaded")


def resolve_ip_adapter(spec) -> ResolvedIpAdapter:
    """``style.ip_adapter`` (an :class:`scenes.template_schema.IpAdapterSpec`) to local files, as
    :func:`resolve_models` resolves the other models (a local folder wins, else the hub cache, else
    a download of just the files it needs); WeightsUnavailableError (exit 3) naming the model and
    the ways out when they cannot be had."""
    weight_rel = Path(spec.subfolder, spec.weight_name).as_posix()
    encoder_rel = Path(spec.subfolder, "image_encoder").as_posix()
    fail = lambda reason: _ip_unavailable(spec, reason)  # noqa: E731

    def check(folder: Path) -> None:
        weight = folder / weight_rel
        if not weight.is_file():
            raise fail(f"{folder} has no {weight_rel}")
        if not spec.image_encoder:
            _check_image_encoder(folder / encoder_rel, fail)

    # 1. The adapter: a local folder, else the hub (the weight file and, unless another is named, its encoder)
    local = Path(spec.model).expanduser()
    revision = None
    if local.is_dir():
        folder, source = local.resolve(), "local_folder"
        check(folder)
    elif local.exists():
        raise fail(f"{spec.model} is a file; name the folder that holds {weight_rel}")
    elif not _HUB_ID.match(spec.model) or spec.model.startswith((".", "/", "~")):
        raise fail(f"no folder {spec.model} exists, and it is not a hub id (namespace/name)")
    else:
        patterns = [weight_rel] + ([] if spec.image_encoder else [f"{encoder_rel}/*.json", f"{encoder_rel}/*.safetensors"])
        folder, revision = _snapshot(spec.model, "ip_adapter", "", check, allow_patterns=patterns, ignore_patterns=[],
                                     unavailable=fail)
        source = "hub_cache"

    # 2. The image encoder: the adapter's own, or the one style.ip_adapter.image_encoder names
    encoder_revision = None
    if not spec.image_encoder:
        encoder = folder / encoder_rel
    else:
        enc_fail = lambda reason: _ip_unavailable(spec, reason, encoder=True)  # noqa: E731
        enc_local = Path(spec.image_encoder).expanduser()
        if enc_local.is_dir():
            encoder = enc_local.resolve()
            _check_image_encoder(encoder, enc_fail)
        elif not _HUB_ID.match(spec.image_encoder) or spec.image_encoder.startswith((".", "/", "~")):
            raise enc_fail(f"no folder {spec.image_encoder} exists, and it is not a hub id (namespace/name)")
        else:
            encoder, encoder_revision = _snapshot(spec.image_encoder, "image_encoder", "",
                                                  lambda p: _check_image_encoder(p, enc_fail),
                                                  allow_patterns=["*.json", "*.safetensors"], ignore_patterns=[],
                                                  unavailable=enc_fail)
    hashes = {}
    if source == "local_folder":
        hashes[weight_rel] = _hash_cached(folder / weight_rel)
    encoder_is_local = (source == "local_folder") if not spec.image_encoder else encoder_revision is None
    if encoder_is_local:
        hashes.update({f"image_encoder/{rel}": digest for rel, digest in _safetensors_hashes(encoder).items()})
    return ResolvedIpAdapter(
        model_id=spec.model, folder=folder, subfolder=spec.subfolder, weight_name=spec.weight_name,
        weight_path=folder / weight_rel, image_encoder=encoder, image_encoder_id=spec.image_encoder, source=source,
        revision=revision, image_encoder_revision=encoder_revision, file_sha256=hashes,
    )
