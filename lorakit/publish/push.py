"""`lorakit push PLAN --repo USER/NAME`: publish the trained LoRA, its samples and a model card on the Hub.

One commit holds everything: the LoRA at the top of the repo, `README.md`, and the latest sample
images under `samples/`. The repo is created when missing (private with --private). The token is
HF_TOKEN or the stored Hub login; it goes to huggingface_hub only, never to output, logs or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import UserError
from lorakit.models.ref import is_repo_id
from lorakit.plan.build import load_plan
from lorakit.publish.artifacts import find_lora, latest_samples
from lorakit.publish.modelcard import CardFacts, card_facts, render_card, sample_url

CARD = "README.md"


@dataclass
class PushRequest:
    plan_dir: Path
    repo_id: str
    private: bool = False
    file: Path | None = None  # push this LoRA instead of the run's final one
    license_id: str | None = None
    base_model: str | None = None  # the base's Hub id when training used a local file
    dry_run: bool = False


@dataclass
class Upload:
    path_in_repo: str
    local: Path | None  # None for the card, which is uploaded from memory
    bytes: int


@dataclass
class PushResult:
    repo_id: str
    card: str
    uploads: list[Upload]
    notes: list[str] = field(default_factory=list)
    url: str | None = None  # None for a dry run
    commit_url: str | None = None


def prepare_push(request: PushRequest) -> PushResult:
    """Everything to upload, checked, without touching the network."""
    for name, repo in (("--repo", request.repo_id), ("--base-model", request.base_model)):
        if repo is not None and not is_repo_id(repo):
            raise UserError(f"{name} {repo!r} is not a Hub repo id.", fix=f"give {name} as USER/NAME")
    plan = load_plan(request.plan_dir)
    lora = find_lora(plan, request.file)
    samples = latest_samples(plan)
    facts: CardFacts = card_facts(plan, request.repo_id, base_model=request.base_model, license_id=request.license_id)
    card = render_card(plan, lora, samples, facts)
    uploads = [Upload(lora.path.name, lora.path, lora.path.stat().st_size),
               Upload(CARD, None, len(card.encode("utf-8")))]
    uploads += [Upload(sample_url(s), s.path, s.path.stat().st_size) for s in samples]
    return PushResult(request.repo_id, card, uploads, facts.notes)


def push(request: PushRequest) -> PushResult:
    result = prepare_push(request)
    if request.dry_run:
        return result
    from lorakit.models.hub import TOKEN_HELP, hub_failure, hub_token, require_hub

    hub = require_hub()
    token = hub_token()
    if not token:
        raise UserError(f"pushing to {request.repo_id} needs a Hugging Face token with write access, and none was found.",
                        fix=TOKEN_HELP)
    api = hub.HfApi(token=token)
    operations = [
        hub.CommitOperationAdd(path_in_repo=u.path_in_repo,
                               path_or_fileobj=str(u.local) if u.local else result.card.encode("utf-8"))
        for u in result.uploads
    ]
    try:
        result.url = str(api.create_repo(request.repo_id, private=request.private, repo_type="model", exist_ok=True))
        commit = api.create_commit(request.repo_id, operations, repo_type="model",
                                   commit_message=f"Upload {result.uploads[0].path_in_repo} (lorakit push)")
    except Exception as exc:  # huggingface_hub's errors, translated; anything else is a bug and propagates
        failure = hub_failure(exc, repo_id=request.repo_id, action=f"pushing to {request.repo_id}")
        if failure is None:
            raise
        raise failure from None
    result.commit_url = getattr(commit, "commit_url", None)
    return result
