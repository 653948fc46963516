"""A fake sd-scripts `sdxl_train_network.py` for lorakit's tests (this folder is a fake sd-scripts checkout).

It accepts every argument of the real script (the table in lorakit/data/sd-scripts-args/, built
with argparse so unknown arguments fail the same way), reads `--config_file` as sd-scripts does
(tables flattened one level, the command line beats the file) and the dataset config, and writes
what sd-scripts writes, on the same streams (docs/sd-scripts.md §9, §8): Rich log records on
stderr wrapped at 80 columns unless COLUMNS is set (`--console_log_simple`: bare messages on
stdout), the `steps` bar redrawn with `\\r` on stderr, the "running training" block and `epoch e/E`
on stdout, checkpoints and state folders with sd-scripts' names, `model saved.` at the end, and
a LoRA `.safetensors` with `ss_*` metadata (written by hand: no torch needed).

Told what to do through the environment:
  FAKE_SDSCRIPTS_STEP_SECONDS   seconds per step (default 0.002)
  FAKE_SDSCRIPTS_FAIL           oom | crash | nan | killed | disk-full, at step FAKE_SDSCRIPTS_FAIL_AT (default 2)
  FAKE_SDSCRIPTS_OOM_ABOVE_BATCH N: a GPU that holds batch N: a larger batch per device dies of CUDA
                                out-of-memory at step FAKE_SDSCRIPTS_FAIL_AT, as the oom failure does
  FAKE_SDSCRIPTS_NO_OUTPUT      1: finish and exit 0 without writing the LoRA
  FAKE_SDSCRIPTS_EXTRA_STEPS    train this many more steps than the dataset gives (a miscounting sd-scripts)
  FAKE_SDSCRIPTS_DROP_ARGS      comma-separated arguments this "older sd-scripts" does not know
  FAKE_SDSCRIPTS_IGNORE_SIGINT  1: ignore SIGINT (a trainer that needs SIGTERM)
  FAKE_SDSCRIPTS_OPTIONAL_IMPORT 1: print the traceback of a failed optional import at start, then train on
  FAKE_SDSCRIPTS_WORKER_PIDFILE start a worker process (like a DataLoader worker) that ignores SIGINT
                                and SIGTERM, and write its pid here
Other failures come from the inputs, as in sd-scripts: a missing model file, no images, --xformers
without xformers, an optimizer whose package is missing (Lion, DAdapt*, Prodigy).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import tomllib

ARGS_DIR = Path(__file__).resolve().parents[2] / "lorakit" / "data" / "sd-scripts-args"
ARGS_TABLE = ARGS_DIR / "sdxl_train_network.json"


def use_script(script: str) -> None:
    """Be another training script of the fake checkout (flux_train_network.py, train_network.py): its arguments."""
    global ARGS_TABLE
    ARGS_TABLE = ARGS_DIR / f"{script.removesuffix('.py')}.json"
def check_flux_files(args: argparse.Namespace) -> None:
    """flux_train_network.py loads the AE and the text encoders from files (library/flux_utils.py); Chroma has no CLIP-L."""
    if ARGS_TABLE.stem != "flux_train_network":
        return
    for name in ("ae", "clip_l", "t5xxl"):
        if name == "clip_l" and getattr(args, "model_type", None) == "chroma":
            continue
        path = getattr(args, name, None)
        logger.info(f"Loading state dict from {path}")
        if not path or not os.path.isfile(path):
            raise FileNotFoundError(f"No such file or directory: {path!r} (--{name})")


IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
OPTIONAL_PACKAGES = {"lion": "lion_pytorch", "dadapt": "dadaptation", "prodigy": "prodigyopt"}
env = os.environ.get


def setup_logging(simple: bool = False) -> None:
    """sd-scripts' library/utils.py setup_logging: RichHandler on stderr, or plain messages on stdout."""
    for handler in logging.root.handlers[:]:
        logging.root.removeHandler(handler)
    if simple:
        handler = logging.StreamHandler(sys.stdout)
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True))
    handler.setFormatter(logging.Formatter(fmt="%(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    logging.root.setLevel(logging.INFO)
    logging.root.addHandler(handler)


setup_logging()
logger = logging.getLogger("sdxl_train_network")


def int_or_float(value: str):
    return float(value) if "." in value else int(value)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdxl_train_network.py")
    dropped = set(filter(None, env("FAKE_SDSCRIPTS_DROP_ARGS", "").split(",")))
    types = {"int": int, "float": float, "str": str, "int_or_float": int_or_float}
    for arg in json.loads(ARGS_TABLE.read_text(encoding="utf-8"))["arguments"]:
        name = arg["dest"]
        if name in dropped:
            continue
        if arg["action"] == "_StoreTrueAction":
            parser.add_argument(f"--{name}", action="store_true")
            continue
        kwargs = {"default": arg["default"], "type": types.get(arg["type"], str)}
        if arg["nargs"] is not None:
            kwargs["nargs"] = arg["nargs"]
        if arg["choices"] and arg["type"] not in ("int", "float"):
            kwargs["choices"] = arg["choices"]
        parser.add_argument(f"--{name}", **kwargs)
    return parser


# sd-scripts' name for the parser builder, which lorakit doctor calls through machine/trainercheck.py
setup_parser = make_parser


def read_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """train_util.read_config_from_file: flatten the tables one level, then let the command line win."""
    if not args.config_file:
        return args
    path = args.config_file if args.config_file.endswith(".toml") else args.config_file + ".toml"
    if not os.path.exists(path):
        logger.info(f"{path} not found.")
        sys.exit(1)
    logger.info(f"Loading settings from {path}...")
    with open(path, "rb") as f:
        config = tomllib.load(f)
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    namespace = argparse.Namespace(**flat)
    return parser.parse_args(namespace=namespace)


def count_images(folder: Path) -> int:
    if not folder.is_dir():
        logger.warning(f"not directory: {folder}")
        return 0
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def load_dataset(args) -> tuple[int, int, int, dict]:
    """(train samples, reg samples, batch size, ss_dataset_dirs) from the dataset config."""
    logger.info(f"Loading dataset config from {args.dataset_config}")
    with open(args.dataset_config, "rb") as f:
        config = tomllib.load(f)
    general = config.get("general", {})
    train = reg = 0
    batch = args.train_batch_size
    dirs = {}
    for dataset in config.get("datasets", []):
        batch = dataset.get("batch_size", general.get("batch_size", args.train_batch_size))
        for subset in dataset.get("subsets", []):
            folder = Path(subset["image_dir"])
            count = count_images(folder)
            repeats = subset.get("num_repeats", args.dataset_repeats)
            if count == 0:
                logger.warning(f"ignore subset with image_dir='{folder}': no images found / 画像が見つからないためサブセットを無視します")
                continue
            logger.info(f"found directory {folder} contains {count} image files")
            if subset.get("is_reg"):
                reg += count * repeats
            else:
                train += count * repeats
                dirs[folder.name] = {"n_repeats": repeats, "img_count": count}
    return train, reg, batch, dirs


def format_interval(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Bar:
    """tqdm's `steps` bar as sd-scripts draws it on a pipe: `\\r` + frame, no newline until closed."""

    def __init__(self, total: int):
        self.total, self.n, self.postfix = total, 0, ""
        self.start = self.last_draw = time.monotonic()
        self.draw()

    def frame(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.n / elapsed if elapsed > 0 and self.n else None
        remaining = format_interval((self.total - self.n) / rate) if rate else "?"
        if rate is None:
            rate_text = "?it/s"
        elif rate < 1:
            rate_text = f"{1 / rate:5.2f}s/it"
        else:
            rate_text = f"{rate:5.2f}it/s"
        right = f"| {self.n}/{self.total} [{format_interval(elapsed)}<{remaining}, {rate_text}{self.postfix}]"
        left = f"steps: {100 * self.n / self.total:3.0f}%|"
        filled = int(10 * self.n / self.total)  # on a pipe tqdm's bar is 10 wide, whatever COLUMNS says
        return left + "█" * filled + " " * (10 - filled) + right

    def draw(self) -> None:
        sys.stderr.write("\r" + self.frame())
        sys.stderr.flush()
        self.last_draw = time.monotonic()

    def update(self) -> None:
        self.n += 1
        if time.monotonic() - self.last_draw >= 0.1:  # tqdm's mininterval
            self.draw()

    def set_postfix(self, **values: float) -> None:
        self.postfix = "".join(f", {k}={v:.3g}" for k, v in sorted(values.items()))
        self.draw()

    def close(self) -> None:
        self.draw()
        sys.stderr.write("\n")
        sys.stderr.flush()


def write_safetensors(path: Path, tensors: dict[str, tuple[list[int], list[float]]], metadata: dict[str, str]) -> None:
    """The safetensors format: 8-byte little-endian header length, JSON header, then the F32 data."""
    header: dict = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, (shape, values) in tensors.items():
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


class OutOfMemoryError(RuntimeError):
    """Named like torch's, so the traceback ends `torch.OutOfMemoryError: CUDA out of memory. …`."""


OutOfMemoryError.__module__ = "torch"


def main() -> None:
    if env("FAKE_SDSCRIPTS_OPTIONAL_IMPORT") == "1":
        import traceback

        try:
            import triton_does_not_exist  # noqa: F401  (sd-scripts' optional kernels print this and go on)
        except ImportError:
            traceback.print_exc()
    parser = make_parser()
    args = parser.parse_args()
    args = read_config(parser, args)
    setup_logging(simple=args.console_log_simple)
    if env("FAKE_SDSCRIPTS_IGNORE_SIGINT") == "1":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(f"accelerator device: {'cpu' if env('ACCELERATE_USE_CPU', '').lower() in ('1', 'true') else 'cuda'}")

    if args.dataset_config:
        train, reg, batch, dirs = load_dataset(args)
    else:
        train, reg, batch, dirs = 0, 0, args.train_batch_size, {}
    if train == 0:
        logger.error("No data found. Please verify arguments (train_data_dir must be the parent of folders with images) / "
                     "画像がありません。引数指定を確認してください（train_data_dirには画像があるフォルダではなく、画像があるフォルダの親フォルダを指定する必要があります）")
        return

    model = args.pretrained_model_name_or_path or ""
    if os.path.isfile(model):
        logger.info(f"load StableDiffusion checkpoint: {model}")
        logger.info("U-Net: <All keys matched successfully>")
    else:
        logger.info(f"load Diffusers pretrained models: {model}, variant=None")
        logger.error("model is not found as a file or in Hugging Face, perhaps file name is wrong? / "
                     f"指定したモデル名のファイル、またはHugging Faceのモデルが見つかりません。ファイル名が誤っているかもしれません: {model}")
        raise OSError(f"{model} is not a local folder and is not a valid model identifier listed on 'https://huggingface.co/models'")
    check_flux_files(args)
    if args.xformers:
        logger.info("Enable xformers for U-Net")
        try:
            import xformers  # noqa: F401
        except ImportError:
            raise ImportError("No xformers / xformersがインストールされていないようです") from None
    else:
        logger.info("Enable SDPA for U-Net")

    print("import network module:", args.network_module)
    dim, alpha = args.network_dim or 4, args.network_alpha
    logger.info(f"create LoRA network. base dim (rank): {dim}, alpha: {alpha}")
    optimizer = (args.optimizer_type or "AdamW").lower()
    for prefix, package in OPTIONAL_PACKAGES.items():
        if optimizer.startswith(prefix):
            try:
                __import__(package)
            except ImportError:
                raise ImportError(f"No {package} / {package} がインストールされていないようです") from None
    print("prepare optimizer, data loader etc.")

    samples = train + (train if reg else 0)  # reg images are balanced against the train samples
    batches = math.ceil(samples / batch)
    ga = args.gradient_accumulation_steps
    steps_per_epoch = math.ceil(batches / ga)
    if args.max_train_epochs is not None:
        args.max_train_steps = args.max_train_epochs * steps_per_epoch
        print(f"override steps. steps for {args.max_train_epochs} epochs is / 指定エポックまでのステップ数: {args.max_train_steps}")
    total = args.max_train_steps + int(env("FAKE_SDSCRIPTS_EXTRA_STEPS", "0"))
    epochs = math.ceil(total / steps_per_epoch)
    print("running training / 学習開始")
    print(f"  num train images * repeats / 学習画像の数×繰り返し回数: {train}")
    print("  num validation images * repeats / 学習画像の数×繰り返し回数: 0")
    print(f"  num reg images / 正則化画像の数: {reg}")
    print(f"  num batches per epoch / 1epochのバッチ数: {batches}")
    print(f"  num epochs / epoch数: {epochs}")
    print(f"  batch size per device / バッチサイズ: {batch}")
    print(f"  gradient accumulation steps / 勾配を合計するステップ数 = {ga}")
    print(f"  total optimization steps / 学習ステップ数: {total}")
    sys.stdout.flush()

    start_epoch, initial_step = 0, 0
    if args.resume:
        state = json.loads((Path(args.resume) / "train_state.json").read_text())
        logger.info(f"resume training from local state: {args.resume}")
        start_epoch = state["current_step"] // steps_per_epoch
        if args.skip_until_initial_step:  # as sd-scripts: continue at the saved step, not at step 0 of its epoch
            initial_step = state["current_step"]
            assert total > initial_step, (f"max_train_steps should be greater than initial step / "
                                          f"max_train_stepsは初期ステップより大きい必要があります: {total} vs {initial_step}")
            logger.info(f"skipping {initial_step} steps / {initial_step}ステップをスキップします")
    if env("FAKE_SDSCRIPTS_WORKER_PIDFILE"):
        worker = subprocess.Popen([sys.executable, "-c", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                   "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)"])
        Path(env("FAKE_SDSCRIPTS_WORKER_PIDFILE")).write_text(str(worker.pid))

    output_dir = Path(args.output_dir)
    name = args.output_name or "last"
    ext = "." + (args.save_model_as or "safetensors")
    started_at = time.time()
    fail, fail_at = env("FAKE_SDSCRIPTS_FAIL", ""), int(env("FAKE_SDSCRIPTS_FAIL_AT", "2"))
    if env("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH") and batch > int(env("FAKE_SDSCRIPTS_OOM_ABOVE_BATCH", "0")):
        fail = "oom"  # torch raises it from the first forward pass that needs more than the card has
    step_seconds = float(env("FAKE_SDSCRIPTS_STEP_SECONDS", "0.002"))

    def save(file: str, step: int, epoch: int) -> None:
        print(f"\nsaving checkpoint: {output_dir / file}")
        if env("FAKE_SDSCRIPTS_NO_OUTPUT") == "1":
            return
        metadata = {
            "ss_session_id": "12345", "ss_training_started_at": str(started_at), "ss_output_name": name,
            "ss_learning_rate": str(args.learning_rate), "ss_unet_lr": str(args.unet_lr),
            "ss_text_encoder_lr": str(args.text_encoder_lr), "ss_num_train_images": str(train),
            "ss_num_reg_images": str(reg), "ss_num_batches_per_epoch": str(batches), "ss_num_epochs": str(epochs),
            "ss_max_train_steps": str(total), "ss_network_module": args.network_module or "networks.lora",
            "ss_network_dim": str(dim), "ss_network_alpha": str(alpha), "ss_mixed_precision": args.mixed_precision,
            "ss_base_model_version": "sdxl_base_v1-0", "ss_sd_scripts_commit_hash": "(unknown)",
            "ss_optimizer": f"torch.optim.adamw.{args.optimizer_type or 'AdamW'}", "ss_seed": str(args.seed),
            "ss_dataset_dirs": json.dumps(dirs), "ss_training_finished_at": str(time.time()),
            "ss_steps": str(step), "ss_epoch": str(epoch), "modelspec.title": name,
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
        }
        tensors = {f"lora_unet_down_blocks_0_{part}": ([dim, 4], [0.01 * i for i in range(dim * 4)])
                   for part in ("lora_down.weight", "lora_up.weight")}
        tensors["lora_unet_down_blocks_0.alpha"] = ([], [float(alpha)])
        write_safetensors(output_dir / file, tensors, metadata)

    def save_state(folder: str, step: int, epoch: int) -> None:
        state = output_dir / folder
        state.mkdir(parents=True, exist_ok=True)
        (state / "train_state.json").write_text(json.dumps({"current_epoch": epoch, "current_step": step}))
        logger.info(f"save train state to {state}/train_state.json at epoch {epoch} step {step}")

    bar = Bar(total - initial_step)
    global_step, loss_sum, losses = initial_step, 0.0, 0
    for epoch in range(start_epoch, epochs):
        print(f"\nepoch {epoch + 1}/{epochs}\n")
        sys.stdout.flush()
        done_in_epoch = initial_step % steps_per_epoch if epoch == start_epoch else 0
        for _ in range(steps_per_epoch - done_in_epoch):
            time.sleep(step_seconds)
            global_step += 1
            if fail and global_step == fail_at:
                if fail == "oom":
                    raise OutOfMemoryError(
                        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.99 GiB of which "
                        "1.06 GiB is free. Of the allocated memory 20.10 GiB is allocated by PyTorch, and 1.20 GiB is reserved "
                        "by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
                        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory "
                        "Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
                if fail == "crash":
                    raise ValueError("fake failure in the training loop")
                if fail == "disk-full":
                    raise OSError(28, "No space left on device")
                if fail == "killed":
                    os.kill(os.getpid(), signal.SIGKILL)
            # a larger rank fits a little tighter, so a batch sweeping network_dim has a best run
            loss = math.nan if fail == "nan" and global_step >= fail_at else 0.2 + 0.1 / global_step - 0.001 * (dim - 16)
            loss_sum, losses = loss_sum + loss, losses + 1
            bar.update()
            if args.save_every_n_steps and global_step % args.save_every_n_steps == 0:  # the last step too
                save(f"{name}-step{global_step:08d}{ext}", global_step, epoch + 1)
                if args.save_state:
                    logger.info(f"saving state at step {global_step}")
                    save_state(f"{name}-step{global_step:08d}-state", global_step, epoch + 1)
            if args.sample_prompts and args.sample_every_n_steps and global_step % args.sample_every_n_steps == 0:
                logger.info(f"generating sample images at step / サンプル画像生成 ステップ: {global_step}")
                write_samples(Path(args.sample_prompts), output_dir / "sample", args.output_name, global_step)
            bar.set_postfix(avr_loss=loss_sum / losses)
            if global_step >= total:
                break
        if global_step >= total:
            break
        if args.save_every_n_epochs and (epoch + 1) % args.save_every_n_epochs == 0 and epoch + 1 < epochs:
            save(f"{name}-{epoch + 1:06d}{ext}", global_step, epoch + 1)
            if args.save_last_n_epochs:
                old = epoch + 1 - args.save_every_n_epochs * args.save_last_n_epochs
                old_file = output_dir / f"{name}-{old:06d}{ext}"
                if old > 0 and old_file.exists():
                    print(f"removing old checkpoint: {old_file}")
                    old_file.unlink()
            if args.save_state:
                logger.info(f"saving state at epoch {epoch + 1}")
                save_state(f"{name}-{epoch + 1:06d}-state", global_step, epoch + 1)
    bar.close()
    if args.save_state or args.save_state_on_train_end:
        logger.info("saving last state.")
        save_state(f"{name}-state", global_step, epochs)
    save(f"{name}{ext}", global_step, epochs)
    logger.info("model saved.")


def write_samples(prompt_file: Path, folder: Path, output_name: str | None, step: int) -> None:
    """One tiny PNG per prompt, named as sd-scripts names its samples (docs/sd-scripts.md §8)."""
    prompts = [line for line in prompt_file.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d%H%M%S")
    for i, line in enumerate(prompts):
        seed = line.split(" --d ")[1].split()[0] if " --d " in line else None
        name = f"{output_name + '_' if output_name else ''}{step:06d}_{i:02d}_{stamp}{'_' + seed if seed else ''}.png"
        (folder / name).write_bytes(_png(8, 8, shade=(step * 37 + i * 91) % 256))


def _png(width: int, height: int, shade: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = (b"\x00" + bytes([shade]) * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    main()
