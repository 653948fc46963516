"""Where a plan's model files and sd-scripts' tokenizers come from, decided at plan time without network.

Every model argument of the plan's family (`Family.model_keys`: `pretrained_model_name_or_path` and `vae`
for SDXL and SD 1.5; FLUX's `ae`, `clip_l` and `t5xxl` besides; lorakit.models.roles) accepts a local
file, a local diffusers folder, or `REPO_ID[@REVISION][:FILENAME]` (lorakit.models.ref). For a Hub id
without FILENAME lorakit resolves:

* a repo it knows to hold a single-file checkpoint → that file (KNOWN_REPOS:
  `stabilityai/stable-diffusion-xl-base-1.0` → `sd_xl_base_1.0.safetensors`,
  `stable-diffusion-v1-5/stable-diffusion-v1-5` → `v1-5-pruned-emaonly.safetensors`). sd-scripts loads a
  single file directly and records its hash in the LoRA's metadata;
* for FLUX and Chroma, nothing: sd-scripts loads each of their roles from one file, so the file must be
  named (Gate 4 refuses the id, and a local folder, with the fix);
* any other repo → its diffusers folder: the files in INCLUDE (configs, tokenizer files and the
  components' non-variant `.safetensors` weights; no `.bin`, no fp16 variants, no single-file copies).
  For a VAE that is `config.json` + `diffusion_pytorch_model.safetensors`, at the top or under `vae/`,
  which is where sd-scripts' `load_vae` looks.

The cache is read from disk (lorakit.models.hubcache); sizes come from the cache, or from what lorakit
knows offline (roles.KNOWN_FILES), never from the Hub. The summary says "cached at PATH (size)" or "will be
downloaded at launch (size if known)"; plan.json keeps the reference (id, revision, file) in `model`.
Gate 4's findings about them are lorakit.models.gate's.
"""

from __future__ import annotations

import fnmatch
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from lorakit.config.family import FAMILIES, family_named
from lorakit.config.values import ResolvedValue, Values
from lorakit.models.hubcache import hub_cache_dir, hub_offline, size_of, snapshot
from lorakit.models.links import hub_link, local_link, needs_local_link
from lorakit.models.ref import DEFAULT_REVISION, WEIGHT_SUFFIXES, Kind, ModelRef, parse_model_ref
from lorakit.models.roles import (
    KNOWN_REPOS,
    ROLE_LABEL,
    ROLE_OF_KEY,
    KnownRepo,
    Role,
    known_file,
    required,
    single_file_only,
)
from lorakit.util.reading import read_json

__all__ = ["KNOWN_REPOS", "ROLE_LABEL", "KnownRepo", "Role"]  # re-exported: their home is lorakit.models.roles

BASE_KEY = "pretrained_model_name_or_path"
VAE_KEY = "vae"
TOKENIZER_CACHE_KEY = "tokenizer_cache_dir"
GATE = 4
# sd-scripts' SDXL script fetches these at start (library/strategy_sdxl.py) unless tokenizer_cache_dir holds them;
# each family's are Family.tokenizers.
TOKENIZER_REPOS = FAMILIES["sdxl"].tokenizers

Layout = Literal["checkpoint", "diffusers", "diffusers-vae", "tokenizer"]
_WEIGHTS = ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model-*-of-*.safetensors",
            "model.safetensors", "model-*-of-*.safetensors"]
INCLUDE: dict[str, list[str]] = {
    "diffusers": ["model_index.json", "*/*.json", "*/*.txt", *(f"*/{w}" for w in _WEIGHTS)],
    "diffusers-vae": ["config.json", "diffusion_pytorch_model.safetensors",
                      "vae/config.json", "vae/diffusion_pytorch_model.safetensors"],
    # CLIP's BPE files, or T5's SentencePiece model (sd-scripts' FLUX tokenizer is google/t5-v1_1-xxl's)
    "tokenizer": ["vocab.json", "merges.txt", "spiece.model", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "added_tokens.json"],
}
# Components sd-scripts loads weights for; their folders must hold a weights file.
_WEIGHTED = ("unet", "vae", "text_encoder", "text_encoder_2")


class ModelSource(BaseModel):
    """One model input of the run: what was asked for, what lorakit resolved it to, and where it is."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    key: str | None = None  # the value it comes from (None for the tokenizers)
    value: str
    kind: Kind
    repo_id: str | None = None
    revision: str | None = None  # the Hub revision asked for ("main" unless given)
    filename: str | None = None  # the single file taken from the repo
    layout: Layout
    rule: str  # why this file or folder
    status: Literal["local", "cached", "download", "missing"] = "missing"
    path: str | None = None  # the local file or folder, or the cached file or snapshot folder
    commit: str | None = None  # the cached snapshot's commit
    bytes: int | None = None
    bytes_exact: bool = True
    trainer_path: str | None = None  # what sd-scripts is given

    @property
    def label(self) -> str:
        return ROLE_LABEL[self.role]

    @property
    def reference(self) -> str:
        """The Hub reference in full (`REPO@REVISION[:FILE]`), or the local value."""
        if self.kind != "hub":
            return self.value
        return f"{self.repo_id}@{self.revision}" + (f":{self.filename}" if self.filename else "")

    @property
    def include(self) -> list[str]:
        return [] if self.layout == "checkpoint" else INCLUDE[self.layout]

    @property
    def unnamed_file(self) -> bool:
        """A Hub id for a role that must be one file, with no file named: nothing to look up or download."""
        return self.kind == "hub" and self.layout == "checkpoint" and not self.filename


class ModelSection(BaseModel):
    """plan.json `model`: the model inputs as resolved when the plan was made.

    `components` holds the family's model files after the base model and the VAE (FLUX: ae, clip_l,
    t5xxl), in `Family.model_keys` order; plans made before families have only base and vae, and are SDXL."""

    model_config = ConfigDict(extra="forbid")

    hub_cache: str
    offline: bool
    family: str = "sdxl"
    base: ModelSource
    vae: ModelSource | None = None
    components: list[ModelSource] = []
    tokenizers: list[ModelSource] = []

    def files(self) -> list[ModelSource]:
        """The model files the plan names, one per model argument set (no tokenizers)."""
        return [self.base, *([self.vae] if self.vae else []), *self.components]

    def sources(self) -> list[ModelSource]:
        return [*self.files(), *self.tokenizers]

    def for_key(self, key: str) -> ModelSource | None:
        return next((s for s in self.files() if s.key == key), None)


# --- resolving ------------------------------------------------------------------------------------

def resolve_sources(values: Values, base_dir: Path | None = None) -> ModelSection:
    """Every model argument of the plan's family, and its script's tokenizers, located in the Hub cache."""
    family = family_named(values.family)
    cache = hub_cache_dir()
    files = [locate(describe(ROLE_OF_KEY[key], key, _text(values[key]), base_dir, family.name), cache)
             for key in family.model_keys if values[key] is not None or required(key)]
    tokenizers = [locate(tokenizer_source(repo, values[TOKENIZER_CACHE_KEY], base_dir, family.title), cache)
                  for repo in family.tokenizers]
    base, rest = files[0], files[1:]
    vae = next((s for s in rest if s.role == "vae"), None)
    return ModelSection(hub_cache=str(cache), offline=hub_offline(), family=family.name, base=base, vae=vae,
                        components=[s for s in rest if s.role != "vae"], tokenizers=tokenizers)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def describe(role: Role, key: str, value: str, base_dir: Path | None = None, family: str = "sdxl") -> ModelSource:
    """What the value asks for, and which file or folder lorakit takes for it (not yet located)."""
    if not value.strip():
        return ModelSource(role=role, key=key, value=value, kind="missing", layout="checkpoint", rule="not set")
    ref = parse_model_ref(value, base_dir)
    single = single_file_only(family, role)
    folder: Layout = "checkpoint" if single else "diffusers" if role == "base" else "diffusers-vae"
    fields: dict[str, Any] = dict(role=role, key=key, value=value, kind=ref.kind, path=str(ref.path) if ref.path else None)
    if ref.kind == "file":
        return ModelSource(**fields, layout="checkpoint", rule="a local file")
    if ref.kind == "folder":
        return ModelSource(**fields, layout=folder, rule="a local folder" if single else "a local diffusers folder")
    if ref.kind == "missing":
        layout = "checkpoint" if value.lower().endswith(WEIGHT_SUFFIXES) else folder
        return ModelSource(**fields, layout=layout, rule="a local path")
    return _hub_source(ref, role, key, folder, single)


def _hub_source(ref: ModelRef, role: Role, key: str, folder: Layout, single: bool) -> ModelSource:
    fields: dict[str, Any] = dict(role=role, key=key, value=ref.value, kind="hub", repo_id=ref.repo_id,
                                  revision=ref.hub_revision)
    if ref.filename:
        return ModelSource(**fields, filename=ref.filename, layout="checkpoint", rule="the file named after ':'")
    if single:
        return ModelSource(**fields, layout="checkpoint",
                           rule="sd-scripts loads this role from one .safetensors file: the Hub id must name it after ':'")
    known = KNOWN_REPOS.get(ref.repo_id or "") if role == "base" else None
    if known:
        return ModelSource(**fields, filename=known.checkpoint, layout="checkpoint", rule=known.why)
    return ModelSource(**fields, layout=folder,
                       rule="a Hub id without ':FILENAME' is read as a diffusers repo: its configs and non-variant .safetensors weights")


def tokenizer_source(repo_id: str, tokenizer_cache_dir: str | None, base_dir: Path | None = None,
                     family_title: str = "SDXL") -> ModelSource:
    if tokenizer_cache_dir:
        saved = parse_model_ref(str(Path(tokenizer_cache_dir) / repo_id.replace("/", "_")), base_dir)
        if saved.kind == "folder":
            return ModelSource(role="tokenizer", value=repo_id, kind="folder", layout="tokenizer",
                               path=str(saved.path), rule="saved in tokenizer_cache_dir")
    return ModelSource(role="tokenizer", value=repo_id, kind="hub", repo_id=repo_id, revision=DEFAULT_REVISION,
                       layout="tokenizer", rule=f"sd-scripts loads {family_title}'s tokenizers from the Hub")


def locate(source: ModelSource, cache: Path | None = None) -> ModelSource:
    """The source with where it is now: local, cached, to download, or missing; its size; sd-scripts' path."""
    if source.kind in ("file", "folder", "missing"):
        return _locate_local(source)
    if source.unnamed_file:
        return source.model_copy(update=dict(status="download", path=None, commit=None, bytes=None, trainer_path=None))
    found = _cached(source, cache or hub_cache_dir())
    if found is None:
        known = known_file(source.repo_id, source.filename)
        approx = known.approx_bytes if known else None
        return source.model_copy(update=dict(status="download", path=None, commit=None, bytes=approx,
                                             bytes_exact=approx is None, trainer_path=_trainer_link(source)))
    commit, path, files = found
    return source.model_copy(update=dict(status="cached", path=str(path), commit=commit, bytes=size_of(files),
                                         bytes_exact=True, trainer_path=_trainer_link(source)))


def _locate_local(source: ModelSource) -> ModelSource:
    path = Path(source.path or "")
    if source.path and path.is_file():
        trainer = local_link(path) if source.role == "base" and needs_local_link(path) else path
        return source.model_copy(update=dict(kind="file", status="local", bytes=path.stat().st_size, trainer_path=str(trainer)))
    if source.path and path.is_dir():
        return source.model_copy(update=dict(kind="folder", status="local", bytes=size_of(_files(path)), trainer_path=str(path)))
    return source.model_copy(update=dict(kind="missing", status="missing", bytes=None, trainer_path=None))


def _trainer_link(source: ModelSource) -> str | None:
    if source.role == "tokenizer":
        return None  # sd-scripts finds them in the Hub cache itself
    name = source.filename or (source.repo_id or "").split("/")[-1]
    return str(hub_link(source.repo_id or "", source.revision or DEFAULT_REVISION, name))


def _cached(source: ModelSource, cache: Path) -> tuple[str, Path, list[Path]] | None:
    """(commit, file or snapshot folder, its files) when the cache holds everything the source needs."""
    snap = snapshot(source.repo_id or "", source.revision or DEFAULT_REVISION, cache)
    if snap is None:
        return None
    if source.layout == "checkpoint":
        file = snap.file(source.filename or "")
        return (snap.commit, file, [file]) if file else None
    if missing_parts(snap.path, source.layout):
        return None
    return snap.commit, snap.path, matching_files(snap.path, source.include)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def matching_files(root: Path, patterns: list[str]) -> list[Path]:
    """Files under root whose relative path matches a pattern (fnmatch, as huggingface_hub's allow_patterns)."""
    return [p for p in _files(root) if any(fnmatch.fnmatch(p.relative_to(root).as_posix(), pat) for pat in patterns)]


def missing_parts(root: Path, layout: Layout) -> list[str]:
    """What a folder lacks to be loaded as `layout` by sd-scripts (empty when complete)."""
    if layout == "tokenizer":
        if any((root / name).is_file() for name in ("spiece.model", "tokenizer.json")):
            return []  # T5's SentencePiece model, or a fast tokenizer's single file
        return [name for name in ("vocab.json", "merges.txt") if not (root / name).is_file()]
    if layout == "diffusers-vae":
        pairs = [root, root / "vae"]
        if any((d / "config.json").is_file() and (d / "diffusion_pytorch_model.safetensors").is_file() for d in pairs):
            return []
        return ["config.json + diffusion_pytorch_model.safetensors (at the top or in vae/)"]
    index = root / "model_index.json"
    try:
        components = read_json(index)
    except (OSError, ValueError):
        return ["model_index.json"]
    missing = []
    for name, spec in components.items():
        if not (isinstance(spec, list) and len(spec) == 2 and all(spec)):
            continue  # "_class_name", "_diffusers_version", and components the repo leaves out ([null, null])
        folder = root / name
        if not folder.is_dir():
            missing.append(f"{name}/")
        elif name in _WEIGHTED and not matching_files(folder, ["*.safetensors", "*.bin"]):
            missing.append(f"{name}/ weights")
    return missing


def fetch_fix(source: ModelSource, plan_dir: Path | None = None) -> str:
    """The commands that put the model in the cache, for a machine that can reach the Hub."""
    plan = shlex.quote(str(plan_dir)) if plan_dir else "PLAN"
    fix = f"where the Hub is reachable, run `HF_HUB_OFFLINE=0 lorakit fetch-model {plan}`"
    if source.layout == "checkpoint" and source.kind == "hub":
        fix += f" (or `HF_HUB_OFFLINE=0 {hf_download_command(source)}`)"
    return fix


def hf_download_command(source: ModelSource) -> str:
    args = ["hf", "download", source.repo_id or "", source.filename or ""]
    if source.revision and source.revision != DEFAULT_REVISION:
        args += ["--revision", source.revision]
    return shlex.join(args)


# --- for people and for sd-scripts ----------------------------------------------------------------

def human_bytes(n: int, exact: bool = True) -> str:
    size = (f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6
            else f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{n} bytes")
    return size if exact else f"about {size}"


def status_line(source: ModelSource, offline: bool = False) -> str:
    """`cached at PATH (size)`, `will be downloaded at launch (size if known)`, … (`offline`: HF_HUB_OFFLINE is set)"""
    size = human_bytes(source.bytes, source.bytes_exact) if source.bytes is not None else None
    if source.unnamed_file:
        return "no file named (this role needs REPO_ID:FILENAME)"
    if source.status == "cached":
        return f"cached at {source.path} ({size})"
    if source.status == "download" and offline:
        return "not in the Hub cache, and HF_HUB_OFFLINE is set" + (f" ({size})" if size else "")
    if source.status == "download":
        return "will be downloaded at launch" + (f" ({size})" if size else " (size unknown until then)")
    if source.status == "local":
        return f"local {source.kind} ({size})"
    return "not found on this machine"


def trainer_values(values: Values, section: ModelSection) -> Values:
    """The values with each model key replaced by the path sd-scripts can load; the source stays the user's."""
    items = dict(values.items())
    for source in section.files():
        if source.key is None or not source.trainer_path or source.trainer_path == source.value:
            continue
        item = items[source.key]
        note = (f"{item.note} · " if item.note else "") + f"{source.reference}: {status_line(source, section.offline)}"
        items[source.key] = ResolvedValue(value=source.trainer_path, source=item.source, note=note)
    return Values(items)


def make_links(section: ModelSection) -> None:
    """Point lorakit's links at the models this machine has (see lorakit.models.links)."""
    from lorakit.models.links import point

    for source in section.sources():
        if source.status in ("cached", "local") and source.trainer_path and source.path and source.trainer_path != source.path:
            point(Path(source.trainer_path), Path(source.path))
