"""`lorakit fetch-model PLAN` and `ensure_local` (launch's seam): huggingface_hub replaced by fakes that fill the cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from unittest import mock

import huggingface_hub
import pytest
from hubgen import SDXL, SDXL_FILE, cache_files, diffusers_files, fake_checkpoint, tokenizer_files

from lorakit.cli.main import cli
from lorakit.errors import UserError
from lorakit.models.fetch import ensure_local, gate_findings, relocate
from lorakit.models.filehash import sha256_file
from lorakit.models.source import TOKENIZER_REPOS
from lorakit.plan.build import PlanRequest, load_plan, make_plan, write_plan

CHECKPOINT = fake_checkpoint(256)


def make(dataset: Path, out: Path, *overrides: str) -> Path:
    write_plan(make_plan(PlanRequest(dataset=dataset, target_gpu="rtx4090", out=out, overrides=list(overrides))))
    return out


class FakeHub:
    """hf_hub_download and snapshot_download as they behave online: files land in the cache they are given."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = {**{repo: tokenizer_files() for repo in TOKENIZER_REPOS}, **repos}
        self.calls: list[tuple[str, str | None]] = []

    def hf_hub_download(self, repo_id, filename, *, revision=None, cache_dir=None, **_):
        self.calls.append((repo_id, filename))
        snapshot = cache_files(Path(cache_dir), repo_id, {filename: self.repos[repo_id][filename]}, revision=revision or "main")
        return str(snapshot / filename)

    def snapshot_download(self, repo_id, *, revision=None, cache_dir=None, allow_patterns=None, **_):
        import fnmatch

        self.calls.append((repo_id, None))
        files = {k: v for k, v in self.repos[repo_id].items() if any(fnmatch.fnmatch(k, p) for p in allow_patterns)}
        return str(cache_files(Path(cache_dir), repo_id, files, revision=revision or "main"))

    def install(self, monkeypatch) -> FakeHub:
        for name in ("hf_hub_download", "snapshot_download"):
            real = getattr(huggingface_hub, name)
            monkeypatch.setattr(huggingface_hub, name, mock.create_autospec(real, side_effect=getattr(self, name)))
        return self


@pytest.fixture
def hub(monkeypatch) -> FakeHub:
    return FakeHub({SDXL: {SDXL_FILE: CHECKPOINT}}).install(monkeypatch)


def test_fetch_model_downloads_what_is_missing_and_reports_paths_and_hashes(runner, character_dataset, tmp_path, hub):
    out = make(character_dataset, tmp_path / "plan")
    result = runner.invoke(cli, ["fetch-model", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert hub.calls == [(SDXL, SDXL_FILE), (TOKENIZER_REPOS[0], None), (TOKENIZER_REPOS[1], None)]
    assert f"base model {SDXL}: downloaded" in result.output
    assert "sha256 " + hashlib.sha256(CHECKPOINT).hexdigest() in result.output
    given = load_plan(out).model.base.trainer_path  # what config.toml names, before and after the download
    assert os.readlink(given).endswith(SDXL_FILE) and Path(given).read_bytes() == CHECKPOINT


def test_ensure_local_returns_what_sd_scripts_gets_and_run_json_records(character_dataset, tmp_path, hub):
    plan = load_plan(make(character_dataset, tmp_path / "plan"))
    models = ensure_local(relocate(plan.model), Path(plan.plan_dir))
    base = models.base
    assert (base.id, base.revision, base.filename, base.downloaded) == (SDXL, "main", SDXL_FILE, True)
    assert base.sha256 == hashlib.sha256(CHECKPOINT).hexdigest()
    assert base.bytes == len(CHECKPOINT)
    assert base.resolved.startswith(str(Path(plan.model.hub_cache))) and "/blobs/" in base.resolved
    assert models.base.path == plan.model.base.trainer_path
    assert models.trainer_args(plan.model) == []  # config.toml already names lorakit's link
    assert [t.id for t in models.tokenizers] == list(TOKENIZER_REPOS)


def test_what_is_cached_is_not_downloaded_again(character_dataset, tmp_path, hub, cached_sdxl, monkeypatch):
    plan = load_plan(make(character_dataset, tmp_path / "plan"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = ensure_local(relocate(plan.model), Path(plan.plan_dir))
    assert hub.calls == [] and not models.base.downloaded


def test_offline_and_not_cached_stops_with_the_commands_that_fetch_it(runner, character_dataset, tmp_path, hub, monkeypatch):
    out = make(character_dataset, tmp_path / "plan")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(cli, ["fetch-model", str(out)])
    assert result.exit_code == 2
    assert "HF_HUB_OFFLINE is set" in result.output and f"HF_HUB_OFFLINE=0 lorakit fetch-model {out}" in result.output
    assert f"hf download {SDXL} {SDXL_FILE}" in result.output
    assert "Traceback" not in result.output and hub.calls == []


def test_a_gated_model_asks_for_the_licence_and_a_token(runner, character_dataset, tmp_path, monkeypatch):
    out = make(character_dataset, tmp_path / "plan", "pretrained_model_name_or_path=big/gated:model.safetensors")
    refused = huggingface_hub.errors.GatedRepoError("401 Client Error. Cannot access gated repo",
                                                    response=mock.Mock(status_code=401, headers={}))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", mock.Mock(side_effect=refused))
    result = runner.invoke(cli, ["fetch-model", str(out)])
    assert result.exit_code == 2
    assert "big/gated is a gated model" in result.output and "https://huggingface.co/big/gated" in result.output
    assert "no Hub token was found" in result.output and "HF_TOKEN" in result.output


def test_a_repo_that_is_no_diffusers_repo_says_to_name_the_file(character_dataset, tmp_path, monkeypatch):
    FakeHub({"me/single": {"model.safetensors": CHECKPOINT}}).install(monkeypatch)
    plan = load_plan(make(character_dataset, tmp_path / "plan", "pretrained_model_name_or_path=me/single"))
    with pytest.raises(UserError, match="lacks model_index.json") as caught:
        ensure_local(relocate(plan.model), Path(plan.plan_dir))
    assert "pretrained_model_name_or_path=me/single:FILENAME" in caught.value.fix


def test_a_diffusers_repo_downloads_only_what_sd_scripts_loads(character_dataset, tmp_path, monkeypatch):
    files = diffusers_files() | {"unet/diffusion_pytorch_model.fp16.safetensors": b"x", "unet/diffusion_pytorch_model.bin": b"x",
                                 "sd_xl_single_file.safetensors": b"x"}
    FakeHub({"me/sdxl": files}).install(monkeypatch)
    plan = load_plan(make(character_dataset, tmp_path / "plan", "pretrained_model_name_or_path=me/sdxl"))
    base = ensure_local(relocate(plan.model), Path(plan.plan_dir)).base
    got = {p.relative_to(base.resolved).as_posix() for p in Path(base.resolved).rglob("*") if p.is_file()}
    assert got == set(diffusers_files())
    assert os.path.isdir(base.path) and os.path.realpath(base.path) == base.resolved


def test_a_local_model_gone_since_planning_stops_the_launch(character_dataset, tmp_path, hub):
    model = tmp_path / "pony.safetensors"
    model.write_bytes(CHECKPOINT)
    plan = load_plan(make(character_dataset, tmp_path / "plan", f"pretrained_model_name_or_path={model}"))
    assert ensure_local(relocate(plan.model), Path(plan.plan_dir)).base.path == str(model)
    model.unlink()
    with pytest.raises(UserError, match="model/not-found|neither on this machine"):
        ensure_local(relocate(plan.model), Path(plan.plan_dir))


def test_file_hashes_are_remembered_until_the_file_changes(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"one")
    assert sha256_file(path) == hashlib.sha256(b"one").hexdigest()
    with mock.patch("builtins.open", side_effect=AssertionError("read again")):
        assert sha256_file(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"second")
    assert sha256_file(path) == hashlib.sha256(b"second").hexdigest()


def test_without_huggingface_hub_a_needed_download_stops_the_launch(character_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("lorakit.models.gate.hub_installed", lambda: False)
    plan = load_plan(make(character_dataset, tmp_path / "plan"))
    planned = next(f for f in plan.findings if f.code == "model/hub-package-missing")
    assert planned.level == "warning"  # the plan may be for a machine that has it
    assert [f.level for f in gate_findings(relocate(plan.model), Path(plan.plan_dir)) if f.code == "model/hub-package-missing"] == ["error"]
    with pytest.raises(UserError, match=r"pip install 'lorakit\[hub\]'"):
        ensure_local(relocate(plan.model), Path(plan.plan_dir))
