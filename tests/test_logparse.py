"""The log parser on sd-scripts' real formats (docs/sd-scripts.md §9, §10): bar redraws, Rich records, simple logs, errors."""

from __future__ import annotations

import io
import logging
import math

import pytest

from lorakit.watch.events import (
    CheckpointSaved,
    Epoch,
    LogMessage,
    ModelSaved,
    Problem,
    Progress,
    SampleStarted,
    StateSaved,
    Step,
    TrainingSummary,
    parse_interval,
    parse_rate,
)
from lorakit.watch.parse import StreamParser, parse_stream


def events_of(text: str, chunk: int | None = None) -> list:
    chunks = [text] if chunk is None else [text[i:i + chunk] for i in range(0, len(text), chunk)]
    return list(parse_stream(chunks))


def of_type(events, kind):
    return [e for e in events if isinstance(e, kind)]


def frame(n: int, total: int, loss: float | None = None, rate: str = "27.77s/it") -> str:
    postfix = f", avr_loss={loss:.3g}" if loss is not None else ""
    return f"\rsteps: {100 * n // total:3d}%|█████     | {n}/{total} [00:55<00:55, {rate}{postfix}]"


def rich_log(messages: list[tuple[int, str]], width: int = 80) -> str:
    """Records as sd-scripts' RichHandler writes them when stderr is not a terminal."""
    from rich.console import Console
    from rich.logging import RichHandler

    buffer = io.StringIO()
    handler = RichHandler(console=Console(file=buffer, width=width))
    handler.setFormatter(logging.Formatter(fmt="%(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger(f"sd-scripts-{width}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for level, message in messages:
        logger.log(level, message)
    return buffer.getvalue()


def test_two_redraws_per_step_give_one_step_with_the_later_loss():
    text = frame(0, 4, rate="?it/s") + frame(1, 4) + frame(1, 4, 1.08) + frame(2, 4, 1.08) + frame(2, 4, 1.07) + "\n"
    events = events_of(text)
    assert [(s.step, s.loss) for s in of_type(events, Step)] == [(1, 1.08), (2, 1.07)]
    assert [p.step for p in of_type(events, Progress)] == [0, 1, 1, 2, 2]
    last = of_type(events, Progress)[-1]
    assert (last.total, last.elapsed_s, last.remaining_s) == (4, 55, 55)
    assert last.it_per_s == pytest.approx(1 / 27.77)


def real_four_step_run() -> list[tuple[str, str]]:
    """What a real 4-step sd-scripts run with save_every_n_steps=2 writes, in order, as (stream, text).

    The bar is redrawn with the previous step's loss when the step ends (`update(1)`), then with its own
    (`set_postfix`); a step that saves prints "\nsaving checkpoint: …" on stdout between the two.
    """
    losses = {1: 1.21, 2: 1.13, 3: 1.06, 4: 0.873}
    writes = [("stdout", "\nepoch 1/1\n"), ("stderr", frame(0, 4, rate="?it/s"))]
    for n, loss in losses.items():
        writes.append(("stderr", frame(n, 4, losses.get(n - 1))))
        if n % 2 == 0:
            writes.append(("stdout", f"\nsaving checkpoint: /out/robot-step{n:08d}.safetensors\n"))
        writes.append(("stderr", frame(n, 4, loss)))
    writes.append(("stdout", "\nsaving checkpoint: /out/robot.safetensors\n"))
    writes.append(("stderr", rich_log([(logging.INFO, "model saved.")])))
    return writes


def steps_and_losses(text: str) -> list[tuple[int, float | None]]:
    return [(s.step, s.loss) for s in of_type(events_of(text), Step)]


def test_a_saved_merged_log_gives_each_checkpoint_step_its_own_loss_as_the_live_streams_do():
    writes = real_four_step_run()
    merged = "".join(text for _, text in writes)
    live = steps_and_losses("".join(text for stream, text in writes if stream == "stderr"))
    assert live == [(1, 1.21), (2, 1.13), (3, 1.06), (4, 0.873)]
    assert steps_and_losses(merged) == live


def test_lorakit_logs_reports_the_final_loss_of_a_run_that_saved_at_its_last_step(tmp_path):
    from lorakit.watch.logfile import read_log

    log = tmp_path / "train.log"
    log.write_bytes("".join(text for _, text in real_four_step_run()).encode("utf-8"))
    report = read_log(log)
    assert (report.steps_done, report.last_loss, report.min_loss) == (4, 0.873, 0.873)
    assert len(report.checkpoints) == 3 and report.model_saved


def test_the_newest_redraw_is_seen_before_the_next_one_arrives():
    parser = StreamParser()
    events = parser.feed(frame(3, 10, 0.5, rate=" 1.52it/s"))
    assert [(e.step, e.loss, e.it_per_s) for e in of_type(events, Progress)] == [(3, 0.5, 1.52)]
    (step,) = of_type(parser.feed(frame(4, 10, 0.4)), Step)
    assert (step.step, step.total, step.loss, step.elapsed_s, step.it_per_s) == (3, 10, 0.5, 55, 1.52)


def test_a_log_record_written_straight_after_the_bar_is_still_read():
    text = frame(2, 4, 1.07) + rich_log([(logging.INFO, "model saved.")]) + frame(3, 4, 1.06) + "\n"
    events = events_of(text)
    assert of_type(events, ModelSaved) == [ModelSaved()]
    assert [s.step for s in of_type(events, Step)] == [2, 3]


def test_rich_records_wrapped_at_80_columns_are_joined_back():
    path = "/data/very/long/folder name/that/does/not/fit/into/one/line/of/the/console/sd_xl_base_1.0.safetensors"
    text = rich_log([(logging.INFO, "load StableDiffusion checkpoint: /x"),
                     (logging.ERROR, "model is not found as a file or in Hugging Face, perhaps file name is wrong? / "
                                     f"指定したモデル名のファイル、またはHugging Faceのモデルが見つかりません。ファイル名が誤っているかもしれません: {path}")])
    assert max(len(line) for line in text.splitlines()) <= 80 and len(text.splitlines()) > 4
    events = events_of(text)
    (problem,) = of_type(events, Problem)
    assert problem.kind == "model-missing" and problem.detail == path
    assert of_type(events, LogMessage)[0].level == "ERROR"


WRAPPED = [
    "model is not found as a file or in Hugging Face, perhaps file name is wrong? / 指定したモデル名のファイル、または"
    "Hugging Faceのモデルが見つかりません。ファイル名が誤っているかもしれません: /data/very/long/folder name/that/does/not/"
    "fit/into/one/line/sd_xl_base_1.0.safetensors",
    "Loading settings from /home/me/p_raw/a folder with spaces/and/a/rather/long/path/to/the/plan/config.toml...",
    "No data found. Please verify arguments (train_data_dir must be the parent of folders with images) / 画像がありません。"
    "引数指定を確認してください（train_data_dirには画像があるフォルダではなく、画像があるフォルダの親フォルダを指定する必要があります）",
]


@pytest.mark.parametrize("width", [80, 100, 132])
def test_rich_records_wrapped_at_a_space_keep_the_space_and_cut_words_are_joined_whole(width):
    text = rich_log([(logging.WARNING, message) for message in WRAPPED], width)
    assert len(text.splitlines()) > 2 * len(WRAPPED)
    assert [e.message for e in of_type(events_of(text), LogMessage)] == WRAPPED


def test_a_long_word_cut_right_before_a_space_keeps_the_space():
    # A path word longer than the column is cut into pieces that fill it; when the last piece ends exactly
    # at the column, Rich starts the next line with the space. The column's width depends on this file's
    # name and line number (the source column), so the path's length is found, not fixed.
    def log_of(path: str) -> str:
        return rich_log([(logging.ERROR, "model is not found as a file or in Hugging Face, perhaps file name is wrong? / "
                                         f"指定したモデル名のファイル: {path}")])

    paths = ("/" + "p" * n + "/base model ü.safetensors" for n in range(30, 200))
    path, text = next((p, t) for p in paths if " " * 30 + "model ü" in (t := log_of(p)))
    (problem,) = of_type(events_of(text), Problem)
    assert problem.detail == path


def test_a_missing_model_in_a_wrapped_record_is_diagnosed_with_its_message_intact():
    path = "/models/base model ü.safetensors"
    text = rich_log([(logging.ERROR, "model is not found as a file or in Hugging Face, perhaps file name is wrong? / "
                                     f"指定したモデル名のファイル、またはHugging Faceのモデルが見つかりません。ファイル名が誤っているかもしれません: {path}")])
    (problem,) = of_type(events_of(text), Problem)
    assert problem.message == f"model is not found as a file or in Hugging Face, perhaps file name is wrong?: {path}"
    assert problem.detail == path


def test_repeated_time_column_left_blank_still_starts_a_record():
    text = rich_log([(logging.INFO, "saving state at step 3"), (logging.INFO, "saving state at epoch 2"),
                     (logging.INFO, "saving last state."), (logging.WARNING, "clip_skip will be unexpected")])
    assert text.splitlines()[1].startswith(" " * 19)  # same second: no time shown
    events = events_of(text)
    assert of_type(events, StateSaved) == [StateSaved(3, None), StateSaved(None, 2), StateSaved(None, None)]
    assert of_type(events, LogMessage) == [LogMessage("WARNING", "clip_skip will be unexpected")]


def test_console_log_simple_messages_are_bare_lines():
    text = ("generating sample images at step / サンプル画像生成 ステップ: 200\nsaving state at step 200\n"
            "\nsaving checkpoint: /p/out/dog-step00000200.safetensors\nmodel saved.\n")
    events = events_of(text)
    assert of_type(events, SampleStarted) == [SampleStarted(200)]
    assert of_type(events, StateSaved) == [StateSaved(200, None)]
    assert of_type(events, CheckpointSaved) == [CheckpointSaved("/p/out/dog-step00000200.safetensors")]
    assert of_type(events, ModelSaved) == [ModelSaved()]


def test_the_running_training_block_and_epochs():
    text = """prepare optimizer, data loader etc.
override steps. steps for 4 epochs is / 指定エポックまでのステップ数: 116
running training / 学習開始
  num train images * repeats / 学習画像の数×繰り返し回数: 56
  num validation images * repeats / 学習画像の数×繰り返し回数: 0
  num reg images / 正則化画像の数: 4
  num batches per epoch / 1epochのバッチ数: 57
  num epochs / epoch数: 4
  batch size per device / バッチサイズ: 2
  gradient accumulation steps / 勾配を合計するステップ数 = 2
  total optimization steps / 学習ステップ数: 116

epoch 1/4

"""
    events = events_of(text)
    assert of_type(events, TrainingSummary) == [TrainingSummary(56, 4, 57, 4, [2], 2, 116)]
    assert of_type(events, Epoch) == [Epoch(1, 4)]


def test_a_terminal_stream_with_crlf_colours_and_links():
    link = "\x1b]8;id=1;file:///x/train_network.py\x1b\\train_network.py:1234\x1b]8;;\x1b\\"
    text = (f"\x1b[2;36m2026-11-22 05:17:28\x1b[0m\x1b[2;36m \x1b[0m\x1b[34mINFO    \x1b[0m model saved.   {link}\r\n"
            f"{frame(4, 4, 1.06)}\r\nepoch 2/4\r\n")
    events = events_of(text)
    assert of_type(events, ModelSaved) == [ModelSaved()]
    assert [s.step for s in of_type(events, Step)] == [4]
    assert of_type(events, Epoch) == [Epoch(2, 4)]


def test_chunk_boundaries_do_not_matter():
    text = (frame(1, 3, 0.9) + frame(2, 3, 0.8) + rich_log([(logging.INFO, "saving state at step 2")])
            + frame(3, 3, 0.7) + "\n" + "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n")
    whole = events_of(text)
    assert events_of(text, chunk=1) == whole
    assert events_of(text, chunk=7) == whole


@pytest.mark.parametrize(("tail", "kind", "detail"), [
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.99 GiB",
     "out-of-memory", ""),
    ("ModuleNotFoundError: No module named 'cv2'", "missing-module", "cv2"),
    ("ImportError: No xformers / xformersがインストールされていないようです", "missing-module", "xformers"),
    ("AssertionError: caption file is empty / キャプションファイルが空です: a.txt", "crash", ""),
])
def test_a_traceback_is_read_from_its_last_line(tail, kind, detail):
    text = ("Traceback (most recent call last):\n  File \"/sd/sdxl_train_network.py\", line 229, in <module>\n"
            "    trainer.train(args)\n    ~~~~~~~~~~~~~^^^^^^\n" + tail + "\n")
    (problem,) = of_type(events_of(text), Problem)
    assert (problem.kind, problem.detail) == (kind, detail)
    assert problem.message == tail


def test_accelerate_repeating_the_failure_adds_nothing_but_a_signal_death_is_kept():
    failed = ("Traceback (most recent call last):\n  File \"launch.py\", line 1\nsubprocess.CalledProcessError: Command "
              "'['python', 'sdxl_train_network.py']' returned non-zero exit status 1.\n")
    assert of_type(events_of(failed), Problem) == []
    killed = failed.replace("returned non-zero exit status 1.", "died with <Signals.SIGKILL: 9>.")
    assert of_type(events_of(killed), Problem) == [Problem("killed", "the trainer was killed by SIGKILL", "SIGKILL")]


def test_nan_loss_is_a_problem_once():
    events = events_of(frame(1, 4, 1.1) + frame(2, 4, math.nan) + frame(3, 4, math.nan) + "\n")
    assert [e.kind for e in of_type(events, Problem)] == ["nan-loss"]
    assert math.isnan(of_type(events, Step)[-1].loss)


@pytest.mark.parametrize(("text", "kind"), [
    ("usage: sdxl_train_network.py [-h]\nsdxl_train_network.py: error: unrecognized arguments: --text_encoder_lr1 1e-5\n",
     "bad-arguments"),
    ("sdxl_train_network.py: error: argument --max_token_length: invalid choice: 75 (choose from None, 150, 225)\n",
     "bad-arguments"),
    ("No data found. Please verify arguments (train_data_dir must be the parent of folders with images) / 画像がありません\n",
     "no-data"),
])
def test_messages_that_end_a_run(text, kind):
    assert [p.kind for p in of_type(events_of(text), Problem)] == [kind]


def test_other_bars_are_not_training_steps():
    text = "\rcaching latents: 100%|██████████| 12/12 [00:03<00:00,  3.80it/s]\n" + frame(1, 2, 0.5) + "\n"
    assert [s.step for s in of_type(events_of(text), Step)] == [1]


@pytest.mark.parametrize(("text", "seconds"), [("00:55", 55), ("1:02:03", 3723), ("?", None), ("2d 1:00:00", 2 * 86400 + 3600)])
def test_tqdm_intervals(text, seconds):
    assert parse_interval(text) == seconds


def test_tqdm_rates():
    assert parse_rate(" 1.52it/s") == 1.52
    assert parse_rate("4.00s/it") == 0.25
    assert parse_rate("?it/s") is None


def test_a_new_loss_drawn_after_a_stdout_line_is_that_steps_loss():
    # the real CPU run's merged train.log: update() draws step 4 with step 3's loss, the checkpoint is saved
    # (stdout), then set_postfix draws step 4's own loss (benchmarks/e2e_cpu.py found the log read one step behind)
    text = (frame(3, 4, 1.11) + frame(3, 4, 1.13) + frame(4, 4, 1.13) + "\nsaving checkpoint: a.safetensors\n"
            + frame(4, 4, 1.12) + "\nsaving checkpoint: b.safetensors\n" + frame(4, 4, 1.12) + "\n")
    steps = [(s.step, s.loss) for s in of_type(events_of(text), Step)]
    assert steps == [(3, 1.13), (4, 1.12)]  # each step once, with its own loss


def test_a_closed_bar_redrawn_after_a_line_is_not_a_new_step():
    from lorakit.watch.events import Step
    from lorakit.watch.parse import StreamParser

    text = ("\rsteps:  83%|████████  | 5/6 [00:00<00:00, 357.26it/s, avr_loss=0.246]\nsaving checkpoint: x\n"
            "\rsteps: 100%|██████████| 6/6 [00:00<00:00, 320.17it/s, avr_loss=0.241]\nsaving checkpoint: y\n"
            "\rsteps: 100%|██████████| 6/6 [00:00<00:00, 319.40it/s, avr_loss=0.241]\n")
    parser = StreamParser()
    events = list(parser.feed(text)) + list(parser.close())
    assert [e.step for e in events if isinstance(e, Step)] == [5, 6]
