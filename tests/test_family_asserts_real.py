"""The real sd-scripts holds the asserts and defaults Gate 2 restates per family (docs/families.md §7), and reads
the sample prompts lorakit writes per family as docs/families.md §8 says.

Each case runs the family's real trainer class on arguments from its own parser (`assert_extra_args`, with a
dataset group whose bucket check is sd-scripts' own `BaseDataset.verify_bucket_reso_steps`), all in one run of
the trainer's Python. Needs sd-scripts and a trainer Python, as tests/test_real_sd_scripts.py does.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import make_folder
from test_real_sd_scripts import PYTHON, SD_SCRIPTS, WHY_NOT

from lorakit.plan.build import PlanRequest, make_plan

pytestmark = [
    pytest.mark.skipif(SD_SCRIPTS is None, reason="no sd-scripts checkout (vendor/sd-scripts or ../shared/sd-scripts)"),
    pytest.mark.skipif(SD_SCRIPTS is not None and PYTHON is None, reason=WHY_NOT),
]

PROBE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
import flux_train_network, sdxl_train_network, train_network
from library import train_util
from networks import lora_flux

SCRIPTS = {"flux": (flux_train_network, flux_train_network.FluxNetworkTrainer),
           "sdxl": (sdxl_train_network, sdxl_train_network.SdxlNetworkTrainer),
           "sd15": (train_network, train_network.NetworkTrainer)}


class Group:  # a dataset group whose bucket check is sd-scripts' own
    verify_bucket_reso_steps = train_util.BaseDataset.verify_bucket_reso_steps

    def __init__(self, step):
        self.bucket_reso_steps = step

    def is_text_encoder_output_cacheable(self, *args):
        return True


def outcome(call):
    try:
        call()
        return "ok"
    except (AssertionError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


request = json.loads(sys.argv[2])
answers = {"asserts": {}, "prompts": {}}
for name, (script, argv, step) in request["asserts"].items():
    module, trainer = SCRIPTS[script]
    args = module.setup_parser().parse_args(argv)
    answers["asserts"][name] = outcome(lambda: trainer().assert_extra_args(args, Group(step), None))
args = flux_train_network.setup_parser().parse_args(["--cache_text_encoder_outputs", "--network_train_unet_only"])
network = lora_flux.create_network(1.0, 4, 4, None, [torch.nn.Module(), torch.nn.Module()], torch.nn.Module(),
                                   train_t5xxl="True")
answers["t5xxl_trains"] = network.train_t5xxl
answers["t5xxl_cache"] = outcome(lambda: flux_train_network.FluxNetworkTrainer().post_process_network(args, None, network, None, None))
defaults = flux_train_network.setup_parser().parse_args([])
answers["flux_defaults"] = {k: getattr(defaults, k) for k in
                            ("guidance_scale", "timestep_sampling", "model_prediction_type", "discrete_flow_shift")}
for family, lines in request["prompts"].items():
    answers["prompts"][family] = [train_util.line_to_prompt_dict(line) for line in lines]
print("ANSWERS " + json.dumps(answers))
'''

ASSERTS = {
    "chroma-without-t5-mask": ("flux", ["--model_type", "chroma"], 64),
    "chroma-with-t5-mask": ("flux", ["--model_type", "chroma", "--apply_t5_attn_mask"], 64),
    "flux-swap-and-offload": ("flux", ["--blocks_to_swap", "8", "--cpu_offload_checkpointing"], 64),
    "flux-swap": ("flux", ["--blocks_to_swap", "8"], 64),
    "flux-cache-while-clip-l-trains": ("flux", ["--cache_text_encoder_outputs"], 64),
    "sdxl-cache-while-te-trains": ("sdxl", ["--cache_text_encoder_outputs"], 64),
    "flux-bucket-32": ("flux", [], 32),
    "sdxl-bucket-32": ("sdxl", [], 32),
    "sd15-bucket-32": ("sd15", [], 32),
    "sd15-bucket-64": ("sd15", [], 64),
}


def sample_lines(data: Path, out: Path, base: str) -> list[str]:
    result = make_plan(PlanRequest(dataset=data, presets=[base, "character"], target_gpu="a100-80gb", out=out))
    text = result.files["sample_prompts.txt"]
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("family-asserts")
    data = make_folder(root / "data" / "10_zk robot", [(1024, 1024)] * 3).parent
    prompts = {base: sample_lines(data, root / base, base) for base in ("flux1-dev", "chroma", "sd15")}
    assert PYTHON is not None and SD_SCRIPTS is not None
    done = subprocess.run([PYTHON, "-c", PROBE, str(SD_SCRIPTS), json.dumps({"asserts": ASSERTS, "prompts": prompts})],
                          capture_output=True, text=True, cwd=SD_SCRIPTS, timeout=600)
    line = next((x for x in done.stdout.splitlines() if x.startswith("ANSWERS ")), None)
    assert line is not None, done.stderr[-3000:]
    return json.loads(line.removeprefix("ANSWERS "))


@pytest.mark.parametrize(("case", "expected"), [
    ("chroma-without-t5-mask", "AssertionError: apply_t5_attn_mask must be True for Chroma"),
    ("chroma-with-t5-mask", "ok"),
    ("flux-swap-and-offload", "AssertionError: blocks_to_swap is not supported with cpu_offload_checkpointing"),
    ("flux-swap", "ok"),
    ("flux-cache-while-clip-l-trains", "ok"),
    ("sdxl-cache-while-te-trains", "AssertionError: network for Text Encoder cannot be trained with caching"),
    ("flux-bucket-32", "AssertionError: bucket_reso_steps is 32. it must be divisible by 64"),
    ("sdxl-bucket-32", "ok"),
    ("sd15-bucket-32", "AssertionError: bucket_reso_steps is 32. it must be divisible by 64"),
    ("sd15-bucket-64", "ok"),
])
def test_the_family_asserts_gate_2_restates_are_sd_scripts_own(answers, case, expected):
    assert answers["asserts"][case].startswith(expected), answers["asserts"][case]


def test_flux_refuses_cached_text_encoder_outputs_only_while_t5xxl_trains(answers):
    assert answers["t5xxl_trains"] is True  # lora_flux reads network_args train_t5xxl=True
    assert answers["t5xxl_cache"].startswith("ValueError: T5XXL is trained, so cache_text_encoder_outputs cannot be used")


def test_flux_trap_defaults_are_what_gate_2_says(answers):
    assert answers["flux_defaults"] == {"guidance_scale": 3.5, "timestep_sampling": "sigma",
                                        "model_prediction_type": "sigma_scaled", "discrete_flow_shift": 3.0}


@pytest.mark.parametrize(("base", "guidance", "scale", "size"), [
    ("flux1-dev", 3.5, 1.0, 1024), ("chroma", 0.0, 4.0, 1024), ("sd15", None, 7.0, 512),
])
def test_sd_scripts_reads_each_familys_sample_options(answers, base, guidance, scale, size):
    for prompt in answers["prompts"][base]:
        assert prompt.get("guidance_scale") == guidance and prompt["scale"] == scale
        assert (prompt["width"], prompt["height"]) == (size, size) and "sample_sampler" not in prompt
        assert prompt["prompt"].startswith("zk robot")
