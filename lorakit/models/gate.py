"""Gate 4's findings about a plan's model files, at plan time (`resolve_models`) and before a launch.

Each model argument of the family is checked on its own (not set, not found, a Hub id without the
file a single-file role needs, offline and not cached, a gated repository, a local file that is
truncated, a LoRA, or recognizably another role's file), and the downloads together against the
free disk. docs/families.md "Models per family" states the rules.
"""

from __future__ import annotations

from pathlib import Path

from lorakit.config.family import Family, family_named
from lorakit.config.values import Values
from lorakit.findings import Finding, finding
from lorakit.machine.probe import GIB, free_disk_gib
from lorakit.models.content import KIND_LABEL, wrong_kind
from lorakit.models.hub import INSTALL, hub_installed
from lorakit.models.hubcache import token_found
from lorakit.models.ref import SYNTAX, WEIGHT_SUFFIXES
from lorakit.models.roles import GATED, ROLE_LABEL, file_for, known_file, single_file_only, suggestion
from lorakit.models.source import (
    GATE,
    ModelSection,
    ModelSource,
    fetch_fix,
    human_bytes,
    missing_parts,
    resolve_sources,
)
from lorakit.util.safetensors_file import read_header

# Findings that only warn at plan time (the plan may be for another machine) but stop a launch.
LAUNCH_BLOCKERS = {"model/not-found", "model/offline-not-cached", "model/hub-package-missing"}
DISK_FIX = "free some space, or point HF_HOME (or HF_HUB_CACHE) at a larger disk"


def resolve_models(values: Values, base_dir: Path | None = None, plan_dir: Path | None = None,
                   ) -> tuple[ModelSection, list[Finding]]:
    section = resolve_sources(values, base_dir)
    return section, model_findings(section, plan_dir)


def model_findings(section: ModelSection, plan_dir: Path | None = None) -> list[Finding]:
    family = family_named(section.family)
    found: list[Finding] = []
    for source in section.sources():
        found += _source_findings(source, section, family, plan_dir)
    return found + _gated_findings(section) + _disk_findings(section)


def launch_findings(section: ModelSection, plan_dir: Path | None = None) -> list[Finding]:
    """The same findings as at plan time, with the ones that only warned then made errors: a run needs its model."""
    return [f.model_copy(update={"level": "error"}) if f.code in LAUNCH_BLOCKERS else f
            for f in model_findings(section, plan_dir)]


def _source_findings(source: ModelSource, section: ModelSection, family: Family, plan_dir: Path | None) -> list[Finding]:
    if source.status == "missing" and not source.value.strip():
        return [finding("model/not-set", "error", GATE,
                        f"{source.key} is not set; sd-scripts needs the {family.title} {source.label}.",
                        f"--set {source.key}={suggestion(family, source.role)}, or another {family.title} {source.label}",
                        key=source.key)]
    single = single_file_only(family.name, source.role)
    if single and (source.unnamed_file or source.kind == "folder"):
        return [_not_one_file(source, family)]
    if source.status == "missing":
        return [finding("model/not-found", "warning", GATE,
                        f"{source.key} '{source.value}' is neither on this machine nor a Hub reference; launch stops here.",
                        f"give {SYNTAX}", key=source.key)]
    found = _known_file_findings(source, family)
    if source.status == "local":
        return found + _local_findings(source, family)
    if source.status == "cached":
        return found + _content_findings(source, family, complete=False)
    if section.offline:
        if source.role == "tokenizer":
            message = (f"HF_HUB_OFFLINE is set and sd-scripts' tokenizer {source.repo_id} is not in the Hub cache "
                       f"({section.hub_cache}); sd-scripts stops at start.")
        else:
            message = (f"HF_HUB_OFFLINE is set and the {source.label} {source.reference} is not in the Hub cache "
                       f"({section.hub_cache}); launch cannot download it.")
        return found + [finding("model/offline-not-cached", "warning", GATE, message, fetch_fix(source, plan_dir),
                                key=source.key)]
    if source.role == "tokenizer":
        return found  # sd-scripts downloads them itself when online
    if not hub_installed():
        found.append(finding("model/hub-package-missing", "warning", GATE,
                             f"the {source.label} {source.reference} must be downloaded, which needs huggingface_hub.",
                             INSTALL, key=source.key))
    return found


def _not_one_file(source: ModelSource, family: Family) -> Finding:
    """A Hub id without ':FILENAME', or a folder, for a role sd-scripts loads from one file (FLUX, Chroma)."""
    why = f"sd-scripts loads the {family.title} {source.label} from one .safetensors file, never a Diffusers folder"
    if source.kind == "hub":
        name = file_for(source.repo_id, source.role)
        fix = (f"name the file: --set {source.key}={source.repo_id}:{name}" if name
               else f"name the file: --set {source.key}={source.repo_id}:FILENAME.safetensors (see {source.repo_id}'s files on the Hub)")
        return finding("model/not-a-single-file", "error", GATE,
                       f"{source.key} '{source.value}' names a Hub repository but no file; {why}.", fix, key=source.key)
    return finding("model/not-a-single-file", "error", GATE, f"{source.key} '{source.value}' is a folder; {why}.",
                   f"give the .safetensors file itself, e.g. --set {source.key}={suggestion(family, source.role)}",
                   key=source.key, paths=[source.path or source.value])


def _known_file_findings(source: ModelSource, family: Family) -> list[Finding]:
    """A Hub file lorakit knows, named for another role or as another family's base model (no download needed)."""
    known = known_file(source.repo_id, source.filename)
    if known is None or source.role == "tokenizer":
        return []
    if known.role != source.role:
        what = (f"the {family_named(known.family).title} base model" if known.family
                else f"the {ROLE_LABEL[known.role]} file of {source.repo_id}")
        return [_wrong_file(source, family, f"{source.filename} is {what}")]
    if known.family and known.family != family.name:
        return [_wrong_file(source, family, f"{source.filename} is the base model of {family_named(known.family).title}")]
    return []


def _wrong_file(source: ModelSource, family: Family, what: str) -> Finding:
    if source.role == "base":
        fix = (f"give a {family.title} base model (--set {source.key}={suggestion(family, 'base')}), or plan with the "
               f"base preset of the model's family (`lorakit presets` lists them)")
    else:
        fix = f"give the {source.label}: --set {source.key}={suggestion(family, source.role)}"
    return finding("model/wrong-file", "error", GATE,
                   f"{source.key} '{source.value}': {what}, not the {family.title} {source.label}.",
                   fix, key=source.key, paths=[source.path] if source.path else [])


def _local_findings(source: ModelSource, family: Family) -> list[Finding]:
    path = Path(source.path or "")
    if source.role == "tokenizer":
        return []
    if source.kind == "folder":
        missing = missing_parts(path, source.layout)
        if not missing:
            return []
        return [finding("model/incomplete-folder", "error", GATE,
                        f"{source.key} '{source.value}' is a folder but not a loadable diffusers "
                        f"{'pipeline' if source.role == 'base' else 'VAE'}: it lacks {', '.join(missing)}.",
                        f"give {SYNTAX}", key=source.key, paths=[str(path)])]
    suffix = path.suffix.lower()
    single = single_file_only(family.name, source.role)
    if suffix not in WEIGHT_SUFFIXES or single and suffix != ".safetensors":
        what = ("not a .safetensors file" if single
                else "neither .safetensors nor a torch checkpoint (.ckpt, .pt, .pth, .bin)")
        return [finding("model/unknown-format", "error", GATE,
                        f"{source.key} '{source.value}' is {what}; sd-scripts cannot load it as the {family.title} {source.label}.",
                        "give the model's .safetensors file", key=source.key, paths=[str(path)])]
    if suffix != ".safetensors":
        return []
    return _content_findings(source, family, complete=True)


def _content_findings(source: ModelSource, family: Family, *, complete: bool) -> list[Finding]:
    """What the file's header says: truncated (`complete`: reported; a Hub download is whole), a LoRA, another role."""
    path = Path(source.path or "")
    if source.layout != "checkpoint" or path.suffix.lower() != ".safetensors":
        return []
    try:
        header = read_header(path)
    except (OSError, ValueError) as exc:
        if not complete:
            return []
        return [finding("model/unreadable", "error", GATE,
                        f"{source.key} '{source.value}' is not a complete safetensors file: {exc}.",
                        "download the file again", key=source.key, paths=[str(path)])]
    if header.is_lora:
        return [finding("model/lora-as-base", "error", GATE,
                        f"{source.key} '{source.value}' is a LoRA, not a {source.label}.",
                        f"give the {family.title} {source.label} the LoRA is trained on "
                        "(a LoRA to start from goes in network_weights)", key=source.key, paths=[str(path)])]
    kind = wrong_kind(family.name, source.role, header.tensors)
    if kind is None:
        return []
    example = next(iter(header.tensors))
    return [_wrong_file(source, family, f"it holds {KIND_LABEL[kind]} (tensors such as {example})")]


def _gated_findings(section: ModelSection) -> list[Finding]:
    """One finding per gated repository a download needs, online (offline, the offline finding says more)."""
    if section.offline:
        return []
    waiting: dict[str, list[ModelSource]] = {}
    for source in section.files():
        if source.status == "download" and source.repo_id in GATED and not source.unnamed_file:
            waiting.setdefault(source.repo_id or "", []).append(source)
    found = []
    for repo, sources in waiting.items():
        gated = GATED[repo]
        files = " and ".join(s.filename or s.reference for s in sources)
        token = token_found()
        who = ("a Hub token was found: its account must have accepted it" if token
               else "no Hub token was found (HF_TOKEN, or `hf auth login`)")
        found.append(finding("model/gated", "info" if token else "warning", GATE,
                             f"{repo} is gated: the Hub serves {files} only to an account that has accepted "
                             f"{gated.license} on {gated.page}; {who}.",
                             f"accept the licence on {gated.page} (logged in), then set HF_TOKEN to a read token "
                             "of that account (https://huggingface.co/settings/tokens)",
                             key=sources[0].key))
    return found


def _disk_findings(section: ModelSection) -> list[Finding]:
    """The downloads together against the free disk of the Hub cache (FLUX's four files are about 34 GB)."""
    if section.offline:
        return []
    downloads = [s for s in section.files() if s.status == "download" and s.bytes]
    free = _free_bytes(Path(section.hub_cache))
    total = sum(s.bytes or 0 for s in downloads)
    if not downloads or free is None or free >= total:
        return []
    exact = all(s.bytes_exact for s in downloads)
    labels = " and ".join(s.label for s in downloads)
    verb = "needs" if len(downloads) == 1 else "need"
    return [finding("model/disk-space", "warning", GATE,
                    f"the {labels} {verb} {human_bytes(total, exact)} in {section.hub_cache}, "
                    f"which has {human_bytes(free)} free.", DISK_FIX,
                    key=downloads[0].key if len(downloads) == 1 else None)]


def _free_bytes(path: Path) -> int | None:
    try:
        return int(free_disk_gib(path) * GIB)
    except OSError:
        return None
