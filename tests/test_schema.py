"""Keys and values: typed by sd-scripts' argument table, with did-you-mean for typos."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, SHARED_DOCS

from lorakit.cli.main import cli
from lorakit.config.schema import LORAKIT_KEYS, ValueProblem, parse_text, registry, spec_for


def test_every_sd_scripts_argument_is_a_key():
    shipped = json.loads((REPO / "lorakit" / "data" / "sd-scripts-args" / "sdxl_train_network.json").read_text())
    assert {a["dest"] for a in shipped["arguments"]} <= set(registry())
    assert len(shipped["arguments"]) == 196


@pytest.mark.skipif(not (SHARED_DOCS / "sd-scripts-args.json").is_file(), reason="../shared/docs is not beside this checkout")
def test_shipped_argument_table_matches_the_shared_facts():
    shared = json.loads((SHARED_DOCS / "sd-scripts-args.json").read_text())
    shipped = json.loads((REPO / "lorakit" / "data" / "sd-scripts-args" / "sdxl_train_network.json").read_text())
    assert shipped["sd_scripts_commit"] == shared["sd_scripts"]["commit"]
    for mine, theirs in zip(shipped["arguments"], shared["arguments"], strict=True):
        assert {k: theirs[k] for k in mine} == mine


def test_lorakit_keys_do_not_shadow_sd_scripts_arguments():
    shipped = json.loads((REPO / "lorakit" / "data" / "sd-scripts-args" / "sdxl_train_network.json").read_text())
    assert not {k.name for k in LORAKIT_KEYS} & {a["dest"] for a in shipped["arguments"]}


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("network_dim", "32", 32),
        ("learning_rate", "1e-4", 1e-4),
        ("gradient_checkpointing", "yes", True),
        ("resolution", "768", "768,768"),
        ("resolution", "1216x832", "1216,832"),
        ("lr_warmup_steps", "100", 100),
        ("lr_warmup_steps", "0.1", 0.1),
        ("lr_warmup_steps", "5%", 0.05),
        ("optimizer_args", "scale_parameter=False relative_step=False", ["scale_parameter=False", "relative_step=False"]),
        ("optimizer_args", '["betas=(0.9,0.99)"]', ["betas=(0.9,0.99)"]),
        ("text_encoder_lr", "5e-5", [5e-5]),
        ("face_crop_aug_range", "0.3,0.7", [0.3, 0.7]),
        ("vae", "none", None),
        ("output_name", "null", None),
    ],
)
def test_set_values_are_typed_by_their_key(key, text, value):
    assert parse_text(spec_for(key), text) == value


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("network_dim", "1.5", "not an integer"),
        ("lr_warmup_steps", "1.5", "fraction below 1"),
        ("max_token_length", "75", "not one of: 150, 225"),
        ("gradient_checkpointing", "maybe", "true/false"),
        ("face_crop_aug_range", "0.7,0.3", "must not exceed"),
        ("resolution", "big", "resolution like 1024"),
    ],
)
def test_bad_values_name_the_key_and_the_type(key, text, message):
    with pytest.raises(ValueProblem, match=message):
        parse_text(spec_for(key), text)


def test_typo_suggests_the_closest_key():
    with pytest.raises(ValueProblem, match="Did you mean train_batch_size"):
        spec_for("train_batch_sise")


def test_keys_command(runner):
    result = runner.invoke(cli, ["keys", "network_", "--json"])
    names = {k["key"] for k in json.loads(result.output)}
    assert {"network_dim", "network_alpha", "network_args"} <= names
    assert "dataset_config" not in {k["key"] for k in json.loads(runner.invoke(cli, ["keys", "--json"]).output)}
