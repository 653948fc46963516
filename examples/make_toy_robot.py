"""Regenerate the bundled example dataset: a made-up "zkrobot" toy robot in 12 poses and colours.

    python examples/make_toy_robot.py

Flat-colour PNGs at SDXL bucket sizes, so the folder stays small (see README's Quick start).
"""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "toy-robot" / "20_zkrobot toy robot"
SIZES = [(1024, 1024), (832, 1216), (1216, 832)]
COLOURS = [("red", (200, 40, 40)), ("blue", (40, 70, 200)), ("green", (40, 150, 60)), ("yellow", (220, 190, 30))]
BACKGROUNDS = [("white background", (245, 245, 245)), ("grey background", (120, 120, 120)), ("sky background", (150, 200, 240))]


def robot(size, colour, background, arm_up: bool) -> Image.Image:
    w, h = size
    img = Image.new("P", size, background)
    img.putpalette([*background, *colour, 30, 30, 30, 250, 250, 250] + [0] * (256 * 3 - 12))
    d = ImageDraw.Draw(img)
    cx, cy, s = w // 2, h // 2, min(w, h) // 8
    d.rectangle([cx - s, cy - s, cx + s, cy + 2 * s], fill=1)  # body
    d.rectangle([cx - s // 1.5, cy - 2.4 * s, cx + s // 1.5, cy - 1.1 * s], fill=1)  # head
    d.ellipse([cx - s // 2.5, cy - 2 * s, cx - s // 6, cy - 1.6 * s], fill=3)  # eyes
    d.ellipse([cx + s // 6, cy - 2 * s, cx + s // 2.5, cy - 1.6 * s], fill=3)
    arm = [cx + s, cy - 1.6 * s, cx + 1.4 * s, cy] if arm_up else [cx + s, cy - s // 2, cx + 1.4 * s, cy + s]
    d.rectangle(arm, fill=1)
    d.rectangle([cx - 1.4 * s, cy - s // 2, cx - s, cy + s], fill=1)
    d.rectangle([cx - s, cy + 2 * s, cx - s // 3, cy + 3 * s], fill=2)  # legs
    d.rectangle([cx + s // 3, cy + 2 * s, cx + s, cy + 3 * s], fill=2)
    return img


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        colour_name, colour = COLOURS[i % len(COLOURS)]
        bg_name, bg = BACKGROUNDS[i % len(BACKGROUNDS)]
        size = SIZES[i % len(SIZES)]
        pose = "waving" if i % 2 else "standing"
        robot(size, colour, bg, arm_up=bool(i % 2)).save(FOLDER / f"robot_{i:02d}.png", optimize=True)
        (FOLDER / f"robot_{i:02d}.txt").write_text(f"zkrobot toy robot, {colour_name}, {pose}, {bg_name}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
