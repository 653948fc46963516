"""huggingface_hub, for the commands that really talk to the Hub (fetch-model, push, launch's download).

Imported only inside these functions: planning never loads it. Its errors become one clear
lorakit message each; the token is handed to huggingface_hub and never printed, logged or written.
"""

from __future__ import annotations

from types import ModuleType

from lorakit.errors import UserError

INSTALL = "pip install 'lorakit[hub]'"
TOKEN_HELP = "set HF_TOKEN to an access token from https://huggingface.co/settings/tokens, or run `hf auth login`"


def hub_installed() -> bool:
    """Whether huggingface_hub can be imported, found without importing it."""
    import importlib.util

    return importlib.util.find_spec("huggingface_hub") is not None


def require_hub() -> ModuleType:
    try:
        import huggingface_hub
    except ImportError:
        raise UserError("talking to the Hugging Face Hub needs the huggingface_hub package, which is not installed.",
                        fix=INSTALL) from None
    return huggingface_hub


def hub_token() -> str | None:
    """HF_TOKEN, else the token `hf auth login` stored (huggingface_hub's own lookup)."""
    return require_hub().get_token()


def hub_failure(exc: BaseException, *, repo_id: str, action: str, download: bool = False) -> UserError | None:
    """The message for an error huggingface_hub raised while `action` (e.g. "downloading X"); None if it is not one.

    `download`: the action reads from the Hub, so a 403 means access to the repo (a gated licence not accepted,
    or a fine-grained token without access to gated repos), not write access."""
    from huggingface_hub import errors

    page = f"https://huggingface.co/{repo_id}"
    if isinstance(exc, errors.GatedRepoError):
        who = "the account of your token" if hub_token() else "you (and no Hub token was found)"
        return UserError(f"{repo_id} is a gated model: its licence must be accepted on {page} by {who}; "
                         f"the Hub refused {action}.", fix=f"accept the licence on {page}, then {TOKEN_HELP}")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return UserError(f"the Hub has no repository {repo_id} that your token can see ({action}).",
                         fix=f"check the name on {page}; for a private repo, {TOKEN_HELP}")
    if isinstance(exc, errors.RevisionNotFoundError):
        return UserError(f"{repo_id} has no such revision ({action}).",
                         fix=f"use a branch, tag or commit listed on {page}/commits/main")
    if isinstance(exc, errors.LocalEntryNotFoundError):
        return UserError(f"cannot reach the Hugging Face Hub, and the file is not in the cache ({action}).",
                         fix="check the network connection (or HF_ENDPOINT), then run the command again")
    if isinstance(exc, errors.EntryNotFoundError):
        return UserError(f"{repo_id} has no such file ({action}).", fix=f"see the repo's files on {page}/tree/main")
    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            return UserError(f"the Hub refused the token ({action}): it is invalid or expired, or {repo_id} needs one.",
                             fix=TOKEN_HELP)
        if status == 403 and download:
            return UserError(f"the Hub refused access to {repo_id} (403, {action}): the token's account has not accepted "
                             "the repo's licence, or a fine-grained token lacks access to gated repos.",
                             fix=f"accept the licence on {page} with the token's account; use a read token, or give the "
                                 "fine-grained token 'Read access to contents of all public gated repos you can access'")
        if status == 403:
            return UserError(f"the token may not write to {repo_id} ({action}).",
                             fix="use a token with write access (a fine-grained token needs write access to this repo)")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return UserError(f"the Hub answered {status or 'with an error'} while {action}: {first}")
    # A network failure; an OSError with an errno (a full disk, a permission) is the file system's, reported as such.
    network_module = type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3")
    if network_module or isinstance(exc, OSError) and exc.errno is None:
        return UserError(f"cannot reach the Hugging Face Hub while {action}: {exc}".rstrip(": "),
                         fix="check the network connection (or HF_ENDPOINT), then run the command again")
    return None
