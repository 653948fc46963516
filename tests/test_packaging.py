"""The wheel carries templates/ and presets/ inside the package, so an installed lorakit finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO


def test_wheel_ships_templates_presets_and_the_argument_table(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("lorakit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (REPO / "templates").glob("*.j2"):
        assert f"lorakit/templates/{template.name}" in names
    for preset in (REPO / "presets").rglob("*.toml"):
        assert f"lorakit/presets/{preset.relative_to(REPO / 'presets').as_posix()}" in names
    assert "lorakit/data/sd-scripts-args/sdxl_train_network.json" in names
    assert "lorakit/data/kohya-gui-lora-keys.json" in names and "lorakit/kohya_gui/export.py" in names
    assert not any(n.startswith(("tests/", "examples/")) for n in names)
