"""System characteristics and the precision policy."""

from __future__ import annotations

import logging

import pytest

from ctseg_helpers.tf_setup import configure_tensorflow
from ctseg_helpers.train.system import SystemInfo, configure_precision, cpu_name, parse_nvidia_smi, system_info

tf = configure_tensorflow()
HAS_GPU = bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.skipif(HAS_GPU, reason="checks the CPU-only report")
def test_cpu_only_machine_reports_gpu_disabled_cleanly():
    info = system_info()
    assert info.gpu_enabled is False
    assert info.gpu_memory_total_mb is None and info.gpu_memory_free_mb is None
    assert 0 < info.ram_available_gb <= info.ram_total_gb
    assert info.cpu_count >= 1 and info.device_name == info.cpu_name
    text = str(info)
    assert "GPU enabled: False" in text and "GPU memory" not in text
    assert text.startswith("RAM available: ")


def test_gpu_report_lists_device_and_memory():
    info = SystemInfo(
        ram_total_gb=128.0,
        ram_available_gb=100.0,
        cpu_name="x",
        cpu_count=16,
        gpu_enabled=True,
        device_name="NVIDIA H100",
        gpu_memory_total_mb=81559,
        gpu_memory_used_mb=559,
        gpu_memory_free_mb=81000,
    )
    text = str(info)
    assert "GPU enabled: True" in text and "Device name: NVIDIA H100" in text
    assert "GPU memory total: 81559 MB | used: 559 MB | free: 81000 MB" in text
    assert info.to_dict()["gpu_memory_free_mb"] == 81000
    assert "<pre>" in info._repr_html_()
    unknown = SystemInfo(1.0, 1.0, "x", 1, True, "gpu", gpu_memory_used_mb=10.0)
    assert "total: unknown | used: 10 MB | free: unknown" in str(unknown)


def test_parse_nvidia_smi():
    text = "NVIDIA H100 80GB HBM3, 81559, 559, 81000\nbroken line\nNVIDIA A10, n/a, 1, 2\n"
    assert parse_nvidia_smi(text) == [
        {"name": "NVIDIA H100 80GB HBM3", "total_mb": 81559.0, "used_mb": 559.0, "free_mb": 81000.0}
    ]
    assert parse_nvidia_smi("") == []


def test_cpu_name_is_not_empty():
    assert cpu_name()


@pytest.mark.skipif(HAS_GPU, reason="checks the CPU fallback")
def test_mixed_precision_on_the_cpu_follows_its_bf16_units(caplog):
    import keras

    from ctseg_helpers.train.system import cpu_has_bf16

    expected = "mixed_bfloat16" if cpu_has_bf16() else "float32"
    with caplog.at_level(logging.WARNING):
        assert configure_precision(True) == expected
        assert configure_precision("auto") == expected
    assert ("no GPU" in caplog.text) == (expected == "float32")
    assert keras.mixed_precision.global_policy().name == expected
    assert configure_precision(False) == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize(
    ("request_", "gpu", "bf16", "policy", "warns"),
    [
        (False, True, True, "float32", False),
        (True, True, False, "mixed_float16", False),
        ("auto", True, False, "mixed_float16", False),
        ("auto", False, True, "mixed_bfloat16", False),
        ("auto", False, False, "float32", False),  # AMD EPYC: bf16 measured 7x slower
        (True, False, False, "float32", True),
    ],
)
def test_choose_precision(request_, gpu, bf16, policy, warns):
    from ctseg_helpers.train.system import choose_precision

    chosen, warning = choose_precision(request_, gpu=gpu, bf16_cpu=bf16)
    assert chosen == policy
    assert (warning is not None) == warns
    if warns:
        assert "no GPU and the CPU has no bfloat16 units" in warning
