"""The live display: a bar on a terminal, a progress line every N seconds otherwise, messages as they come."""

from __future__ import annotations

import io

from rich.console import Console

from lorakit.cli.display import BarDisplay, PlainDisplay, make_display
from lorakit.watch.events import CheckpointSaved, GpuSample, Mismatch, Problem, Progress, Step


def text_console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120, color_system=None), buffer


def test_plain_lines_come_every_n_seconds_and_at_the_end():
    out, buffer = text_console()
    now = [0.0]
    display = PlainDisplay(out, every_s=30, clock=lambda: now[0])
    for step in range(1, 11):
        now[0] = step * 10.0
        times = (f"{step // 6:02d}:{step * 10 % 60:02d}", "00:00" if step == 10 else "01:00", "10.00s/it")
        # sd-scripts redraws each step twice: with the previous step's loss, then with its own
        display(Progress(step, 10, 1.0 / (step - 1) if step > 1 else None, *times))
        display(Progress(step, 10, 1.0 / step, *times))
    lines = buffer.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1/10", "4/10", "7/10", "10/10"]
    assert lines[-1] == "step 10/10 (100%)  loss 0.1000  10.0 s/it  ETA 0:00:00"


def test_plain_lines_show_the_loss_of_the_step_they_name():
    out, buffer = text_console()
    display = PlainDisplay(out, every_s=0)
    display(Progress(0, 3, None))
    display(Progress(1, 3, None))  # the step ended; its loss is not known yet
    display(Progress(1, 3, 1.21))
    display(Progress(2, 3, 1.21))
    display(Progress(2, 3, 1.13))
    display(Progress(3, 3, 1.06))  # tqdm skipped the first redraw (under 0.1 s since the last): this is step 3's own
    display(Step(3, 3, 1.06))  # the parser finishes step 3 at the end of the stream
    losses = [(line.split()[1], line.split()[4]) for line in buffer.getvalue().splitlines()]
    assert losses == [("1/3", "1.2100"), ("2/3", "1.1300"), ("3/3", "1.0600")]


def test_messages_and_gpu_memory():
    out, buffer = text_console()
    display = PlainDisplay(out, every_s=0)
    display(GpuSample(13.24, 98.0))
    display(Step(5, 10, 0.5, "00:05", "00:05", " 2.00it/s"))
    display(CheckpointSaved("/p/out/a.safetensors"))
    display(Mismatch("sd-scripts will run 8 steps"))
    display(Problem("out-of-memory", "CUDA out of memory."))
    assert buffer.getvalue().splitlines() == [
        "step 5/10 (50%)  loss 0.5000  2.00 it/s  ETA 0:00:05  GPU 13.2 GiB",
        "saved /p/out/a.safetensors",
        "WARNING sd-scripts will run 8 steps",
        "out-of-memory: CUDA out of memory.",
    ]


def test_a_terminal_gets_a_bar():
    out, buffer = text_console(terminal=True)
    display = make_display(out)
    assert isinstance(display, BarDisplay)
    display(Progress(3, 10, 0.25, "00:03", "00:07", " 1.00it/s"))
    display.close()
    text = buffer.getvalue()
    assert "3/10" in text and "loss 0.2500" in text and "ETA 0:00:07" in text
