"""`lorakit setup`: the trainer environment in one command, checked first so a second run changes nothing.

The unit tests drive the steps with a fake pip (an injected runner that keeps a pretend venv); one test
installs for real, opt-in (LORAKIT_TEST_REAL_SETUP=1), because torch alone is gigabytes: CI runs the real
`lorakit setup` twice itself (.ci/run).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from lorakit.cli.main import cli
from lorakit.errors import SetupError, UserError
from lorakit.machine import torchbuild
from lorakit.run import setup as setup_core
from lorakit.run.doctor import DoctorReport
from lorakit.run.setup import SetupRequest, sd_scripts_requirements
from lorakit.run.setup import setup as make_environment

PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
REQUIREMENTS = """\
accelerate==1.6.0
diffusers[torch]==0.32.1
# albumentations==1.3.0
bitsandbytes
--extra-index-url https://example.invalid/simple
# for kohya_ss library
-e .
"""


@pytest.fixture
def sd_scripts(tmp_path: Path) -> Path:
    folder = tmp_path / "sd-scripts"
    folder.mkdir()
    (folder / "sdxl_train_network.py").write_text("# the training script\n")
    (folder / "requirements.txt").write_text(REQUIREMENTS)
    return folder


@pytest.fixture
def no_pip_config(monkeypatch):
    """pip reads neither this machine's configuration files nor its PIP_* variables."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


class FakePip:
    """Answers setup's commands the way python, venv and pip would, keeping what is 'installed' in memory."""

    def __init__(self, base_python: str = "/usr/bin/python3", torch_cuda: str | None = None, pip_config: str = ""):
        self.base_python = base_python
        self.torch_cuda = torch_cuda  # the build pip installs: torch.version.cuda
        self.pip_config = pip_config
        self.installed: dict[str, str | None] = {}  # name → version; for torch, its build's CUDA version
        self.broken: set[str] = set()
        self.calls: list[list[str]] = []
        self.fail_on: str | None = None

    def changes(self) -> list[list[str]]:
        """The commands that change something (not the checks)."""
        return [c for c in self.calls if c[1:3] == ["-m", "venv"] or c[1:4] in (["-m", "pip", "install"], ["-m", "pip", "uninstall"])
                and "--dry-run" not in c]

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        if self.fail_on and self.fail_on in argv:
            return self._done("", "ERROR: No matching distribution found for torch", 1)
        if argv[1:3] == ["-m", "venv"]:
            python = Path(argv[3]) / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text("")
            return self._done("")
        if argv[1] == "-c" and argv[2] == setup_core.ENV_PROBE:
            return self._done(json.dumps(self._probe(argv[3:])))
        if argv[1] == "-c":
            return self._done(PYTHON_VERSION + "\n")
        if argv[1:4] == ["-m", "pip", "--version"]:
            return self._done("pip 26.3\n")
        if argv[1:5] == ["-m", "pip", "config", "list"]:
            return self._done(self.pip_config)
        if argv[1:4] == ["-m", "pip", "install"]:
            return self._install([a for a in argv[4:]])
        if argv[1:4] == ["-m", "pip", "uninstall"]:
            for name in argv[5:]:
                self.installed.pop(name, None)
            return self._done("")
        raise AssertionError(f"unexpected command {argv}")

    def _install(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        names = [re.split(r"[\[=]", a)[0] for a in args if not a.startswith("-") and not a.startswith("http")]
        if "--dry-run" in args:
            missing = [f"{n}-1.0" for n in names if n not in self.installed]
            return self._done(f"Would install {' '.join(missing)}\n" if missing else "Requirement already satisfied\n")
        for name in names:
            if name not in self.installed or "--force-reinstall" in args:
                self.installed[name] = self.torch_cuda if name == "torch" else "1.0"
                self.broken.discard(name)
        return self._done("Successfully installed\n")

    def _probe(self, modules: list[str]) -> dict:
        report: dict = {"python": PYTHON_VERSION}
        for name in modules:
            if name not in self.installed or name in self.broken:
                report[name] = {"ok": False, "error": f"ModuleNotFoundError: No module named '{name}'"}
            else:
                report[name] = {"ok": True, "version": "2.6.0" if name == "torch" else "1.0"}
                if name == "torch":
                    report[name]["cuda"] = self.installed["torch"]
        return report

    @staticmethod
    def _done(stdout: str, stderr: str = "", code: int = 0) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], code, stdout, stderr)


class Recorder:
    def __init__(self):
        self.lines: list[str] = []

    def step(self, number, total, label):
        self.lines.append(f"[{number}/{total}] {label}")

    def note(self, text):
        self.lines.append(f"note: {text}")

    def command(self, argv):
        self.lines.append("$ " + " ".join(argv))

    def outcome(self, kind, why):
        self.lines.append(f"{kind}: {why}")


@pytest.fixture
def healthy_doctor(monkeypatch):
    """doctor's verdict on the pretend venv (the real doctor would run its Python)."""
    report = DoctorReport(sd_scripts="x", sd_scripts_found_by="--sd-scripts", sd_scripts_commit="unknown", python="x",
                          python_found_by="--python", python_version=PYTHON_VERSION, packages={}, cuda_devices=0, cpu=True,
                          base_model=None, free_disk_gib=None, findings=[])
    monkeypatch.setattr(setup_core, "run_doctor", lambda plan, options: report)
    return report


def request(tmp_path: Path, sd_scripts: Path, **fields) -> SetupRequest:
    return SetupRequest(venv=tmp_path / "trainer", sd_scripts=str(sd_scripts), base_python="/usr/bin/python3", **fields)


def test_dry_run_prints_the_exact_commands_and_changes_nothing(runner, tmp_path, sd_scripts, no_pip_config):
    venv = tmp_path / "trainer"
    python = f"{venv}/bin/python"
    result = runner.invoke(cli, ["setup", "--dry-run", "--torch", "cpu", "--venv", str(venv), "--sd-scripts", str(sd_scripts),
                                 "--base-python", sys.executable])
    assert result.exit_code == 0, result.output
    assert result.output == f"""\
[1/6] sd-scripts: {sd_scripts}
      skipped: sdxl_train_network.py is there (commit unknown, found by --sd-scripts)
[2/6] virtual environment: {venv}
      $ {sys.executable} -m venv {venv}
      would run: no virtual environment yet (Python {PYTHON_VERSION})
[3/6] torch + torchvision: cpu build from https://download.pytorch.org/whl/cpu
      $ {python} -m pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
      would run: no virtual environment yet
[4/6] sd-scripts' requirements ({sd_scripts}/requirements.txt, without -e .)
      $ {python} -m pip install accelerate==1.6.0 'diffusers[torch]==0.32.1' bitsandbytes
      would run: no virtual environment yet
[5/6] xformers
      skipped: not asked for (--xformers); SDPA needs nothing more
[6/6] doctor
      would run: lorakit doctor --sd-scripts {sd_scripts} --python {python}
Dry run: nothing was changed.
"""
    assert not venv.exists()


def test_a_second_setup_checks_everything_and_changes_nothing(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip()
    first = make_environment(request(tmp_path, sd_scripts, torch="cpu"), Recorder(), pip)
    assert [label.split(":")[0] for label in first.changed] == ["virtual environment", "torch + torchvision", "sd-scripts' requirements (" + str(sd_scripts) + "/requirements.txt, without -e .)"]
    made = len(pip.changes())
    progress = Recorder()
    second = make_environment(request(tmp_path, sd_scripts, torch="cpu"), progress, pip)
    assert second.changed == []
    assert len(pip.changes()) == made
    assert [line.split(":")[0] for line in progress.lines if not line.startswith("[")] == ["skipped"] * 5 + ["done"]


def test_requirements_install_without_sd_scripts_own_package(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip()
    make_environment(request(tmp_path, sd_scripts, torch="cpu"), Recorder(), pip)
    installs = [c for c in pip.changes() if "accelerate==1.6.0" in c]
    assert installs == [[f"{tmp_path}/trainer/bin/python", "-m", "pip", "install", "accelerate==1.6.0", "diffusers[torch]==0.32.1", "bitsandbytes"]]


def test_requirement_lines_drop_comments_options_and_the_editable_install(sd_scripts):
    assert sd_scripts_requirements(sd_scripts / "requirements.txt") == ["accelerate==1.6.0", "diffusers[torch]==0.32.1", "bitsandbytes"]


def test_a_torch_of_another_build_is_replaced_by_the_wanted_one(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip(torch_cuda="12.4")
    make_environment(request(tmp_path, sd_scripts, torch="cu124"), Recorder(), pip)
    pip.torch_cuda = None  # the CPU index's build from now on
    progress = Recorder()
    make_environment(request(tmp_path, sd_scripts, torch="cpu"), progress, pip)
    python = f"{tmp_path}/trainer/bin/python"
    assert f"$ {python} -m pip uninstall --yes torch torchvision" in progress.lines
    assert f"$ {python} -m pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in progress.lines
    assert "done: torch 2.6.0 (cpu build), torchvision 1.0" in progress.lines


def test_an_install_that_leaves_the_wrong_build_is_an_error(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip(torch_cuda="13.0")  # another index in pip's configuration served a CUDA build
    with pytest.raises(SetupError, match="torch 2.6.0 \\(cu130 build\\) is not the cpu build wanted") as caught:
        make_environment(request(tmp_path, sd_scripts, torch="cpu"), Recorder(), pip)
    assert "--torch-index pip accepts the build your indexes give" in caught.value.fix


def test_pip_indexes_take_any_build_and_say_so(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip(torch_cuda="13.0", pip_config="global.extra-index-url='file:///opt/pypi/simple'\n")
    progress = Recorder()
    make_environment(request(tmp_path, sd_scripts, torch="cpu", torch_index="pip"), progress, pip)
    python = f"{tmp_path}/trainer/bin/python"
    assert f"$ {python} -m pip install torch torchvision" in progress.lines
    assert "note: pip's configuration sets global.extra-index-url='file:///opt/pypi/simple'" in progress.lines
    assert "done: torch 2.6.0 (cu130 build), torchvision 1.0 (from pip's own indexes; the variant is not checked)" in progress.lines


def test_a_configured_index_url_is_named_with_what_the_torch_step_does(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip(pip_config="global.index-url='https://mirror.example/simple'\n")
    progress = Recorder()
    make_environment(request(tmp_path, sd_scripts, torch="cpu", dry_run=True), progress, pip)
    notes = [line for line in progress.lines if line.startswith("note:")]
    assert notes[0] == "note: pip's configuration sets global.index-url='https://mirror.example/simple'"
    assert "passes --index-url https://download.pytorch.org/whl/cpu, which replaces a configured index-url" in notes[1]


def test_a_torch_index_url_can_be_given(tmp_path, sd_scripts, healthy_doctor):
    progress = Recorder()
    make_environment(request(tmp_path, sd_scripts, torch="cu124", torch_index="https://mirror.example/whl/cu124", dry_run=True),
          progress, FakePip())
    assert f"$ {tmp_path}/trainer/bin/python -m pip install torch torchvision --index-url https://mirror.example/whl/cu124" in progress.lines


def test_a_torchvision_that_does_not_import_is_reinstalled_alone(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip()
    make_environment(request(tmp_path, sd_scripts, torch="cpu"), Recorder(), pip)
    pip.broken.add("torchvision")
    progress = Recorder()
    make_environment(request(tmp_path, sd_scripts, torch="cpu"), progress, pip)
    assert (f"$ {tmp_path}/trainer/bin/python -m pip install --force-reinstall --no-deps torchvision "
            "--index-url https://download.pytorch.org/whl/cpu") in progress.lines
    assert "torchvision" not in pip.broken


def test_a_missing_requirement_is_installed_on_the_next_run(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip()
    make_environment(request(tmp_path, sd_scripts, torch="cpu"), Recorder(), pip)
    del pip.installed["bitsandbytes"]
    progress = Recorder()
    result = make_environment(request(tmp_path, sd_scripts, torch="cpu"), progress, pip)
    assert "done: all 3 satisfied (pip install --dry-run would install nothing)" in progress.lines
    assert len(result.changed) == 1 and result.changed[0].startswith("sd-scripts' requirements")


def test_xformers_is_installed_beside_the_torch_it_was_built_for(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip(torch_cuda="12.4")
    progress = Recorder()
    make_environment(request(tmp_path, sd_scripts, torch="cu124", xformers=True), progress, pip)
    assert (f"$ {tmp_path}/trainer/bin/python -m pip install xformers torch==2.6.0 "
            "--index-url https://download.pytorch.org/whl/cu124") in progress.lines


def test_xformers_with_the_cpu_build_is_refused(tmp_path, sd_scripts):
    with pytest.raises(UserError, match="xformers needs a CUDA build"):
        make_environment(request(tmp_path, sd_scripts, torch="cpu", xformers=True), Recorder(), FakePip())


def test_a_venv_of_another_python_is_left_alone(tmp_path, sd_scripts):
    pip = FakePip()
    make_environment(request(tmp_path, sd_scripts, torch="cpu", dry_run=True), Recorder(), pip)
    (tmp_path / "trainer" / "bin").mkdir(parents=True)
    (tmp_path / "trainer" / "bin" / "python").write_text("")

    def other_python(argv):
        if argv[0].startswith(str(tmp_path)) and argv[1] == "-c":
            return subprocess.CompletedProcess(argv, 0, "3.9\n", "")
        return pip(argv)

    with pytest.raises(UserError, match=f"has Python 3.9, not {PYTHON_VERSION}"):
        make_environment(request(tmp_path, sd_scripts, torch="cpu"), Recorder(), other_python)


def test_a_failed_install_names_the_command_and_pips_message(tmp_path, sd_scripts, healthy_doctor):
    pip = FakePip()
    pip.fail_on = "torchvision"
    with pytest.raises(SetupError) as caught:
        make_environment(request(tmp_path, sd_scripts, torch="cpu"), Recorder(), pip)
    assert "-m pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in caught.value.message
    assert "No matching distribution found for torch" in caught.value.message


def test_an_empty_vendor_submodule_is_checked_out_with_git(tmp_path, monkeypatch, healthy_doctor):
    root = tmp_path / "lorakit-checkout"
    (root / ".git").mkdir(parents=True)
    (root / "vendor" / "sd-scripts").mkdir(parents=True)
    monkeypatch.setattr(setup_core, "repo_root", lambda: root)
    monkeypatch.setattr(setup_core, "find_sd_scripts", lambda explicit: (root / "vendor" / "sd-scripts", "vendor/sd-scripts"))
    progress = Recorder()
    make_environment(SetupRequest(venv=tmp_path / "t", torch="cpu", dry_run=True), progress, FakePip())
    assert f"$ git -C {root} submodule update --init vendor/sd-scripts" in progress.lines
    assert "would run: sd-scripts is not checked out yet: its requirements are read once it is" in progress.lines


@pytest.mark.parametrize(("driver", "variant"), [(None, "cpu"), ("12.4", "cu124"), ("12.5", "cu124"), ("12.8", "cu128"),
                                                 ("13.1", "cu130"), ("11.8", "cu118")])
def test_auto_takes_the_newest_build_the_driver_runs(driver, variant):
    assert torchbuild.choose_variant("auto", driver) == variant


def test_auto_reads_the_driver_through_pynvml_unless_faked(monkeypatch):
    monkeypatch.setenv(torchbuild.FAKE_CUDA_ENV, "12.6")
    assert torchbuild.choose_variant("auto") == "cu126"
    monkeypatch.setenv(torchbuild.FAKE_CUDA_ENV, "none")
    assert torchbuild.choose_variant("auto") == "cpu"


def test_a_driver_older_than_every_build_is_refused():
    with pytest.raises(UserError, match="older than any torch build"):
        torchbuild.choose_variant("auto", "11.4")


def test_a_torch_choice_must_name_a_build():
    with pytest.raises(UserError, match="not auto, cpu or a CUDA variant"):
        torchbuild.choose_variant("cuda12")


def test_an_installed_torch_names_its_build():
    assert torchbuild.build_variant("12.4") == "cu124"
    assert torchbuild.build_variant(None) == "cpu"


REAL_SD_SCRIPTS = Path(os.environ.get("LORAKIT_TEST_SD_SCRIPTS") or Path(__file__).resolve().parents[2] / "shared" / "sd-scripts")


@pytest.mark.skipif(os.environ.get("LORAKIT_TEST_REAL_SETUP") != "1",
                    reason="installs torch and sd-scripts' requirements (gigabytes): set LORAKIT_TEST_REAL_SETUP=1; CI runs setup twice itself")
@pytest.mark.skipif(not (REAL_SD_SCRIPTS / "sdxl_train_network.py").is_file(), reason="no sd-scripts copy beside this checkout")
def test_real_setup_twice_changes_nothing_the_second_time(runner, tmp_path):
    # download.pytorch.org is not reachable from CI, so the torch step takes pip's own indexes unless told otherwise
    index = os.environ.get("LORAKIT_TEST_TORCH_INDEX", "pip")
    args = ["setup", "--torch", "cpu", "--torch-index", index, "--venv", str(tmp_path / "trainer"), "--sd-scripts", str(REAL_SD_SCRIPTS)]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert "Nothing changed: the trainer environment was already complete" in second.output
    assert "$ " not in second.output
