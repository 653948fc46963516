"""How fast `lorakit --help` and `lorakit plan` are where people wait.

    python benchmarks/bench_plan.py [--images 10000] [--runs 5]

Targets (issue 2): `lorakit --help` within 0.25 s cold without torch/tensorboard/huggingface_hub/
accelerate; `lorakit plan` on a generated 10,000-image dataset (mixed sizes, several subfolders)
within 2 s and 200 MB peak memory on a 2-core machine. Each command runs as a fresh process;
peak memory is the child's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from imagegen import write_png  # noqa: E402

SIZES = [(1024, 1024), (832, 1216), (1216, 832), (768, 1024), (1024, 768), (640, 480), (1536, 1024), (2048, 2048),
         (896, 1152), (1152, 896), (512, 512), (3000, 2000)]
HEAVY = ("torch", "tensorboard", "huggingface_hub", "accelerate")


def make_dataset(root: Path, images: int, folders: int = 8) -> None:
    per = images // folders
    for f in range(folders):
        folder = root / f"{5 + f}_subject{f} person"
        for i in range(per if f < folders - 1 else images - per * (folders - 1)):
            w, h = SIZES[(i * 7 + f) % len(SIZES)]
            image = write_png(folder / f"img_{i:05d}.png", w, h)
            if i % 10:  # a tenth without captions, as real datasets have
                image.with_suffix(".txt").write_text(f"subject{f} person, photo number {i}\n", encoding="utf-8")


def run(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB, and stdout of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{argv} failed:\n{out}")
    return elapsed, usage.ru_maxrss / 1024, out


def heavy_imports() -> list[str]:
    code = ("import sys, runpy; sys.argv=['lorakit','--help']\ntry: runpy.run_module('lorakit', run_name='__main__')\n"
            f"except SystemExit: pass\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1].replace("'", '"'))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    lorakit = str(Path(sys.executable).with_name("lorakit"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")

    helps = [run([lorakit, "--help"])[0] for _ in range(args.runs)]
    print(f"lorakit --help: first {helps[0]:.3f} s, median {statistics.median(helps):.3f} s, max {max(helps):.3f} s "
          f"(target 0.25 s); heavy modules imported: {heavy_imports() or 'none'}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dataset"
        start = time.perf_counter()
        make_dataset(root, args.images)
        print(f"generated {args.images} images in {time.perf_counter() - start:.1f} s")
        times, peaks = [], []
        for i in range(args.runs):
            elapsed, peak, out = run([lorakit, "plan", str(root), "--preset", "character", "--target-gpu", "rtx4090",
                                      "--out", str(Path(tmp) / f"plan{i}"), "--json"])
            times.append(elapsed)
            peaks.append(peak)
        plan = json.loads(out)
        print(f"lorakit plan, {plan['dataset']['images']} images in {len(plan['dataset']['subsets'])} folders, "
              f"{len(plan['step_math']['buckets'])} buckets, {plan['total_steps']} steps: "
              f"median {statistics.median(times):.2f} s, max {max(times):.2f} s (target 2 s); "
              f"peak memory {max(peaks):.0f} MB (target 200 MB)")


if __name__ == "__main__":
    main()
