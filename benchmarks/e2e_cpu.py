"""A real end-to-end run you can repeat: plan and `lorakit launch` sd-scripts on a random-weight SDXL.

    python benchmarks/e2e_cpu.py --trainer-python .trainer/bin/python --sd-scripts vendor/sd-scripts [--work /tmp/lorakit-e2e]
    python benchmarks/e2e_cpu.py --tiny            # the harness itself, in seconds (see below)

What it does (nothing is downloaded except, once, the open_clip_torch wheel through pip):
1. The two tokenizers sd-scripts loads (openai/clip-vit-large-patch14, laion/CLIP-ViT-bigG-14-laion2B-39B-b160k)
   built as CLIPTokenizer files from the BPE vocabulary shipped in the open_clip_torch wheel, in a folder given
   to sd-scripts as `tokenizer_cache_dir` (library/strategy_base.py loads `<dir>/<owner>_<name>` from there).
2. A full-size SDXL checkpoint with random weights, built in the trainer's Python with sd-scripts' own model
   code (sdxl_original_unet, the CLIP text configs and the VAE config of library/sdxl_model_util.py) and saved
   with sdxl_model_util.save_stable_diffusion_checkpoint as one fp16 .safetensors (about 6.9 GB; kept in the
   work folder and reused).
3. Four generated images at 256², planned with `lorakit plan` (4 steps, rank 4, U-Net only, fp32 on the CPU),
   then the real `lorakit launch --cpu`.
4. Checks: run.json says succeeded with every step, the LoRA files exist with sd-scripts' `ss_steps`, and
   lorakit's TensorBoard events hold the losses `lorakit logs` reads from train.log.
It prints one summary line: time to first step, seconds per step, peak RAM (the process tree's RSS).
Cost on a quiet 2-core CPU (24 GB): 18-21 GiB of RAM (the process tree's RSS, the fp32 U-Net and text encoders
plus the memory-mapped checkpoint), 2.3 minutes to build the checkpoint once, then about 3.5 minutes a run:
the first step about 170 s after launch (doctor, the checkpoint's SHA-256, loading, caching latents), then
about 21 s a step. On a machine short of RAM or CPU it takes far longer (with other jobs on the same 2 cores:
380 s for the first step alone, 250 s a step), so it waits for the free RAM first. Not part of the test suite.

--tiny runs the same harness (tokenizers, dataset, plan, launch, checks, summary) in seconds against the
tests' fake sd-scripts (tests/fake_sdscripts): sd-scripts' loader builds the full SDXL shapes and loads
strictly, so no smaller random model can go through the real trainer. The real training is what --tiny skips.

With a CUDA device in the trainer's Python this is the GPU calibration harness instead (random weights take
the same VRAM as real ones): the estimator's grid (docs/estimator.md) of batch 1/2/4 × gradient checkpointing
on/off at 1024², rank 32, a few steps each. Each run's plan folder keeps the run.json that `lorakit calibrate`
reads (lorakit's pynvml peak and seconds per step); torch's own reserved peak is recorded beside it
(torch_peak.json, written at the trainer's exit by a sitecustomize hook). `--calibrate` forces the grid.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENIZERS = {"openai/clip-vit-large-patch14": "<|endoftext|>", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k": "!"}
OPEN_CLIP = "open_clip_torch==3.3.0"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
FULL_RAM_GIB = 20.0
GRID = [(batch, checkpointing) for batch in (1, 2, 4) for checkpointing in (True, False)]
PEAK_HOOK = """\
import atexit, json, os, sys
def _lorakit_torch_peak():
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    with open(os.environ["LORAKIT_E2E_TORCH_PEAK"], "w") as out:
        json.dump({"reserved_peak_gib": torch.cuda.max_memory_reserved() / 2**30,
                   "allocated_peak_gib": torch.cuda.max_memory_allocated() / 2**30}, out)
if os.environ.get("LORAKIT_E2E_TORCH_PEAK"):
    atexit.register(_lorakit_torch_peak)
"""


# --- inside the trainer's Python: the random checkpoint ----------------------------------------------

def build_model(sd_scripts: str, out: str) -> None:
    """Run by the trainer's Python: random SDXL weights in sd-scripts' own classes, saved its own way."""
    sys.path.insert(0, sd_scripts)
    import torch
    from diffusers import AutoencoderKL
    from library import model_util, sdxl_model_util, sdxl_original_unet
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float16)  # built in fp16: the fp32 U-Net alone would take 10 GB here
    common = dict(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-05, pad_token_id=1, bos_token_id=0,
                  eos_token_id=2, model_type="clip_text_model")
    text1 = CLIPTextModel._from_config(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                      num_attention_heads=12, hidden_act="quick_gelu", projection_dim=768, **common))
    text2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                                       num_attention_heads=20, hidden_act="gelu", projection_dim=1280, **common))
    vae = AutoencoderKL(**model_util.create_vae_diffusers_config())
    unet = sdxl_original_unet.SdxlUNet2DConditionModel()
    logit_scale = torch.tensor(4.6052, dtype=torch.float16)  # ln(100), CLIP's trained value
    keys = sdxl_model_util.save_stable_diffusion_checkpoint(out, text1, text2, unet, 0, 0, None, vae, logit_scale, {}, None)
    print(json.dumps({"keys": keys, "bytes": Path(out).stat().st_size}))


# --- tokenizers from open_clip's BPE vocabulary --------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte ↔ printable-character table (the base of its byte-level BPE vocabulary)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, [chr(c) for c in chars], strict=True))


def write_tokenizers(bpe_gz: Path, cache_dir: Path) -> None:
    """vocab.json and merges.txt as CLIPTokenizer reads them: 256 bytes, their `</w>` forms, 48894 merges, 2 specials."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    base = list(bytes_to_unicode().values())
    vocab = base + [v + "</w>" for v in base] + ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    for repo_id, pad in TOKENIZERS.items():
        folder = cache_dir / repo_id.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, "errors": "replace",
            "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": pad}))


def fetch_bpe(python: str, work: Path) -> Path:
    """open_clip's vocabulary, read out of its wheel (fetched by pip, which honours the user's indexes)."""
    target = work / "bpe_simple_vocab_16e6.txt.gz"
    if target.is_file():
        return target
    wheels = work / "wheels"
    subprocess.run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(wheels), OPEN_CLIP], check=True)
    wheel = next(wheels.glob("open_clip_torch-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(BPE_MEMBER))
    return target


# --- the run -----------------------------------------------------------------------------------------

class PeakRam(threading.Thread):
    """The largest RSS of a process and its children together, sampled twice a second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        import psutil

        while not self.done.is_set():
            try:
                root = psutil.Process(self.pid)
                total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self.done.wait(0.5)


def lorakit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorakit", *args], capture_output=True, text=True, env=env, cwd=REPO)


def make_dataset(folder: Path, count: int, size: int) -> Path:
    from PIL import Image

    images = folder / "1_zkbench robot"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(images / f"img{i}.png")
        (images / f"img{i}.txt").write_text("zkbench robot, a photo\n")
    return folder


def plan_run(dataset: Path, out: Path, model: Path, tokenizers: Path, sets: list[str]) -> None:
    base = [f"pretrained_model_name_or_path={model}", f"tokenizer_cache_dir={tokenizers}", "network_train_unet_only=true",
            "sample_every_n_steps=none", "max_data_loader_n_workers=0", "save_every_n_steps=2", "save_model_as=safetensors"]
    args = ["plan", str(dataset), "--target-gpu", "h100", "--fit", "off", "--out", str(out), "--force"]
    for value in base + sets:
        args += ["--set", value]
    done = lorakit(*args)
    if done.returncode != 0:
        raise SystemExit(f"lorakit plan failed:\n{done.stdout}\n{done.stderr}")


def launch(plan: Path, python: str, sd_scripts: Path, env: dict, cpu: bool) -> tuple[float, int]:
    """`lorakit launch`; returns its wall time and the process tree's peak RSS."""
    command = [sys.executable, "-m", "lorakit", "launch", str(plan), "--python", python, "--sd-scripts", str(sd_scripts),
               "--plain", "--every", "15", "--fresh", *(["--cpu"] if cpu else [])]
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=REPO)
    sampler = PeakRam(process.pid)
    sampler.start()
    code = process.wait()
    sampler.done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"lorakit launch exited {code}; see {plan}/logs/train.log")
    return time.monotonic() - started, sampler.peak


def check_run(plan: Path, steps: int) -> dict:
    """run.json, the LoRA files and lorakit's TensorBoard events, each held against the log."""
    record = json.loads((plan / "run.json").read_text())
    assert record["state"] == "succeeded", record
    assert record["steps_done"] == steps == record["total_steps"], (record["steps_done"], record["total_steps"])
    log = json.loads(lorakit("logs", str(plan / "logs" / "train.log"), "--json").stdout)
    assert log["steps_done"] == steps and log["model_saved"], log
    assert abs(log["last_loss"] - record["last_loss"]) < 1e-6, (log["last_loss"], record["last_loss"])
    assert record["outputs"], "no LoRA file in run.json"
    final = record["outputs"][-1]
    assert Path(final["path"]).is_file() and Path(final["path"]).stat().st_size == final["bytes"], final
    assert final["metadata"].get("ss_steps") == str(steps), final["metadata"].get("ss_steps")
    losses = tensorboard_losses(Path(record["tensorboard"]))
    assert losses and max(losses) == steps, losses
    assert abs(losses[max(losses)] - log["last_loss"]) < 1e-4, (losses, log["last_loss"])
    return record | {"tensorboard_losses": losses}


def tensorboard_losses(folder: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {e.step: e.value for e in events.Scalars("train/avr_loss")}


def first_step_seconds(plan: Path, started_wall: float) -> float | None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = json.loads((plan / "run.json").read_text())
    events = EventAccumulator(record["tensorboard"])
    events.Reload()
    scalars = events.Scalars("train/avr_loss")
    return round(scalars[0].wall_time - started_wall, 1) if scalars else None


def free_ram_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**30


def wait_for_ram(needed: float, patience_s: float = 1800) -> None:
    """The machine may be shared: wait (up to half an hour) for the RAM the full-size run takes."""
    deadline = time.monotonic() + patience_s
    while (free := free_ram_gib()) < needed:
        if time.monotonic() > deadline:
            raise SystemExit(f"the full-size CPU run needs about {needed:.0f} GiB of RAM; {free:.1f} GiB is free (--force)")
        print(f"waiting for RAM: {free:.1f} of {needed:.0f} GiB free", flush=True)
        time.sleep(30)


def trainer_has_cuda(python: str) -> bool:
    done = subprocess.run([python, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True)
    return done.stdout.strip() == "True"


def prepare_inputs(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    tokenizers = work / "tokenizers"
    write_tokenizers(fetch_bpe(args.trainer_python if not args.tiny else sys.executable, work), tokenizers)
    model = work / ("tiny-sdxl.safetensors" if args.tiny else "random-sdxl-fp16.safetensors")
    if args.tiny:
        sys.path.insert(0, str(REPO / "tests"))
        from hubgen import fake_checkpoint  # an SDXL-keyed header: all the fake trainer and lorakit's gates read

        model.write_bytes(fake_checkpoint())
    elif not model.is_file():
        started = time.monotonic()
        partial = model.with_name(model.stem + ".partial.safetensors")  # a run stopped while writing leaves no model
        subprocess.run([args.trainer_python, __file__, "_build-model", "--sd-scripts", str(args.sd_scripts), "--out", str(partial)],
                       check=True)
        partial.replace(model)
        print(f"built {model} in {time.monotonic() - started:.0f} s")
    return model, tokenizers


def environment(args: argparse.Namespace, work: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if args.tiny:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests" / "fake_trainer_env"), env["PYTHONPATH"]])
        env["LORAKIT_FAKE_GPU"] = "none"
        env["FAKE_SDSCRIPTS_STEP_SECONDS"] = "0.05"
    return env


def cpu_run(args: argparse.Namespace, work: Path, model: Path, tokenizers: Path) -> str:
    dataset = make_dataset(work / "dataset", 4, 256)
    plan = work / "plan-cpu"
    plan_run(dataset, plan, model, tokenizers, [f"max_train_steps={args.steps}", "resolution=256", "min_bucket_reso=256", "network_dim=4",
                                                 "network_alpha=4", "train_batch_size=1", "mixed_precision=no",
                                                 "save_precision=float", "gradient_checkpointing=true", "cache_latents=true"])
    if not args.tiny and not args.force:
        wait_for_ram(FULL_RAM_GIB)
    started_wall = time.time()
    seconds, peak = launch(plan, args.trainer_python, args.sd_scripts, environment(args, work), cpu=True)
    record = check_run(plan, args.steps)
    first = first_step_seconds(plan, started_wall)
    what = "tiny harness (fake trainer)" if args.tiny else "full SDXL random weights"
    return (f"e2e_cpu: {what}, {args.steps} steps at 256² rank 4 on the CPU: time to first step {first} s, "
            f"{_rounded(record['seconds_per_step'])} s/step, peak RAM {peak / 2**30:.1f} GiB, launch {seconds:.0f} s")


def calibration_grid(args: argparse.Namespace, work: Path, model: Path, tokenizers: Path) -> str:
    dataset = make_dataset(work / "dataset-1024", 8, 1024)
    env = environment(args, work)
    hook = work / "peak-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(PEAK_HOOK)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    rows, plans = [], []
    for batch, checkpointing in GRID:
        plan = work / f"calibrate-b{batch}-gc{int(checkpointing)}"
        steps = 4 if args.tiny else args.grid_steps
        plan_run(dataset, plan, model, tokenizers, [f"max_train_steps={steps}", "resolution=1024", "network_dim=32",
                                                     "network_alpha=16", f"train_batch_size={batch}", "mixed_precision=bf16",
                                                     f"gradient_checkpointing={str(checkpointing).lower()}", "cache_latents=true",
                                                     "save_every_n_steps=none"])
        env["LORAKIT_E2E_TORCH_PEAK"] = str(plan / "torch_peak.json")
        seconds, _ = launch(plan, args.trainer_python, args.sd_scripts, env, cpu=args.tiny)
        record = json.loads((plan / "run.json").read_text())
        torch_peak = json.loads((plan / "torch_peak.json").read_text()) if (plan / "torch_peak.json").is_file() else {}
        reserved = torch_peak.get("reserved_peak_gib", "n/a")
        rows.append(f"b{batch} gc={'on' if checkpointing else 'off'}: {_rounded(record['seconds_per_step'])} s/step, "
                    f"pynvml peak {record['peak_vram_gib']} GiB, torch reserved {_rounded(reserved)} GiB, {seconds:.0f} s")
        plans.append(str(plan))
    calibrated = lorakit("calibrate", *plans, "--file", str(work / "calibration.toml"), "--json")
    print("\n".join(rows))
    print(calibrated.stdout or calibrated.stderr)
    return f"e2e_cpu calibration grid: {len(rows)} runs at 1024² rank 32; points in {work}/calibration.toml"


def _rounded(value: object) -> object:
    return round(value, 2) if isinstance(value, float) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trainer-python", default=os.environ.get("LORAKIT_PYTHON", str(REPO / ".trainer" / "bin" / "python")))
    parser.add_argument("--sd-scripts", type=Path, default=Path(os.environ.get("LORAKIT_SD_SCRIPTS", REPO / "vendor" / "sd-scripts")))
    parser.add_argument("--work", type=Path, default=Path("/tmp/lorakit-e2e"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--grid-steps", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="The harness against the tests' fake sd-scripts, in seconds.")
    parser.add_argument("--calibrate", action="store_true", help="Run the GPU calibration grid (default: when CUDA is there).")
    parser.add_argument("--force", action="store_true", help="Run the full size even with less free RAM than it needs.")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        args.trainer_python, args.sd_scripts = sys.executable, REPO / "tests" / "fake_sdscripts"
    grid = args.calibrate or (not args.tiny and trainer_has_cuda(args.trainer_python))
    if not args.tiny and not grid and not args.force and free_ram_gib() < FULL_RAM_GIB:
        raise SystemExit(f"the full-size CPU run needs about {FULL_RAM_GIB:.0f} GiB of RAM; {free_ram_gib():.1f} GiB is free (--force)")
    model, tokenizers = prepare_inputs(args, work)
    print(calibration_grid(args, work, model, tokenizers) if grid else cpu_run(args, work, model, tokenizers))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_build-model"]:
        build_model(sys.argv[sys.argv.index("--sd-scripts") + 1], sys.argv[sys.argv.index("--out") + 1])
    else:
        sys.exit(main())
