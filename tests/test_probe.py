"""`lorakit probe`: pynvml and psutil, the fake probe, and the GPU catalog."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pynvml
import pytest

from lorakit.cli.main import cli
from lorakit.machine.gpus import catalog, lookup, match_name
from lorakit.machine.probe import choose_target, probe

CATALOG_REQUIRED = {"rtx3060-12gb", "rtx3080-10gb", "rtx4060ti-16gb", "rtx3090", "rtx4090", "rtx5090", "t4",
                    "v100-16gb", "l4", "a10g", "a100-40gb", "a100-80gb", "h100"}


def test_catalog_has_the_required_gpus():
    assert CATALOG_REQUIRED <= set(catalog())
    assert lookup("t4").bf16 is False and lookup("rtx3090").bf16 is True


@pytest.mark.parametrize(("name", "gpu"), [("NVIDIA GeForce RTX 4060 Ti", "rtx4060ti-16gb"), ("NVIDIA GeForce RTX 4060", "rtx4060-8gb"),
                                           ("NVIDIA H100 80GB HBM3", "h100"), ("Tesla T4", "t4"), ("NVIDIA L40S", "l40s"),
                                           ("NVIDIA L4", "l4"), ("NVIDIA A100-SXM4-80GB", "a100-80gb")])
def test_driver_names_match_the_catalog(name, gpu):
    assert match_name(name).id == gpu


def test_no_driver_is_said_plainly_and_exits_0(runner, monkeypatch):
    def no_library():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    result = runner.invoke(cli, ["probe"])
    assert result.exit_code == 0
    assert "No NVIDIA GPU" in result.output and "no NVIDIA driver found" in result.output
    assert "--target-gpu" in result.output


def test_real_probe_path_reads_pynvml(monkeypatch):
    handle = object()
    calls = {
        "nvmlInit": lambda: None, "nvmlShutdown": lambda: None,
        "nvmlSystemGetDriverVersion": lambda: "575.51",
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": lambda i: handle,
        "nvmlDeviceGetName": lambda h: b"NVIDIA GeForce RTX 3090",
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=24576 * 2**20, free=20000 * 2**20, used=0),
        "nvmlDeviceGetCudaComputeCapability": lambda h: (8, 6),
    }
    for name, fn in calls.items():
        monkeypatch.setattr(pynvml, name, fn)
    host = probe()
    (gpu,) = host.gpus
    assert (gpu.name, gpu.catalog_id, gpu.compute_capability, gpu.bf16) == ("NVIDIA GeForce RTX 3090", "rtx3090", "8.6", True)
    assert gpu.budget_gib == pytest.approx(24 * 0.8)
    target = choose_target(None, host)
    assert target.source == "probe"
    assert target.budget_gib == pytest.approx(min(24 * 0.8, 20000 / 1024))


def test_fake_gpus_and_json(runner, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx4090,rtx4090")
    data = json.loads(runner.invoke(cli, ["probe", "--json"]).output)
    assert [g["catalog_id"] for g in data["gpus"]] == ["rtx4090", "rtx4090"]
    assert data["gpus"][0]["budget_gib"] == pytest.approx(19.19, abs=0.01)
    assert data["ram_total_gib"] > 0 and data["cpu_count"] >= 1 and data["disk_free_gib"] > 0


def test_bad_fake_gpu_is_a_clear_error(runner, monkeypatch):
    monkeypatch.setenv("LORAKIT_FAKE_GPU", "rtx9999")
    result = runner.invoke(cli, ["probe"])
    assert result.exit_code == 2 and "LORAKIT_FAKE_GPU" in result.output


def test_catalog_listing(runner):
    result = runner.invoke(cli, ["probe", "--catalog"])
    assert all(name in result.output for name in CATALOG_REQUIRED)
