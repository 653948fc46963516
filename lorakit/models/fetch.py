"""Make a plan's models local before training: the seam launch calls, and `lorakit fetch-model PLAN`.

`ensure_local(relocate(plan.model), plan_dir)` looks again (the cache may have changed since the plan
was made; `relocate` finds the Hub cache once and every later step reuses it), stops on
what would stop the run (`gate_findings`, Gate 4: a missing local model, offline and not cached,
huggingface_hub missing), downloads what is missing with huggingface_hub's own progress bars, points lorakit's
links (lorakit.models.links) and returns what sd-scripts is given (`trainer_args`) and what run.json
records (`LocalModels`, with each file's SHA-256).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit.errors import ConfigError, UserError
from lorakit.findings import Finding
from lorakit.models.filehash import sha256_file, sha256_folder
from lorakit.models.gate import launch_findings
from lorakit.models.hub import hub_installed
from lorakit.models.hubcache import hub_cache_dir, hub_offline, repo_dir, snapshot
from lorakit.models.ref import DEFAULT_REVISION
from lorakit.models.roles import ROLE_OF_KEY
from lorakit.models.source import (
    INCLUDE,
    ModelSection,
    ModelSource,
    locate,
    make_links,
    matching_files,
    missing_parts,
    status_line,
)


class LocalModel(BaseModel):
    """One model input as the run uses it (run.json records these)."""

    model_config = ConfigDict(extra="forbid")

    role: str
    key: str | None
    value: str  # as the plan names it
    path: str  # what sd-scripts is given
    resolved: str  # the real file or folder behind it
    sha256: str  # of the file; for a folder, of its sorted `path  sha256` lines
    id: str | None = None  # the Hub repo id
    revision: str | None = None
    commit: str | None = None
    filename: str | None = None
    bytes: int
    downloaded: bool = False


class LocalModels(BaseModel):
    """run.json `models`: every model file of the run (`components`: FLUX's ae, clip_l, t5xxl; older runs lack it)."""

    model_config = ConfigDict(extra="forbid")

    base: LocalModel
    vae: LocalModel | None = None
    components: list[LocalModel] = []
    tokenizers: list[LocalModel] = []

    def files(self) -> list[LocalModel]:
        return [self.base, *([self.vae] if self.vae else []), *self.components]

    def trainer_args(self, planned: ModelSection) -> list[str]:
        """sd-scripts arguments for the model paths that differ from the ones config.toml names (the command
        line wins over the file); none when the plan's paths hold, as they do for lorakit's own links."""
        args: list[str] = []
        for local in self.files():
            source = planned.for_key(local.key) if local.key else None
            if local.key and (source is None or local.path != (source.trainer_path or source.value)):
                args += [f"--{local.key}", local.path]
        return args

    def all(self) -> list[LocalModel]:
        return [*self.files(), *self.tokenizers]


def relocate(section: ModelSection, cache: Path | None = None) -> ModelSection:
    """The plan's model section as this machine has it now (`cache`: the Hub cache, when already located)."""
    cache = cache or hub_cache_dir()
    return section.model_copy(update=dict(
        hub_cache=str(cache), offline=hub_offline(), base=locate(section.base, cache),
        vae=locate(section.vae, cache) if section.vae else None,
        components=[locate(c, cache) for c in section.components],
        tokenizers=[locate(t, cache) for t in section.tokenizers],
    ))


def gate_findings(here: ModelSection, plan_dir: Path) -> list[Finding]:
    """Gate 4 for the plan's models as this machine has them now (`relocate`); errors stop a launch
    (ensure_local raises them)."""
    return launch_findings(here, plan_dir)


def describe_base(here: ModelSection) -> str:
    """The base model as this machine has it now, for people: `REFERENCE: cached at PATH (size)`, ..."""
    return f"{here.base.reference}: {status_line(here.base, here.offline)}"


def describe_files(here: ModelSection) -> list[str]:
    """Each model file as this machine has it now: `LABEL: REFERENCE: cached at PATH (size)`, ..."""
    return [f"{s.label}: {s.reference}: {status_line(s, here.offline)}" for s in here.files()]


def ensure_local(here: ModelSection, plan_dir: Path) -> LocalModels:
    """Every model input of the plan on this machine (`here`, from `relocate`), downloading what is missing."""
    section, downloaded = _fetch(here, plan_dir, here.sources())
    return LocalModels(
        base=_local_model(section.base, downloaded),
        vae=_local_model(section.vae, downloaded) if section.vae else None,
        components=[_local_model(c, downloaded) for c in section.components],
        tokenizers=[_local_model(t, downloaded) for t in section.tokenizers if t.status in ("local", "cached")],
    )


def ensure_one(here: ModelSection, plan_dir: Path, wanted: str) -> list[LocalModel]:
    """One model of the plan on this machine (`fetch-model --only`): a model argument or role name
    (`t5xxl`, `pretrained_model_name_or_path`, `base`), or `tokenizers`; the rest is left as it is."""
    role = ROLE_OF_KEY.get(wanted, wanted)
    chosen = here.tokenizers if role in ("tokenizer", "tokenizers") else [s for s in here.files() if s.role == role]
    if not chosen:
        have = ", ".join([*(s.key or s.role for s in here.files()), "tokenizers"])
        raise UserError(f"the plan has no model '{wanted}'.", fix=f"--only one of: {have}")
    section, downloaded = _fetch(here, plan_dir, chosen)
    keys = {(s.role, s.key, s.value) for s in chosen}
    return [_local_model(s, downloaded) for s in section.sources()
            if (s.role, s.key, s.value) in keys and s.status in ("local", "cached")]


def _fetch(here: ModelSection, plan_dir: Path, chosen: list[ModelSource]) -> tuple[ModelSection, set[str]]:
    """Download what `chosen` lacks, after Gate 4 found nothing wrong with them; the section located again."""
    keys = {s.key for s in chosen}
    errors = [f for f in gate_findings(here, plan_dir) if f.level == "error" and f.key in keys]
    if errors:
        raise ConfigError([f"{f.message} Fix: {f.fix}" if f.fix else f.message for f in errors],
                          context="the plan's models (Gate 4)")
    cache = Path(here.hub_cache)
    downloaded: set[str] = set()
    for source in chosen:
        # Online, sd-scripts fetches missing tokenizers itself; lorakit does it first when it can.
        if source.status != "download" or source.role == "tokenizer" and not hub_installed():
            continue
        _download(source, cache)
        if locate(source, cache).status != "cached":
            raise _not_a_diffusers_repo(source, cache)
        downloaded.add(source.reference)
    section = relocate(here, cache)
    make_links(section)
    return section, downloaded


def _download(source: ModelSource, cache: Path) -> None:
    from lorakit.models.hub import hub_failure, require_hub

    hub = require_hub()
    action = f"downloading {source.reference}"
    try:
        if source.layout == "checkpoint":
            hub.hf_hub_download(source.repo_id, source.filename, revision=source.revision, cache_dir=str(cache))
        else:
            hub.snapshot_download(source.repo_id, revision=source.revision, cache_dir=str(cache),
                                  allow_patterns=INCLUDE[source.layout])
    except Exception as exc:  # huggingface_hub's errors, translated; anything else is a bug and propagates
        failure = hub_failure(exc, repo_id=source.repo_id or "", action=action, download=True)
        if failure is None:
            raise
        raise failure from None


def _not_a_diffusers_repo(source: ModelSource, cache: Path) -> UserError:
    """A repo downloaded as a diffusers folder that is not one (a single-file repo named without ':FILENAME')."""
    snap = snapshot(source.repo_id or "", source.revision or DEFAULT_REVISION, cache)
    lacking = missing_parts(snap.path if snap else repo_dir(source.repo_id or "", cache), source.layout)
    return UserError(f"{source.repo_id} is not a diffusers repo lorakit can load as a {source.label}: it lacks "
                     f"{', '.join(lacking)}.", fix=f"name the checkpoint file: --set {source.key}={source.repo_id}:FILENAME")


def _local_model(source: ModelSource, downloaded: set[str]) -> LocalModel:
    path = Path(source.path or "")
    resolved = Path(os.path.realpath(path))
    if path.is_dir():
        digest = sha256_folder(path, matching_files(path, INCLUDE[source.layout]))
    else:
        digest = sha256_file(path)
    return LocalModel(
        role=source.role, key=source.key, value=source.value, path=source.trainer_path or str(path),
        resolved=str(resolved), sha256=digest, id=source.repo_id, revision=source.revision, commit=source.commit,
        filename=source.filename, bytes=source.bytes or 0, downloaded=source.reference in downloaded,
    )
