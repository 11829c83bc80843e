"""Loading is safe and loud: safetensors only, no remote code by default, clear errors for bad folders."""

import json
import shutil

import pytest
import torch

from amps.models.loading import check_model_folder, load_model


def test_loading_reads_back_the_saved_weights(tiny_model_dir, tiny_model):
    from safetensors.torch import load_file

    saved = load_file(str(next(tiny_model_dir.glob("*.safetensors"))))
    embedding = next(tensor for name, tensor in saved.items() if "embed_tokens" in name)
    assert torch.equal(tiny_model.model.get_input_embeddings().weight, embedding)
    assert tiny_model.family == "llava"


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        load_model(tmp_path / "nowhere")


def test_missing_weights_are_named(tiny_model_dir, tmp_path):
    broken = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"no-weights is missing \*\.safetensors"):
        check_model_folder(broken)


def test_pickle_weights_are_never_loaded(tiny_model_dir, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    for weights in pickled.glob("*.safetensors"):
        weights.unlink()
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_model(pickled)


def test_mismatched_weights_are_an_error(tiny_model_dir, tmp_path):
    mismatched = tmp_path / "mismatched"
    shutil.copytree(tiny_model_dir, mismatched)
    config = json.loads((mismatched / "config.json").read_text())
    config["text_config"]["hidden_size"] *= 2
    (mismatched / "config.json").write_text(json.dumps(config))
    with pytest.raises((RuntimeError, ValueError), match="mismatch"):
        load_model(mismatched)


def test_unsupported_architecture_is_named(tiny_model_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "blip-2"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type 'blip-2'"):
        check_model_folder(other)


def test_remote_code_is_off_unless_asked(monkeypatch, tiny_model_dir):
    seen = {}
    import amps.models.loading as models

    original = models.AutoModelForImageTextToText.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(models.AutoModelForImageTextToText, "from_pretrained", spy)
    load_model(tiny_model_dir, device="cpu")
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True


def test_missing_tensors_are_an_error(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir, partial)
    weights = next(partial.glob("*.safetensors"))
    tensors = load_file(str(weights))
    dropped = next(name for name in tensors if "layers.1.mlp.up_proj" in name)
    del tensors[dropped]
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"do not match its config \(missing_keys: .*up_proj"):
        load_model(partial)
