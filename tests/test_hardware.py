"""rsgan_hub.hardware: bf16 only where the machine computes it natively, fp32 otherwise."""

from __future__ import annotations

import pytest
import torch

from rsgan_hub import hardware, pipelines


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "no")])
def test_auto_follows_native_bf16(cpu_only, monkeypatch, native, expected):
    monkeypatch.setattr(hardware, "bf16_supported", lambda: native)
    assert hardware.training_precision("auto") == expected
    monkeypatch.setattr(pipelines, "bf16_supported", lambda: native)
    assert pipelines.resolve_precision("auto") == ("bf16" if native else "fp32")


def test_auto_keeps_what_accelerate_launch_asked_for(cpu_only, monkeypatch):
    monkeypatch.setattr(hardware, "bf16_supported", lambda: True)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert hardware.training_precision("auto") == "fp16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # accelerate launch's default: not a choice
    assert hardware.training_precision("auto") == "bf16"
    assert hardware.training_precision("no") == "no"  # the script's flag wins over the launcher


def test_explicit_bf16_without_native_support_warns(cpu_only, monkeypatch):
    monkeypatch.setattr(hardware, "bf16_supported", lambda: False)
    with pytest.warns(UserWarning, match="emulated"):
        assert hardware.training_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="mixed_precision"):
        hardware.training_precision("fp8")


def test_bf16_needs_the_cpu_flags(monkeypatch):
    hardware.bf16_supported.cache_clear()
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    try:
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512bw"}))
        assert not hardware.bf16_supported()  # oneDNN emulates bf16 on plain AVX512
        hardware.bf16_supported.cache_clear()
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
        assert hardware.bf16_supported()
    finally:
        hardware.bf16_supported.cache_clear()


def test_channels_last_default():
    cpu = torch.device("cpu")
    assert hardware.channels_last_default(None, "no", cpu) is False
    assert hardware.channels_last_default(None, "bf16", cpu) is True
    assert hardware.channels_last_default(None, "no", torch.device("cuda")) is True
    assert hardware.channels_last_default(True, "no", cpu) is True
