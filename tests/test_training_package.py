"""Packaging a trained adapter as a bundled model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from training.package import package_adapter


def fake_run(tmp_path, n=1000):
    run = tmp_path / "run"
    run.mkdir()
    save_file(
        {"base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(16, n)},
        str(run / "adapter_model.safetensors"),
    )
    (run / "adapter_config.json").write_text(
        json.dumps({"r": 16, "base_model_name_or_path": "/tmp/cache/smollm2"})
    )
    (run / "rexdrug_training.json").write_text(json.dumps({"prompt": {"variant": "compact"}}))
    return run


def test_package_halves_weights_and_points_at_the_embedded_base(tmp_path):
    run = fake_run(tmp_path)
    (tmp_path / "adapters" / "smol").mkdir(parents=True)
    (tmp_path / "adapters" / "smol" / "MODEL_CARD.md").write_text("card")
    dest = package_adapter(run, "smol", tmp_path / "adapters")
    weights = load_file(str(dest / "adapter_model.safetensors"))
    original = load_file(str(run / "adapter_model.safetensors"))
    (key,) = weights
    assert weights[key].dtype == torch.float16
    assert torch.allclose(weights[key].float(), original[key], rtol=1e-3, atol=1e-3)  # float16 precision
    assert json.loads((dest / "adapter_config.json").read_text())["base_model_name_or_path"] == "embedded"
    assert (dest / "MODEL_CARD.md").read_text() == "card"  # hand-written card survives re-packaging
    assert json.loads((dest / "rexdrug_training.json").read_text())["prompt"]["variant"] == "compact"


def test_package_refuses_a_folder_without_adapter_and_an_oversized_one(tmp_path):
    with pytest.raises(ValueError, match="no LoRA adapter"):
        package_adapter(tmp_path, "x", tmp_path / "adapters")
    run = fake_run(tmp_path, n=1_000_000)  # 16M params: 32 MB even as float16
    with pytest.raises(ValueError, match="budget"):
        package_adapter(run, "big", tmp_path / "adapters")
    assert not (tmp_path / "adapters" / "big").exists()


def test_package_ships_the_runs_confidence_map_and_drops_a_stale_one(tmp_path):
    from model.confidence import CONFIDENCE_FILE

    run = fake_run(tmp_path)
    stale = tmp_path / "adapters" / "smol"
    stale.mkdir(parents=True)
    (stale / CONFIDENCE_FILE).write_text('{"method": "platt", "params": {"a": 9, "b": 9}}')
    dest = package_adapter(run, "smol", tmp_path / "adapters")
    assert not (dest / CONFIDENCE_FILE).exists()  # the old adapter's map does not describe the new one
    (run / CONFIDENCE_FILE).write_text('{"method": "platt", "params": {"a": 1, "b": 0}}')
    dest = package_adapter(run, "smol", tmp_path / "adapters")
    assert json.loads((dest / CONFIDENCE_FILE).read_text())["params"] == {"a": 1, "b": 0}
