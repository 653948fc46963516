"""benchmarks/e2e_cpu.py at its tiny size: the whole harness (tokenizers from open_clip's vocabulary, dataset,
plan, the real `lorakit launch`, the checks against the log, the summary line) against the fake sd-scripts,
and the GPU calibration grid's runs. The full-size run needs about 18 GB and is run by hand (its docstring)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_harness():
    spec = importlib.util.spec_from_file_location("e2e_cpu", REPO / "benchmarks" / "e2e_cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bpe_work(tmp_path_factory) -> Path:
    """A work folder holding open_clip's BPE vocabulary (pip fetches the wheel once; skipped when it cannot)."""
    work = tmp_path_factory.mktemp("e2e")
    try:
        load_harness().fetch_bpe(sys.executable, work)
    except (subprocess.CalledProcessError, StopIteration) as exc:
        pytest.skip(f"pip could not fetch open_clip_torch for its vocabulary: {exc}")
    return work


def test_tokenizer_files_give_clips_token_ids(bpe_work, tmp_path):
    harness = load_harness()
    harness.write_tokenizers(bpe_work / "bpe_simple_vocab_16e6.txt.gz", tmp_path)
    vocab = json.loads((tmp_path / "openai_clip-vit-large-patch14" / "vocab.json").read_text())
    assert len(vocab) == 49408
    assert [vocab[t] for t in ("a</w>", "photo</w>", "of</w>", "cat</w>", "<|startoftext|>", "<|endoftext|>")] == [320, 1125, 539, 2368, 49406, 49407]
    pads = [json.loads((tmp_path / name / "tokenizer_config.json").read_text())["pad_token"]
            for name in ("openai_clip-vit-large-patch14", "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k")]
    assert pads == ["<|endoftext|>", "!"]


def test_tiny_run_plans_launches_and_checks_the_run(bpe_work, capsys):
    assert load_harness().main(["--tiny", "--work", str(bpe_work)]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("e2e_cpu: tiny harness (fake trainer), 4 steps at 256² rank 4 on the CPU: time to first step ")
    record = json.loads((bpe_work / "plan-cpu" / "run.json").read_text())
    assert record["state"] == "succeeded" and record["steps_done"] == 4


def test_tiny_calibration_grid_runs_every_point(bpe_work, capsys):
    assert load_harness().main(["--tiny", "--calibrate", "--work", str(bpe_work)]) == 0
    for batch in (1, 2, 4):
        for checkpointing in (0, 1):
            plan = bpe_work / f"calibrate-b{batch}-gc{checkpointing}"
            config = (plan / "config.toml").read_text()
            assert f"train_batch_size = {batch}" in config and "network_dim = 32" in config
            assert json.loads((plan / "run.json").read_text())["state"] == "succeeded"
    assert "calibration grid: 6 runs at 1024² rank 32" in capsys.readouterr().out
